"""A small kubelet for onair: every media Deployment of the local cluster runs as a local process.

The local control plane has no scheduler and no kubelet, so the operator's Deployments only
ever produce Pending Pods. For the process runtime of `onair dev` (``devruntime``: the fallback
where a real node cannot run) and the end-to-end tests this runner plays the kubelet for exactly
those Deployments (label ``app.kubernetes.io/managed-by=onair-operator``):

* one process group per Deployment with replicas > 0, running the container's command
  (``onair agent <role> --config ...`` as ``python -m onair.cli ...``);
* volumes become directories: a ConfigMap's files are written out (a role config is rewritten for
  loopback by ``loopback.rewrite_config``), a Secret's keys go to 0600 files in a private temp
  dir removed on stop, an emptyDir is fresh per start, a PersistentVolumeClaim is a directory
  under the runner's root that outlives the pod (and the Livestream: recordings stay on disk);
* ports become free 127.0.0.1 ports, stable for the runner's lifetime per (Deployment, container
  port), so a restarted origin keeps the address the transcoder was configured with, as a
  Service would;
* a new pod template (the render's config-hash annotation changes with the config) restarts the
  process, deletion or ``replicas: 0`` stops it, a crash restarts it with backoff;
* a bare pod of the operator's (no ReplicaSet owns it) with ``restartPolicy: Never`` (the
  one-shot pod that deletes a Recording's files) runs once to completion, its volumes as above,
  and its phase and container state are written into its status as the kubelet would
  (``Succeeded``/``Failed``, exit code, the output's tail as the termination message of a failed
  run with ``FallbackToLogsOnError``); ``activeDeadlineSeconds`` bounds it;
* stopping is what the kubelet does: SIGTERM, ``terminationGracePeriodSeconds``, then SIGKILL of
  the agent and of every process it started (they run in sessions of their own, so they are
  found by a tag in their environment and by the process tree), never anything else.

``resolver`` answers the operator's prober (agent base URL of a running pod) and ``endpoints``
turns a Livestream's status URLs into the local push and playback URLs.

Deployment status is left to kube-controller-manager: the operator reads every agent's own
``/status``, never ``readyReplicas``, and the deployment controller would overwrite a patch anyway.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from uuid import uuid4

from onair.agent.parentdeath import die_with_parent
from onair.api.meta import GROUP, VERSION
from onair.freeport import free_port

from . import loopback, proctree
from .loopback import PlanError, PodPlan

SELECTOR = "app.kubernetes.io/managed-by=onair-operator"
BACKOFF_MAX_SECONDS = 30.0


class _Pending(Exception):
    """The pod cannot start yet (a ConfigMap, Secret, claim or Service is missing); retried."""


def _free_port(protocol: str, taken: set[int]) -> int:
    return free_port(socket.SOCK_DGRAM if protocol.upper() == "UDP" else socket.SOCK_STREAM, loopback.LOCAL_HOST, taken)


# ----------------------------------------------------------------------------- one pod
@dataclass
class LocalPod:
    plan: PodPlan
    log_path: Path
    tag: str = field(default_factory=lambda: uuid4().hex)
    proc: Optional[subprocess.Popen] = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    pending: Optional[str] = None
    stopping: bool = False
    stopped: bool = False
    secret_dir: Optional[Path] = None
    secret_refreshed: float = 0.0
    ready: bool = False
    # Every process seen in this pod's family while it ran: what a crash leaves behind is killed
    # even once it is reparented and untagged (a container's cgroup would take it down too).
    known: dict[int, proctree.Proc] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.plan.namespace, self.plan.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.stopping


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    livestream: Optional[str]
    component: Optional[str]
    pid: int
    ports: dict[str, int]  # container port name -> local port
    log_path: Path
    ready: bool


# ----------------------------------------------------------------------------- the runner
class PodRunner:
    """Run the onair media Deployments of a cluster as local processes until ``stop()``.

    >>> with PodRunner(kubeconfig, root) as runner:
    ...     run_operator(kubeconfig=kubeconfig, resolver=runner.resolver, ...)
    """

    def __init__(self, kubeconfig: str | Path, root: str | Path, *, namespaces: Optional[Iterable[str]] = None,
                 resync_seconds: float = 2.0, max_grace_seconds: Optional[float] = None,
                 python: str = sys.executable, log: Optional[Callable[[str], None]] = None) -> None:
        self.kubeconfig = str(kubeconfig)
        self.root = Path(root)
        self.namespaces = list(namespaces) if namespaces else None
        self.resync_seconds = resync_seconds
        self.max_grace_seconds = max_grace_seconds
        self.python = python
        self._log = log or (lambda m: print(f"[podrunner] {m}", flush=True))
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], LocalPod] = {}
        self._ports: dict[tuple[str, str, int], int] = {}
        # Service ports of every wanted pod (what configs are rewritten with: DNS resolves before
        # a pod is ready) and of ready pods only (what users are shown, as Service endpoints).
        self._services: dict[tuple[str, str, int], int] = {}
        self._ready_services: dict[tuple[str, str, int], int] = {}
        # A config may name a Service that does not exist (the backup ingest of a Livestream that
        # has none: it is there for when it is turned on, without restarting the reader). Like a
        # ClusterIP that refuses connections, it gets a local port nobody listens on yet, and the
        # pod that comes to back that Service later is given exactly that port.
        self._service_names: set[tuple[str, str]] = set()
        self._known_services: dict[tuple[str, str, int], int] = {}  # every Service port ever resolved
        self._reserved: dict[tuple[str, str, int], int] = {}  # absent Service port -> its local port
        self._reserved_for: dict[tuple[str, str, int], set[tuple[str, str]]] = {}  # -> pods using it
        self._notes: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stoppers: list[threading.Thread] = []
        self._secret_root: Optional[Path] = None
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
        from .apply import api_client

        self.root.mkdir(parents=True, exist_ok=True)
        # Secrets never touch the (persistent) root: a private dir, preferably in RAM.
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self._secret_root = Path(tempfile.mkdtemp(prefix="onair-podrunner-secrets-", dir=base))
        self._api = api_client(self.kubeconfig)
        worker = threading.Thread(target=self._work, name="onair-podrunner", daemon=True)
        watcher = threading.Thread(target=self._watch, name="onair-podrunner-watch", daemon=True)
        self._threads = [worker, watcher]
        for t in self._threads:
            t.start()
        if not self._synced.wait(timeout):
            self.stop()
            raise RuntimeError(f"pod runner: no successful sync with the API server within {timeout:.0f}s"
                               + (f": {self.error}" if self.error else ""))
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
        """The operator's prober: agent base URL of ``<livestream>-<role_key>``, None unless running."""
        with self._lock:
            pod = self._pods.get((namespace, f"{livestream}-{role_key}"))
            if pod is None or not pod.running:
                return None
            number = pod.plan.port_number("agent")
            local = self._ports.get((namespace, pod.plan.name, number)) if number is not None else None
        return f"http://{loopback.LOCAL_HOST}:{local}" if local else None

    def pods(self, namespace: Optional[str] = None, livestream: Optional[str] = None) -> list[PodInfo]:
        out = []
        with self._lock:
            for pod in self._pods.values():
                plan = pod.plan
                if not pod.running or (namespace and plan.namespace != namespace) or (
                        livestream and plan.livestream != livestream):
                    continue
                ports = {p.name or str(p.number): self._ports[(plan.namespace, plan.name, p.number)]
                         for p in plan.ports if (plan.namespace, plan.name, p.number) in self._ports}
                out.append(PodInfo(plan.namespace, plan.name, plan.livestream, plan.component, pod.proc.pid,
                                   ports, pod.log_path, pod.ready))
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
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from .apply import api_client

        with self._query_lock:  # callers poll this (onair dev every 2 s): one client, not one per call
            if self._query_api is None:
                self._query_api = api_client(self.kubeconfig)
            try:
                obj = client.CustomObjectsApi(self._query_api).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "livestreams", livestream, _request_timeout=10)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        with self._lock:
            table = dict(self._ready_services)
        return loopback.local_endpoints(obj.get("status") or {}, table, namespace)

    # ------------------------------------------------------------------ threads
    def _watch(self) -> None:
        """Wake the worker on every Deployment event; the worker's resync covers everything else."""
        from kubernetes import client, watch

        from .apply import api_client

        api = api_client(self.kubeconfig)
        apps = client.AppsV1Api(api)
        rv: dict[Optional[str], Optional[str]] = {}
        try:
            while not self._stop.is_set():
                for ns in self.namespaces or [None]:
                    if self._stop.is_set():
                        break
                    w = watch.Watch()
                    kwargs: dict[str, Any] = {"label_selector": SELECTOR, "timeout_seconds": 2,
                                              "_request_timeout": 10}
                    if rv.get(ns):
                        kwargs["resource_version"] = rv[ns]
                    fn = apps.list_namespaced_deployment if ns else apps.list_deployment_for_all_namespaces
                    args = (ns,) if ns else ()
                    try:
                        for event in w.stream(fn, *args, **kwargs):
                            obj = event.get("object")
                            version = getattr(getattr(obj, "metadata", None), "resource_version", None)
                            if version:
                                rv[ns] = version
                            self._wake.set()
                            if self._stop.is_set():
                                w.stop()
                                break
                    except Exception:  # noqa: BLE001 - 410 Gone, API restarts: start over, the resync covers
                        rv[ns] = None
                        self._stop.wait(1.0)
        finally:
            api.close()

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

    # ------------------------------------------------------------------ reconcile
    def _list(self) -> tuple[list[dict], list[dict]]:
        from kubernetes import client

        apps, core = client.AppsV1Api(self._api), client.CoreV1Api(self._api)
        deployments, services = [], []
        for ns in self.namespaces or [None]:
            if ns:
                deps = apps.list_namespaced_deployment(ns, label_selector=SELECTOR, _request_timeout=10).items
                svcs = core.list_namespaced_service(ns, label_selector=SELECTOR, _request_timeout=10).items
            else:
                deps = apps.list_deployment_for_all_namespaces(label_selector=SELECTOR, _request_timeout=10).items
                svcs = core.list_service_for_all_namespaces(label_selector=SELECTOR, _request_timeout=10).items
            deployments += [self._api.sanitize_for_serialization(d) for d in deps]
            services += [self._api.sanitize_for_serialization(s) for s in svcs]
        return deployments, services

    def _note(self, key: tuple[str, str], message: Optional[str]) -> None:
        """Log a pod's problem once (and its resolution), not every resync."""
        if self._notes.get(key) == message:
            return
        if message:
            self._notes[key] = message
            self._log(f"{key[0]}/{key[1]}: {message}")
        else:
            self._notes.pop(key, None)

    def _allocate(self, plan: PodPlan, numbers: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            taken = set(self._ports.values()) | set(self._reserved.values())
            for number, protocol in numbers:
                key = (plan.namespace, plan.name, number)
                if key not in self._ports:
                    self._ports[key] = _free_port(protocol, taken)
                    taken.add(self._ports[key])

    def _sync(self) -> None:
        deployments, services = self._list()
        wanted: dict[tuple[str, str], PodPlan] = {}
        for dep in deployments:
            key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
            try:
                plan = loopback.pod_plan(dep)
            except PlanError as exc:
                self._note(key, f"cannot run locally: {exc}")
                continue
            if plan.wanted:
                wanted[key] = plan
        self._claim_reservations(services, wanted.values())
        for plan in wanted.values():
            self._allocate(plan, [(p.number, p.protocol) for p in plan.ports])
        with self._lock:
            self._service_names = {((s.get("metadata") or {}).get("namespace"), (s.get("metadata") or {}).get("name"))
                                   for s in services}
            self._services = loopback.service_table(services, wanted.values(), self._ports)
            self._known_services.update(self._services)
            ready = [p.plan for k, p in self._pods.items() if p.ready and p.running and k in wanted
                     and p.plan.fingerprint == wanted[k].fingerprint]
            self._ready_services = loopback.service_table(services, ready, self._ports)

        with self._lock:
            pods = list(self._pods.items())
        for key, pod in pods:
            if pod.stopping:
                if pod.stopped:
                    with self._lock:
                        if self._pods.get(key) is pod:
                            del self._pods[key]
                continue
            plan = wanted.get(key)
            if plan is None:
                self._begin_stop(pod, "Deployment deleted or scaled to 0")
            elif plan.fingerprint != pod.plan.fingerprint:
                self._begin_stop(pod, "pod template changed")

        self._track()
        self._start_one_shots()
        now = time.monotonic()
        for key, plan in wanted.items():
            with self._lock:
                pod = self._pods.get(key)
                if pod is None:
                    pod = LocalPod(plan, self.log_path(*key))
                    self._pods[key] = pod
            if pod.stopping:
                continue
            if pod.proc is not None and pod.proc.poll() is not None:
                self._crashed(pod, now)
            if pod.proc is None and now >= pod.next_start:
                self._start(pod)
            elif pod.running:
                self._probe(pod)
                if now - pod.secret_refreshed > 10:
                    self._refresh_secrets(pod)

    def _probe(self, pod: LocalPod) -> None:
        """The readinessProbe (httpGet) on the local port; no probe means ready once started."""
        import urllib.error
        import urllib.request

        if pod.plan.readiness is None:
            ready = True
        else:
            path, number = pod.plan.readiness
            with self._lock:
                local = self._ports.get((pod.plan.namespace, pod.plan.name, number))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(f"http://{loopback.LOCAL_HOST}:{local}{path}", timeout=1.0) as resp:
                    ready = 200 <= resp.status < 400
            except (urllib.error.URLError, OSError, ValueError):
                ready = False
        if ready != pod.ready:
            pod.ready = ready
            self._wake.set()  # Service endpoints changed: recompute them now, not at the next resync

    def _track(self) -> None:
        """Remember each running pod's processes (one /proc pass for all pods)."""
        with self._lock:
            running = [p for p in self._pods.values() if p.proc is not None and not p.stopping]
        if not running:
            return
        table = proctree.proc_table()
        tags = proctree.tags_of(table)
        for pod in running:
            root = pod.proc.pid if pod.proc.poll() is None else None
            pod.known = {pid: proc for pid, proc in pod.known.items()
                         if pid in table and table[pid].start == proc.start}
            pod.known.update(proctree.family(root, pod.tag, table, tags))

    def _crashed(self, pod: LocalPod, now: float) -> None:
        code = pod.proc.returncode
        pod.ready = False
        # Whatever it left behind (its nginx still holding the ports), as a container's cgroup would.
        leftovers = {**pod.known, **proctree.family(None, pod.tag)}
        leftovers.pop(pod.proc.pid, None)
        proctree.kill_all(leftovers)
        pod.known = {}
        pod.proc = None
        if now - pod.started_at > 60:
            pod.restarts = 0
        pod.restarts += 1
        delay = min(2.0 ** (pod.restarts - 1), BACKOFF_MAX_SECONDS)
        pod.next_start = now + delay
        self._log(f"{pod.plan.namespace}/{pod.plan.name} exited with code {code}; restarting in {delay:.0f}s "
                  f"(restart #{pod.restarts}). Last lines of {pod.log_path}:\n"
                  f"{self.log_tail(pod.plan.namespace, pod.plan.name, 15)}")

    # ------------------------------------------------------------------ starting
    def _read(self, kind: str, namespace: str, name: str) -> dict:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self._api)
        fn = {"ConfigMap": core.read_namespaced_config_map, "Secret": core.read_namespaced_secret,
              "PersistentVolumeClaim": core.read_namespaced_persistent_volume_claim}[kind]
        try:
            obj = self._api.sanitize_for_serialization(fn(name, namespace, _request_timeout=10))
        except ApiException as exc:
            if exc.status == 404:
                raise _Pending(f"waiting for {kind} {name}") from None
            raise
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            raise _Pending(f"{kind} {name} is being deleted")
        return obj

    def _read_volume_source(self, kind: str, namespace: str, volume: loopback.Volume) -> dict:
        """The object behind a volume; an optional one that does not exist reads as empty."""
        try:
            return self._read(kind, namespace, volume.source)
        except _Pending:
            if volume.optional:
                return {}
            raise

    def _pod_dir(self, plan: PodPlan) -> Path:
        return self.root / "namespaces" / plan.namespace / "pods" / plan.name

    def _write_secret(self, directory: Path, volume: loopback.Volume, secret: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = secret.get("data") or {}
        items = volume.items or tuple((k, k) for k in data)
        for key, rel in items:
            if key not in data and volume.optional:
                continue
            if key not in data:
                raise _Pending(f"Secret {volume.source} has no key {key}")
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            value = base64.b64decode(data[key])
            if target.exists() and target.read_bytes() == value:
                continue
            # Atomic swap, as Kubernetes updates Secret volumes: readers re-read on inode change.
            tmp = target.with_name(f".{target.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.replace(tmp, target)

    def _refresh_secrets(self, pod: LocalPod) -> None:
        """Secret volumes follow the Secret (manual key rotation), like the kubelet's sync."""
        pod.secret_refreshed = time.monotonic()
        if pod.secret_dir is None:
            return
        try:
            for volume in pod.plan.volumes.values():
                if volume.kind == "secret":
                    self._write_secret(pod.secret_dir / volume.name, volume,
                                       self._read_volume_source("Secret", pod.plan.namespace, volume))
        except _Pending:
            pass
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the old files
            self._log(f"{pod.plan.namespace}/{pod.plan.name}: could not refresh secrets: {exc}")

    def _materialize(self, pod: LocalPod) -> list[str]:
        """Write every volume and the rewritten config; returns the command line to run."""
        plan = pod.plan
        ns = plan.namespace
        pod_dir = self._pod_dir(plan)
        pod_dir.mkdir(parents=True, exist_ok=True)
        assert self._secret_root is not None
        secret_dir = self._secret_root / ns / plan.name
        dirs: dict[str, str] = {}
        config_maps: dict[str, dict] = {}
        secrets: dict[str, dict] = {}
        for volume in plan.volumes.values():
            if volume.kind == "configMap":
                config_maps[volume.name] = self._read("ConfigMap", ns, volume.source)
                dirs[volume.name] = str(pod_dir / "volumes" / volume.name)
            elif volume.kind == "secret":
                secrets[volume.name] = self._read_volume_source("Secret", ns, volume)
                dirs[volume.name] = str(secret_dir / volume.name)
            elif volume.kind == "persistentVolumeClaim":
                claim = self._read("PersistentVolumeClaim", ns, volume.source)
                # Per claim object: a Livestream deleted and created again gets an empty DVR, while
                # the kept recordings claim (same object) keeps its files.
                uid = (claim["metadata"].get("uid") or "")[:8]
                dirs[volume.name] = str(self.root / "namespaces" / ns / "volumes" / f"{volume.source}-{uid}")
            else:  # emptyDir: fresh for every container start
                dirs[volume.name] = str(pod_dir / "volumes" / volume.name)
        mounts = loopback.local_mounts(plan, dirs)

        rendered: dict[Path, bytes] = {}
        for name, cm in config_maps.items():
            volume = plan.volumes[name]
            data = cm.get("data") or {}
            for key, rel in volume.items or tuple((k, k) for k in data):
                if key not in data:
                    raise _Pending(f"ConfigMap {volume.source} has no key {key}")
                rendered[Path(dirs[name]) / rel] = self._rewrite(plan, data[key], mounts)

        # Everything resolved: only now touch the disk.
        for volume in plan.volumes.values():
            path = Path(dirs[volume.name])
            if volume.kind in ("emptyDir", "configMap"):
                shutil.rmtree(path, ignore_errors=True)
            if volume.kind != "secret":
                path.mkdir(parents=True, exist_ok=True)
        for path, content in rendered.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        shutil.rmtree(secret_dir, ignore_errors=True)
        secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, secret in secrets.items():
            self._write_secret(Path(dirs[name]), plan.volumes[name], secret)
        pod.secret_dir = secret_dir
        pod.secret_refreshed = time.monotonic()
        return loopback.rewrite_args(plan.args, mounts, self.python)

    def _claim_reservations(self, services: list[dict], plans: Iterable[PodPlan]) -> None:
        """A Service that was reserved a port now exists: the pod behind it gets that port. Should
        that pod already have another one (it was planned before its Service was listed), the pods
        that were given the reserved port start again with the real one."""
        stale: set[tuple[str, str]] = set()
        with self._lock:
            for service_port, target in loopback.service_targets(services, plans).items():
                reserved = self._reserved.pop(service_port, None)
                if reserved is None:
                    continue
                users = self._reserved_for.pop(service_port, set())
                if self._ports.setdefault(target, reserved) != reserved:
                    stale |= users
            pods = [self._pods[key] for key in stale if key in self._pods]
        for pod in pods:
            if not pod.stopping:
                self._begin_stop(pod, "a Service it reads appeared on another local port")

    def _reserve(self, plan: PodPlan, addresses: Iterable[str]) -> dict[tuple[str, str, int], int]:
        """Local ports for the unresolved ``addresses`` that name Services which do not exist (those
        that exist but have no pod yet are waited for)."""
        out: dict[tuple[str, str, int], int] = {}
        with self._lock:
            for address in addresses:
                service_port = loopback.service_port_of(address)
                if service_port is None or service_port[:2] in self._service_names:
                    continue
                local = self._known_services.get(service_port) or self._reserved.get(service_port)
                if local is None:
                    taken = set(self._ports.values()) | set(self._reserved.values())
                    local = self._reserved[service_port] = _free_port("TCP", taken)
                if service_port in self._reserved:
                    self._reserved_for.setdefault(service_port, set()).add((plan.namespace, plan.name))
                out[service_port] = local
        return out

    def _rewrite(self, plan: PodPlan, text: str, mounts: dict[str, str]) -> bytes:
        """A role config (JSON with a ``role``) rewritten for loopback; any other file as it is."""
        try:
            config = json.loads(text)
        except ValueError:
            return text.encode()
        if not isinstance(config, dict) or "role" not in config:
            return text.encode()
        self._allocate(plan, [(n, "TCP") for n in sorted(loopback.config_ports(config))])
        with self._lock:
            ports = {n: local for (ns, name, n), local in self._ports.items()
                     if ns == plan.namespace and name == plan.name}
            services = dict(self._services)
        result = loopback.rewrite_config(config, namespace=plan.namespace, ports=ports, mounts=mounts,
                                         services=services)
        if not result.ok:
            absent = self._reserve(plan, result.unresolved)
            if absent:
                result = loopback.rewrite_config(config, namespace=plan.namespace, ports=ports, mounts=mounts,
                                                 services={**services, **absent})
        if not result.ok:
            raise _Pending(f"waiting for Service(s) {', '.join(sorted(set(result.unresolved)))} to have a local pod")
        return (json.dumps(result.config, indent=2, sort_keys=True) + "\n").encode()

    def _start(self, pod: LocalPod) -> None:
        key = pod.key
        try:
            argv = self._materialize(pod)
        except _Pending as exc:
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
        env = {**os.environ, proctree.TAG_VAR: pod.tag, "PYTHONUNBUFFERED": "1",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        # The editable checkout the runner itself imports, whatever the agent's cwd.
        src = str(Path(loopback.__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        pod.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(pod.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start #{pod.restarts}: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            try:
                pod.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=str(self._pod_dir(pod.plan)), start_new_session=True,
                                            preexec_fn=die_with_parent())
            except OSError as exc:  # e.g. the container's command does not exist here
                pod.pending = f"cannot run {argv[0]}: {exc.strerror or exc}"
                pod.next_start = time.monotonic() + 10
                self._note(key, pod.pending)
                return
        pod.started_at = time.monotonic()
        with self._lock:
            ports = {p.name: self._ports.get((pod.plan.namespace, pod.plan.name, p.number)) for p in pod.plan.ports}
        self._log(f"started {key[0]}/{key[1]} (pid {pod.proc.pid}, ports "
                  f"{', '.join(f'{n}={p}' for n, p in ports.items())}; log {pod.log_path})")

    # ------------------------------------------------------------------ one-shot pods
    def _start_one_shots(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        for ns in self.namespaces or [None]:
            items = (core.list_namespaced_pod(ns, label_selector=SELECTOR, _request_timeout=10).items if ns else
                     core.list_pod_for_all_namespaces(label_selector=SELECTOR, _request_timeout=10).items)
            for item in items:
                pod = self._api.sanitize_for_serialization(item)
                meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
                if (spec.get("restartPolicy") != "Never" or meta.get("deletionTimestamp")
                        or any(o.get("kind") == "ReplicaSet" for o in meta.get("ownerReferences") or ())
                        or status.get("phase") in ("Succeeded", "Failed") or meta["uid"] in self._one_shots):
                    continue
                thread = threading.Thread(target=self._run_one_shot, args=(pod,), daemon=True,
                                          name=f"one-shot-{meta['name']}")
                self._one_shots[meta["uid"]] = thread
                thread.start()

    def _run_one_shot(self, manifest: dict) -> None:
        """Run a one-shot pod's container to completion and report it in the pod's status."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta, spec = manifest["metadata"], manifest["spec"]
        as_deployment = {"metadata": meta, "spec": {"replicas": 1, "template": {"metadata": meta, "spec": spec}}}
        key = (meta["namespace"], meta["name"])
        try:
            plan = loopback.pod_plan(as_deployment)
        except PlanError as exc:
            self._note(key, f"cannot run locally: {exc}")
            return
        pod = LocalPod(plan, self.log_path(*key))
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        deadline = spec.get("activeDeadlineSeconds")
        while not self._stop.is_set():
            try:
                argv = self._materialize(pod)
                break
            except _Pending as exc:
                self._note(key, str(exc))
                self._stop.wait(1.0)
        else:
            return
        self._note(key, None)
        env = {**os.environ, proctree.TAG_VAR: pod.tag, "PYTHONUNBUFFERED": "1"}
        src = str(Path(loopback.__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self._log(f"running one-shot pod {key[0]}/{key[1]}: {' '.join(argv)}")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(self._pod_dir(plan)),
                                  stdin=subprocess.DEVNULL, timeout=float(deadline) if deadline else None)
            code, output, reason = done.returncode, (done.stdout + done.stderr).strip(), None
        except subprocess.TimeoutExpired as exc:
            code, output, reason = 137, str(exc), "DeadlineExceeded"
        except OSError as exc:
            code, output, reason = 128, f"cannot run {argv[0]}: {exc.strerror or exc}", None
        pod.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(pod.log_path, "a") as log:
            log.write(f"{output}\n===== exited with code {code}\n")
        [container] = spec["containers"]
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": started, "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if code != 0 and fallback:
            terminated["message"] = "\n".join(output.splitlines()[-80:])[-2048:]
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed", "startTime": started,
            "containerStatuses": [{"name": container["name"], "ready": False, "restartCount": 0,
                                   "image": container.get("image", ""), "imageID": "",
                                   "state": {"terminated": terminated}}]}
        if reason:
            status["reason"] = reason
        try:
            client.CoreV1Api(self._api).patch_namespaced_pod_status(meta["name"], meta["namespace"],
                                                                    {"status": status}, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                self._log(f"cannot report one-shot pod {key[0]}/{key[1]}: {exc.reason}")
        self._log(f"one-shot pod {key[0]}/{key[1]} exited with code {code}")

    # ------------------------------------------------------------------ stopping
    def _begin_stop(self, pod: LocalPod, why: str) -> None:
        pod.stopping = True
        pod.ready = False
        if pod.proc is None:
            self._cleanup(pod)
            pod.stopped = True
            self._wake.set()
            return
        self._log(f"stopping {pod.plan.namespace}/{pod.plan.name}: {why}")
        t = threading.Thread(target=self._stop_pod, args=(pod,), name=f"stop-{pod.plan.name}", daemon=True)
        self._stoppers.append(t)
        t.start()

    def _stop_pod(self, pod: LocalPod) -> None:
        try:
            proc = pod.proc
            known: dict[int, proctree.Proc] = dict(pod.known)
            if proc is not None:
                known.pop(proc.pid, None)  # waited for below; never signal a reaped pid
            if proc is not None and proc.poll() is None:
                grace = pod.plan.grace_seconds
                if self.max_grace_seconds is not None:
                    grace = min(grace, self.max_grace_seconds)
                known.update(proctree.family(proc.pid, pod.tag))
                # Like the kubelet: SIGTERM to the container's main process, which stops its own children.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + grace
                while proc.poll() is None and time.monotonic() < deadline:
                    # Children started during shutdown (or reparented) are still ours.
                    known.update(proctree.family(proc.pid, pod.tag))
                    time.sleep(0.2)
                if proc.poll() is None:
                    self._log(f"{pod.plan.namespace}/{pod.plan.name} did not stop within {grace:.0f}s; killing it")
            known.update(proctree.family(proc.pid if proc and proc.poll() is None else None, pod.tag))
            proctree.kill_all(known)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            self._cleanup(pod)
        finally:
            pod.stopped = True
            self._wake.set()

    def _cleanup(self, pod: LocalPod) -> None:
        if pod.secret_dir is not None:
            shutil.rmtree(pod.secret_dir, ignore_errors=True)
            pod.secret_dir = None

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
