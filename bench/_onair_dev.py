"""`onair dev` as its user runs it, for the benchmarks: a subprocess with its own kubeconfig and
media directory, its push and playback URLs read from what it prints, stopped with Ctrl-C.

    with OnairDev(runtime="process") as dev:
        dev.endpoints("bench", "show")   # {"ingest": {key: url}, "playback": {key: url}}
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

DEV_HEADER = re.compile(r"^Livestream (?P<ns>[^/\s]+)/(?P<name>\S+) on (this machine|the node):$")
DEV_URL = re.compile(r"^\s+(?P<kind>push|play)\s+(?P<key>\S+)\s+(?P<url>\S+)\s*$")
# What `onair dev` prints once it is ready, per runtime.
READY_LINES = {"process": "operator ready", "node": "onair dev ready"}
PROCESS_RUNNER_LINE = "media agents run as local processes"


def dev_endpoints(lines: Iterable[str]) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    """The latest push/playback URLs `onair dev` printed per Livestream: {(ns, name): {"ingest":
    {key: url}, "playback": {key: url}}}. A new block for a Livestream replaces the previous one."""
    out: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    current: Optional[tuple[str, str]] = None
    for line in lines:
        line = line.rstrip("\n")
        m = DEV_HEADER.match(line.strip())
        if m:
            current = (m["ns"], m["name"])
            out[current] = {"ingest": {}, "playback": {}}
            continue
        u = DEV_URL.match(line)
        if u and current is not None:
            out[current]["ingest" if u["kind"] == "push" else "playback"][u["key"]] = u["url"]
        elif not line.startswith(" "):
            current = None
    return out


def stop_dev(dev: subprocess.Popen) -> None:
    """Ctrl-C, as its user stops it; then the process group if it hangs."""
    if dev.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            dev.send_signal(signal.SIGINT)
        try:
            dev.wait(90)
        except subprocess.TimeoutExpired:
            print("onair dev did not stop within 90 s after SIGINT: killing its process group", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(dev.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        dev.wait(10)


class OnairDev:
    def __init__(
        self, runtime: str = "process", status_poll: Optional[float] = None, ready_timeout: float = 300
    ) -> None:
        self.runtime, self.status_poll, self.ready_timeout = runtime, status_poll, ready_timeout
        self.api = None
        self.startup_seconds: Optional[float] = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()

    def printed(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def endpoints(self, namespace: str, name: str) -> dict[str, dict[str, str]]:
        return dev_endpoints(self.printed()).get((namespace, name)) or {"ingest": {}, "playback": {}}

    def __enter__(self) -> "OnairDev":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        from kubernetes.config import new_client_from_config

        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="onair-bench-dev-")))
        self.kubeconfig = tmp / "kubeconfig"
        self.log_path = tmp / "onair-dev.log"
        env = dict(os.environ)
        if self.status_poll is not None:
            env["ONAIR_STATUS_POLL_INTERVAL_SECONDS"] = str(self.status_poll)
        log = self._stack.enter_context(open(self.log_path, "w+"))
        t0 = time.monotonic()
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "onair.cli",
                "dev",
                "--runtime",
                self.runtime,
                "--kubeconfig",
                str(self.kubeconfig),
                "--media-dir",
                str(tmp / "media"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._read, args=(dev, log), daemon=True)
        reader.start()
        self._stack.callback(reader.join, 5)
        self._stack.callback(stop_dev, dev)
        deadline = time.monotonic() + self.ready_timeout
        ready = READY_LINES[self.runtime]
        while not any(line.strip().startswith(ready) for line in self.printed()):
            if dev.poll() is not None:
                raise RuntimeError("onair dev exited:\n" + "".join(self.printed())[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"onair dev not ready within {self.ready_timeout:.0f}s:\n" + "".join(self.printed())[-3000:]
                )
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - t0
        if self.runtime == "process":
            mode = next((line.strip() for line in self.printed() if PROCESS_RUNNER_LINE in line), None)
            if mode is None:
                raise RuntimeError("onair dev did not start the process runner:\n" + "".join(self.printed())[-3000:])
            print(f"[onair dev] {mode}", flush=True)
        self.api = new_client_from_config(str(self.kubeconfig))
        self._stack.callback(self.api.close)

    def _read(self, dev: subprocess.Popen, log) -> None:
        for line in dev.stdout:
            log.write(line)
            log.flush()
            with self._lock:
                self._lines.append(line)
