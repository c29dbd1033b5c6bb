"""Runs and restarts the media processes of one role (nginx, ffmpeg, srt-live-transmit).

Why our own: the pod must stay up and keep serving /status while a child crashes, restart it
with backoff, stop it the way the child needs (SIGINT lets ffmpeg finalize files), and never
print a secret that happens to be on a command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Optional, Sequence

from .parentdeath import die_with_parent
from .redaction import redact

log = logging.getLogger("onair.agent.supervisor")

LineHandler = Callable[[str], None]
ExitHandler = Callable[[int], Awaitable[None] | None]


def shown_argv(argv: Sequence[str], secrets: Iterable[str]) -> str:
    """A command line for the log: secrets redacted, and on one line (an HTTP header argument
    ends with CRLF, which would otherwise split the log record)."""
    return redact(" ".join(argv), secrets).replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class Child:
    """One supervised process. ``restart`` decides whether an exit is followed by a new start."""

    name: str
    argv: Sequence[str]
    env: Optional[dict[str, str]] = None
    cwd: Optional[str] = None
    restart: bool = True
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    secrets: Sequence[str] = ()
    on_line: Optional[LineHandler] = None
    on_exit: Optional[ExitHandler] = None
    # Output that is not a progress line goes to the log at this level.
    log_level: int = logging.INFO
    # Extra descriptors the child inherits under the same numbers (e.g. a pipe read as pipe:N).
    pass_fds: Sequence[int] = ()
    # Media through pipes: with ``on_data`` stdout is raw bytes handed over as they come (only
    # stderr is read as lines); ``stdin_pipe`` leaves ``proc.stdin`` open for the role to feed;
    # ``on_start`` hears of every new process before any of its output is read.
    on_data: Optional[Callable[[bytes], None]] = None
    # With ``on_data``: hand stdout over at most this often (seconds), in bigger chunks. Every
    # read wakes the agent up, and a reader that flushes each frame would wake it ~80 times a
    # second; waking costs more CPU than the bytes do (see bench/transcoder_cpu.py).
    data_interval: float = 0.0
    stdin_pipe: bool = False
    on_start: Optional[Callable[[asyncio.subprocess.Process], None]] = None

    proc: Optional[asyncio.subprocess.Process] = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    started_at: Optional[float] = field(default=None, init=False)
    _task: Optional[asyncio.Task] = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def start(self) -> None:
        if self._task and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"child:{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(self.stop_signal)
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                log.warning("%s did not stop within %.0fs; killing", self.name, self.stop_timeout)
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
                await proc.wait()
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.stop_timeout + 1)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        backoff = self.backoff_initial
        while not self._stopping:
            shown = shown_argv(self.argv, self.secrets)
            log.info("starting %s: %s", self.name, shown)
            # Media output comes through a pipe of our own, read at our pace (``_pump_data``).
            data_fd = write_fd = None
            if self.on_data:
                data_fd, write_fd = os.pipe()
                _grow_pipe(data_fd)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE if self.stdin_pipe else asyncio.subprocess.DEVNULL,
                    stdout=write_fd if write_fd is not None else asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE if self.on_data else asyncio.subprocess.STDOUT,
                    env={**os.environ, **(self.env or {})},
                    cwd=self.cwd,
                    start_new_session=True,
                    pass_fds=tuple(self.pass_fds),
                    # Its own session keeps a child out of the agent's signals; this makes it
                    # go when the agent is killed without a chance to stop it.
                    preexec_fn=die_with_parent(),
                )
            except OSError as exc:
                log.error("cannot start %s (%s): %s", self.name, self.argv[0], exc)
                code = -1
                _close(data_fd)
                _close(write_fd)
            else:
                _close(write_fd)  # the child has its copy: EOF on ours means it is gone
                if self.proc.stdin is not None:
                    # Room for a whole chunk of media: a write that fits is done at once, no
                    # wake-up later to finish it when the child has read some.
                    pipe = self.proc.stdin.get_extra_info("pipe")
                    if pipe is not None:
                        _grow_pipe(pipe.fileno())
                self.started_at = time.monotonic()
                if self.on_start:
                    try:
                        self.on_start(self.proc)
                    except Exception:
                        log.exception("start handler of %s failed", self.name)
                if data_fd is not None:
                    try:
                        await asyncio.gather(self._pump_data(data_fd), self._pump(self.proc, self.proc.stderr))
                    finally:
                        _close(data_fd)
                else:
                    await self._pump(self.proc)
                code = await self.proc.wait()
                # A one-shot child (ffprobe) finishing cleanly is routine, not a warning.
                expected = self._stopping or (not self.restart and code == 0)
                log.log(logging.INFO if expected else logging.WARNING, "%s exited with code %s", self.name, code)
            if self.on_exit:
                result = self.on_exit(code)
                if asyncio.iscoroutine(result):
                    await result
            if self._stopping or not self.restart:
                return
            # A child that ran for a while earns a fresh backoff: it was a blip, not a crash loop.
            if self.started_at and time.monotonic() - self.started_at > 30:
                backoff = self.backoff_initial
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _pump_data(self, fd: int) -> None:
        """Hand the child's stdout to ``on_data`` until EOF: whatever the pipe holds, then (with
        ``data_interval``) a pause in which the pipe fills up again. In steady flow that is one
        wake-up per interval: the next read finds data without waiting for the descriptor."""
        assert self.on_data is not None
        os.set_blocking(fd, False)
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                await _readable(loop, fd)
                continue
            if not chunk:
                return
            try:
                self.on_data(chunk)
            except Exception:  # a consumer bug must not leave the child blocked on a full pipe
                log.exception("data handler of %s failed", self.name)
            if self.data_interval > 0:
                await asyncio.sleep(self.data_interval)

    async def _pump(self, proc: asyncio.subprocess.Process, stream: Optional[asyncio.StreamReader] = None) -> None:
        stream = stream or proc.stdout
        assert stream is not None
        buf = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buf += chunk
            # ffmpeg ends progress lines with \r; treat both as line ends.
            *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                line = redact(raw.decode("utf-8", "replace").rstrip(), self.secrets)
                if not line:
                    continue
                if self.on_line:
                    try:
                        self.on_line(line)
                    except Exception:  # a parser bug must not kill the pump
                        log.exception("line handler of %s failed", self.name)
                else:
                    log.log(self.log_level, "[%s] %s", self.name, line)


READ_CHUNK = 1 << 20
PIPE_SIZE = 1 << 20  # room for a data_interval of a high-bitrate source (Linux' default is 64 KiB)
F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size: the writer just waits a little longer


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await waiter
    finally:
        loop.remove_reader(fd)


class Supervisor:
    """A named set of children that stop together."""

    def __init__(self) -> None:
        self.children: dict[str, Child] = {}

    def add(self, child: Child, start: bool = True) -> Child:
        self.children[child.name] = child
        if start:
            child.start()
        return child

    async def remove(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child:
            await child.stop()

    async def stop_all(self) -> None:
        await asyncio.gather(*(c.stop() for c in list(self.children.values())), return_exceptions=True)
        self.children.clear()
