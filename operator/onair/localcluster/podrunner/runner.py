"""The runner: the sync loop that keeps one local process per wanted pod, and its queries."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from onair.kube import LIVESTREAM

from .. import loopback
from ..loopback import PlanError, PodPlan
from . import apiserver, oneshot, processes
from .pods import LocalPod, Pending, PodInfo
from .ports import PortTable
from .readiness import http_ready
from .volumes import SECRET_REFRESH_SECONDS, Volumes, remove_secrets

BACKOFF_MAX_SECONDS = 30.0
# A pod that ran this long before it exited starts its backoff from the beginning again.
BACKOFF_RESET_SECONDS = 60.0


class PodRunner:
    """Run the onair media Deployments of a cluster as local processes until ``stop()``.

    >>> with PodRunner(kubeconfig, root) as runner:
    ...     run_operator(kubeconfig=kubeconfig, resolver=runner.resolver, ...)
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        root: str | Path,
        *,
        namespaces: Optional[Iterable[str]] = None,
        resync_seconds: float = 2.0,
        max_grace_seconds: Optional[float] = None,
        python: str = sys.executable,
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.root = Path(root)
        self.namespaces = list(namespaces) if namespaces else None
        self.resync_seconds = resync_seconds
        self.max_grace_seconds = max_grace_seconds
        self.python = python
        self._log = log or (lambda m: print(f"[podrunner] {m}", flush=True))
        self._lock = threading.RLock()  # guards _pods
        self._pods: dict[tuple[str, str], LocalPod] = {}
        self._ports = PortTable()
        self._notes: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stoppers: list[threading.Thread] = []
        self._secret_root: Optional[Path] = None
        self._volumes: Optional[Volumes] = None
        self._api: Any = None
        self._query_api: Any = None
        self._query_lock = threading.Lock()
        self.error: Optional[BaseException] = None
        # uid -> the thread running that one-shot pod (kept after it ends: a pod runs once).
        self._one_shots: dict[str, threading.Thread] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "PodRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> "PodRunner":
        self.root.mkdir(parents=True, exist_ok=True)
        # Secrets never touch the (persistent) root: a private dir, preferably in RAM.
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self._secret_root = Path(tempfile.mkdtemp(prefix="onair-podrunner-secrets-", dir=base))
        self._api = apiserver.client(self.kubeconfig)
        self._volumes = Volumes(self._api, self.root, self._secret_root, self._ports, self.python, self._log)
        worker = threading.Thread(target=self._work, name="onair-podrunner", daemon=True)
        watcher = threading.Thread(
            target=apiserver.watch_deployments,
            name="onair-podrunner-watch",
            daemon=True,
            args=(self.kubeconfig, self.namespaces, self._stop, self._wake),
        )
        self._threads = [worker, watcher]
        for t in self._threads:
            t.start()
        if not self._synced.wait(timeout):
            self.stop()
            raise RuntimeError(
                f"pod runner: no successful sync with the API server within {timeout:.0f}s"
                + (f": {self.error}" if self.error else "")
            )
        return self

    def stop(self, timeout: float = 90.0) -> None:
        """Stop every process (graceful, then killed) and the threads; idempotent."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        # The worker stops the pods when it exits; a worker that never started leaves them to us.
        self._stop_all()
        if self._secret_root is not None:
            shutil.rmtree(self._secret_root, ignore_errors=True)
            self._secret_root = None
        for api in (self._api, self._query_api):
            if api is not None:
                with contextlib.suppress(Exception):
                    api.close()
        self._api = self._query_api = None

    # ------------------------------------------------------------------ queries (any thread)
    def resolver(self, namespace: str, livestream: str, role_key: str) -> Optional[str]:
        """The operator's agent client asks this: agent base URL of ``<livestream>-<role_key>``
        (a StatefulSet's first running replica), None unless running."""
        urls = self.replicas(namespace, livestream, role_key)
        return urls[0] if urls else None

    def replicas(self, namespace: str, livestream: str, role_key: str) -> list[str]:
        """Agent base URLs of every running pod of ``<livestream>-<role_key>``: the Deployment's one,
        or each replica of a StatefulSet (``<livestream>-<role_key>-<ordinal>``), by name."""
        name = f"{livestream}-{role_key}"
        urls = []
        with self._lock:
            for (ns, pod_name), pod in sorted(self._pods.items()):
                if ns != namespace or not pod.running:
                    continue
                if pod_name != name and not (pod_name.startswith(f"{name}-") and pod_name[len(name) + 1 :].isdigit()):
                    continue
                number = pod.plan.port_number("agent")
                local = self._ports.local(pod.plan, number) if number is not None else None
                if local:
                    urls.append(f"http://{loopback.LOCAL_HOST}:{local}")
        return urls

    def pods(self, namespace: Optional[str] = None, livestream: Optional[str] = None) -> list[PodInfo]:
        out = []
        with self._lock:
            for pod in self._pods.values():
                plan, pid = pod.plan, pod.live_pid
                if (
                    pid is None
                    or pod.stopping
                    or (namespace and plan.namespace != namespace)
                    or (livestream and plan.livestream != livestream)
                ):
                    continue
                out.append(
                    PodInfo(
                        plan.namespace,
                        plan.name,
                        plan.livestream,
                        plan.component,
                        pid,
                        self._ports.by_name(plan),
                        pod.log_path,
                        pod.ready,
                    )
                )
        return sorted(out, key=lambda i: (i.namespace, i.name))

    def livestreams(self) -> list[tuple[str, str]]:
        return sorted({(p.namespace, p.livestream) for p in self.pods() if p.livestream})

    def log_path(self, namespace: str, deployment: str) -> Path:
        return self.root / "namespaces" / namespace / "pods" / deployment / "agent.log"

    def log_tail(self, namespace: str, deployment: str, lines: int = 40) -> str:
        try:
            text = self.log_path(namespace, deployment).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def endpoints(self, namespace: str, livestream: str) -> Optional[dict[str, dict[str, str]]]:
        """Local push and playback URLs of a Livestream (its status URLs with local ports), or None
        if it does not exist. Only URLs served by a ready pod (readinessProbe passed) are listed, as
        a Service only routes to ready pods. Credentials are not included: they are in
        ``status.credentialsSecret``."""
        with self._query_lock:  # callers poll this (onair dev every 2 s): one client, not one per call
            if self._query_api is None:
                self._query_api = apiserver.client(self.kubeconfig)
            obj = self._query_api.get(LIVESTREAM, namespace, livestream)
        if obj is None:
            return None
        status = obj.get("status")
        return loopback.local_endpoints(status or {}, self._ports.ready_services(), namespace)

    # ------------------------------------------------------------------ the sync loop
    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._sync()
                    self.error = None
                    self._synced.set()
                except Exception as exc:  # noqa: BLE001 - the API may be restarting; retry next round
                    if self.error is None or str(self.error) != str(exc):
                        self._log(f"sync failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                    self.error = exc
                self._wake.wait(self.resync_seconds)
                self._wake.clear()
        finally:
            self._stop_all()

    def _note(self, key: tuple[str, str], message: Optional[str]) -> None:
        """Log a pod's problem once (and its resolution), not every resync."""
        if self._notes.get(key) == message:
            return
        if message:
            self._notes[key] = message
            self._log(f"{key[0]}/{key[1]}: {message}")
        else:
            self._notes.pop(key, None)

    def _sync(self) -> None:
        deployments, services = apiserver.list_managed(self._api, self.namespaces)
        wanted: dict[tuple[str, str], PodPlan] = {}
        for dep in deployments:
            key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
            try:
                plans = loopback.pod_plans(dep)
            except PlanError as exc:
                self._note(key, f"cannot run locally: {exc}")
                continue
            for plan in plans:
                if plan.wanted:
                    wanted[(plan.namespace, plan.name)] = plan
        self._claim_reservations(services, wanted.values())
        for plan in wanted.values():
            self._ports.allocate(plan, [(p.number, p.protocol) for p in plan.ports])
        with self._lock:
            ready = [
                p.plan
                for k, p in self._pods.items()
                if p.ready and p.running and k in wanted and p.plan.fingerprint == wanted[k].fingerprint
            ]
        self._ports.update_services(services, wanted.values(), ready)

        with self._lock:
            pods = list(self._pods.items())
        for key, pod in pods:
            if pod.stopping:
                if pod.stopped:
                    with self._lock:
                        if self._pods.get(key) is pod:
                            del self._pods[key]
                continue
            wanted_plan = wanted.get(key)
            if wanted_plan is None:
                self._begin_stop(pod, "Deployment deleted or scaled to 0")
            elif wanted_plan.fingerprint != pod.plan.fingerprint:
                self._begin_stop(pod, "pod template changed")

        with self._lock:
            running = [p for p in self._pods.values() if p.proc is not None and not p.stopping]
        processes.track(running)
        self._start_one_shots()
        now = time.monotonic()
        for key, plan in wanted.items():
            with self._lock:
                if key not in self._pods:
                    self._pods[key] = LocalPod(plan, self.log_path(*key))
                pod = self._pods[key]
            if pod.stopping:
                continue
            if pod.proc is not None and pod.proc.poll() is not None:
                self._crashed(pod, now)
            if pod.proc is None and now >= pod.next_start:
                self._start(pod)
            elif pod.running:
                self._probe(pod)
                if now - pod.secret_refreshed > SECRET_REFRESH_SECONDS:
                    assert self._volumes is not None
                    self._volumes.refresh_secrets(pod)

    def _claim_reservations(self, services: list[dict[str, Any]], plans: Iterable[PodPlan]) -> None:
        """A Service that was reserved a port now exists; the pods that read it on another local
        port start again with the real one."""
        stale = self._ports.claim_reservations(services, plans)
        with self._lock:
            pods = [self._pods[key] for key in stale if key in self._pods]
        for pod in pods:
            if not pod.stopping:
                self._begin_stop(pod, "a Service it reads appeared on another local port")

    def _probe(self, pod: LocalPod) -> None:
        """The readinessProbe (httpGet) on the local port; no probe means ready once started."""
        if pod.plan.readiness is None:
            ready = True
        else:
            path, number = pod.plan.readiness
            ready = http_ready(path, self._ports.local(pod.plan, number))
        if ready != pod.ready:
            pod.ready = ready
            self._wake.set()  # Service endpoints changed: recompute them now, not at the next resync

    def _crashed(self, pod: LocalPod, now: float) -> None:
        assert pod.proc is not None
        code = pod.proc.returncode
        pod.ready = False
        processes.kill_leftovers(pod)
        pod.proc = None
        if now - pod.started_at > BACKOFF_RESET_SECONDS:
            pod.restarts = 0
        pod.restarts += 1
        delay = min(2.0 ** (pod.restarts - 1), BACKOFF_MAX_SECONDS)
        pod.next_start = now + delay
        self._log(
            f"{pod.plan.namespace}/{pod.plan.name} exited with code {code}; restarting in {delay:.0f}s "
            f"(restart #{pod.restarts}). Last lines of {pod.log_path}:\n"
            f"{self.log_tail(pod.plan.namespace, pod.plan.name, 15)}"
        )

    # ------------------------------------------------------------------ starting
    def _start(self, pod: LocalPod) -> None:
        key = pod.key
        assert self._volumes is not None
        try:
            argv = self._volumes.materialize(pod)
        except Pending as exc:
            pod.pending = str(exc)
            self._note(key, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one bad pod must not stop the others
            pod.pending = f"{type(exc).__name__}: {exc}"
            self._note(key, f"cannot start: {pod.pending}")
            pod.next_start = time.monotonic() + 5
            return
        pod.pending = None
        self._note(key, None)
        try:
            processes.spawn(pod, argv, self._volumes.pod_dir(pod.plan))
        except OSError as exc:  # e.g. the container's command does not exist here
            pod.pending = f"cannot run {argv[0]}: {exc.strerror or exc}"
            pod.next_start = time.monotonic() + 10
            self._note(key, pod.pending)
            return
        ports = self._ports.by_name(pod.plan)
        self._log(
            f"started {key[0]}/{key[1]} (pid {pod.live_pid}, ports "
            f"{', '.join(f'{n}={p}' for n, p in ports.items())}; log {pod.log_path})"
        )

    def _start_one_shots(self) -> None:
        for manifest in apiserver.list_pods(self._api, self.namespaces):
            uid = manifest["metadata"]["uid"]
            if uid in self._one_shots or not oneshot.wants_a_run(manifest):
                continue
            key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
            thread = threading.Thread(
                target=oneshot.run_one_shot,
                args=(manifest,),
                daemon=True,
                name=f"one-shot-{key[1]}",
                kwargs={
                    "api": self._api,
                    "volumes": self._volumes,
                    "log_path": self.log_path(*key),
                    "stop": self._stop,
                    "note": self._note,
                    "log": self._log,
                },
            )
            self._one_shots[uid] = thread
            thread.start()

    # ------------------------------------------------------------------ stopping
    def _begin_stop(self, pod: LocalPod, why: str) -> None:
        pod.stopping = True
        pod.ready = False
        if pod.proc is None:
            remove_secrets(pod)
            pod.stopped = True
            self._wake.set()
            return
        self._log(f"stopping {pod.plan.namespace}/{pod.plan.name}: {why}")
        t = threading.Thread(target=self._stop_pod, args=(pod,), name=f"stop-{pod.plan.name}", daemon=True)
        self._stoppers.append(t)
        t.start()

    def _stop_pod(self, pod: LocalPod) -> None:
        try:
            grace = pod.plan.grace_seconds
            if self.max_grace_seconds is not None:
                grace = min(grace, self.max_grace_seconds)
            processes.terminate(pod, grace, self._log)
            remove_secrets(pod)
        finally:
            pod.stopped = True
            self._wake.set()

    def _stop_all(self) -> None:
        with self._lock:
            pods = [p for p in self._pods.values() if not p.stopping]
        for pod in pods:
            self._begin_stop(pod, "pod runner stopping")
        for t in list(self._stoppers):
            t.join()
        self._stoppers = [t for t in self._stoppers if t.is_alive()]
        with self._lock:
            self._pods = {k: p for k, p in self._pods.items() if not p.stopped}
