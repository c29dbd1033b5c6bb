"""A real, throwaway Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

No kubelet and no scheduler: Pods are stored objects that never run. That is exactly what
operator tests need — real admission, validation, RBAC, CRD schemas, watches, owner
references with real garbage collection and Deployment→ReplicaSet→Pod expansion — without a
container runtime.

Everything a run writes (PKI, kubeconfigs, component logs, the etcd data dir) lives in one
run directory, on /dev/shm when available: etcd fsyncs are the main start-up and write
latency, and tmpfs (plus --unsafe-no-fsync) takes them off the disk entirely.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from onair.agent.parentdeath import die_with_parent
from onair.freeport import free_port

from . import build, certs, versions

# Controllers the operator relies on (canonical 1.28+ names): Deployments expand to
# ReplicaSets and Pods, owner references are garbage-collected, namespaces get their default
# ServiceAccount and are really deleted. StatefulSet/Job/Endpoints are cheap and make the
# objects look as they would on a real cluster (minus running Pods).
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "statefulset-controller",
    "job-controller",
    "cronjob-controller",
    "daemonset-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "disruption-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
    "resourcequota-controller",
    # Without it a deleted PVC (the DVR volume of a deleted Livestream) stays Terminating for ever.
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    # Aggregated ClusterRoles (admin/edit/view pick up rules labelled for aggregation): RBAC
    # tests of the operator's own roles depend on it.
    "clusterrole-aggregation-controller",
)

# What a cluster with a real node (onair.localcluster.node) needs on top: the node lifecycle
# controller removes the node.kubernetes.io/not-ready taint once the kubelet reports Ready
# (nothing schedules before that) and taint-based eviction goes with it; the PV binder hands
# claims to the provisioner and binds them; pod GC and the TTL controller run on every real
# cluster; the ephemeral-volume controller makes `ephemeral:` volumes work.
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-attach-detach-controller",
    "pod-garbage-collector-controller",
    "ttl-controller",
    "ephemeral-volume-controller",
    "persistentvolume-expander-controller",
)

SERVICE_ACCOUNT_ISSUER = f"https://kubernetes.default.svc.{certs.CLUSTER_DOMAIN}"


class ClusterError(RuntimeError):
    pass


class ComponentDied(ClusterError):
    pass


_RUN_PREFIX = "onair-cluster-"
_OWNER_FILE = "owner.pid"


def _run_base() -> str | None:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_run_dirs(base: str | None = None) -> list[Path]:
    """Delete run dirs whose owning process is gone.

    A SIGKILLed test run cannot clean up, and on /dev/shm its etcd data is RAM. Only dirs
    with an owner.pid naming a dead process are touched, never a live cluster's (another
    xdist worker's or another user's), and never dirs without an owner file.
    """
    root = Path(base or tempfile.gettempdir())
    removed = []
    for d in root.glob(_RUN_PREFIX + "*"):
        try:
            pid = int((d / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(data[-lines:])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_dict(
    server: str, ca_pem: bytes, user: dict[str, Any], name: str = "onair-local", namespace: str | None = None
) -> dict[str, Any]:
    ctx: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        # Embedded data rather than file paths: the file stays valid if copied elsewhere.
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": ctx}],
        "current-context": name,
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class _Proc:
    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]):
        self.name, self.argv, self.log = name, argv, log
        self._fh = open(log, "ab")
        self._fh.write(("$ " + " ".join(argv) + "\n").encode())
        self._fh.flush()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )

    def check(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            raise ComponentDied(f"{self.name} exited with code {rc}; last lines of {self.log}:\n{_tail(self.log)}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._fh.close()


class LocalCluster:
    """Context manager running a private control plane on loopback ports.

    >>> with LocalCluster() as c:
    ...     subprocess.run(["kubectl", "--kubeconfig", c.kubeconfig_path, "get", "ns"])
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        run_dir: Path | None = None,
        build_if_missing: bool = True,
        keep_run_dir: bool | None = None,
        controllers: Iterable[str] = DEFAULT_CONTROLLERS,
        apiserver_args: Iterable[str] = (),
        controller_manager_args: Iterable[str] = (),
        start_timeout: float = 120.0,
        crd_paths: Iterable[Path] = (),
        log: Callable[[str], None] | None = None,
        address: str = "127.0.0.1",
        node_access: bool = False,
    ):
        """crd_paths: YAML files (CRDs, and anything else) applied once the apiserver is
        ready but before kube-controller-manager starts. The garbage collector only
        re-discovers resource types every 30s, so objects owned by custom resources created
        later would wait up to that long to be collected; installed up front they are
        known from its first discovery.

        address: where kube-apiserver listens and what it advertises. Loopback (the default)
        is enough for clients on this host; a real node (onair.localcluster.node) needs an
        address its kubelet and its pods can reach, which also lets the `kubernetes` Service
        get real endpoints.
        node_access: prepare for kubelets as a real cluster does: the Node authorizer and
        NodeRestriction admission, a client certificate the apiserver presents to kubelets
        (logs, exec, port-forward) and their InternalIP as the address to dial."""
        self._bin_dir = bin_dir
        self._run_dir_arg = run_dir
        self._build = build_if_missing
        self.keep_run_dir = (os.environ.get("ONAIR_KEEP_CLUSTER_DIR") == "1") if keep_run_dir is None else keep_run_dir
        self.controllers = tuple(controllers)
        self.apiserver_args = list(apiserver_args)
        self.controller_manager_args = list(controller_manager_args)
        self.start_timeout = start_timeout
        self.crd_paths = [Path(p) for p in crd_paths]
        self._log = log or (lambda m: print(f"[localcluster] {m}", flush=True))
        self._procs: list[_Proc] = []
        self.run_dir: Path | None = None
        self.pki: certs.PKI | None = None
        self.server_url = ""
        self.kubeconfig_path: Path | None = None
        self.etcd_url = ""
        self.start_seconds = 0.0
        self._ssl: ssl.SSLContext | None = None
        self.address = address
        self.node_access = node_access

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig of the started cluster."""
        if self.kubeconfig_path is None:
            raise ClusterError("the local cluster is not started: it has no kubeconfig yet")
        return self.kubeconfig_path

    @property
    def logs_dir(self) -> Path:
        if self.run_dir is None:
            raise ClusterError("the local cluster is not started: it has no run directory yet")
        return self.run_dir / "logs"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "LocalCluster":
        t0 = time.monotonic()
        bins = self._binaries()
        if self._run_dir_arg:
            self.run_dir = Path(self._run_dir_arg)
        else:
            base = _run_base()
            reap_stale_run_dirs(base)
            self.run_dir = Path(tempfile.mkdtemp(prefix=_RUN_PREFIX, dir=base))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / _OWNER_FILE).write_text(str(os.getpid()))
        (self.run_dir / "logs").mkdir(exist_ok=True)
        self.pki = certs.generate(self.run_dir / "pki", extra_sans=[] if self._loopback else [self.address])
        atexit.register(self.stop)
        # Free ports are picked, then bound by a child later: another process (an xdist
        # sibling) can grab one in between. Such a collision shows up as a dead component,
        # so retry the whole stack with fresh ports a couple of times.
        last: Exception | None = None
        for attempt in range(3):
            try:
                self._start_stack(bins, attempt)
                break
            except ComponentDied as e:
                last = e
                self._stop_procs()
                if "address already in use" not in str(e):
                    self._fail(e)
                self._log(f"port collision, retrying ({e.args[0].splitlines()[0]})")
        else:
            self._fail(last or ClusterError("could not start"))
        self.start_seconds = time.monotonic() - t0
        self._log(
            f"cluster up in {self.start_seconds:.1f}s: {self.server_url} "
            f"(kubeconfig {self.kubeconfig_path}, logs {self.run_dir / 'logs'})"
        )
        return self

    def _fail(self, e: Exception) -> None:
        self.keep_run_dir = True
        self.stop()
        raise ClusterError(f"{e}\n(run dir kept for inspection: {self.run_dir})") from e

    @property
    def _loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    def _node_access_args(self) -> list[str]:
        assert self.pki
        if not self.node_access:
            return ["--authorization-mode=RBAC"]
        kubelet_client = self.pki.issue_client(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
        )
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            # A kubelet's self-chosen hostname means nothing on this host; its InternalIP does.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _binaries(self) -> dict[str, Path]:
        if self._bin_dir:
            paths = {n: Path(self._bin_dir) / n for n in build.BINARIES}
        elif self._build:
            paths = build.ensure_built(["etcd", "kubernetes"])
        else:
            paths = build.binary_paths()
        for n in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not paths[n].is_file():
                raise ClusterError(f"{paths[n]} is missing; run `onair localcluster build` first")
        return paths

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
        }
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def _start_stack(self, bins: dict[str, Path], attempt: int) -> None:
        assert self.run_dir and self.pki
        rd, pki, env = self.run_dir, self.pki, self._env()
        deadline = time.monotonic() + self.start_timeout
        logs = rd / "logs"

        # --- etcd
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = rd / f"etcd-data-{attempt}"
        etcd = _Proc(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=onair",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=onair={peer_url}",
                "--initial-cluster-state=new",
                # Throwaway data: durability buys nothing and fsync dominates write latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
            logs / "etcd.log",
            env,
        )
        self._procs.append(etcd)
        self._wait("etcd", deadline, lambda: self._http_ok(f"{self.etcd_url}/health", tls=False), [etcd])

        # --- kube-apiserver
        port = free_port()
        self.server_url = f"https://{self.address}:{port}"
        apiserver = _Proc(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={port}",
                f"--cert-dir={rd / 'apiserver-certs'}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                *self._node_access_args(),
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={certs.SERVICE_CIDR}",
                # The upstream default plugin set (NamespaceLifecycle, ServiceAccount, ResourceQuota,
                # PodSecurity, webhooks, ValidatingAdmissionPolicy, ...) is what real clusters run.
                "--allow-privileged=true",
                # A loopback address is rejected as an Endpoints IP, so the `kubernetes` Service
                # reconciler would only log validation errors forever; any other address gets
                # the default lease reconciler, as on a real cluster.
                *(["--endpoint-reconciler-type=none"] if self._loopback else []),
                "--profiling=false",
                "--event-ttl=1h",
                *self.apiserver_args,
            ],
            logs / "kube-apiserver.log",
            env,
        )
        self._procs.append(apiserver)
        self.kubeconfig_path = write_kubeconfig(
            rd / "admin.kubeconfig",
            kubeconfig_dict(
                self.server_url,
                pki.ca.cert_pem(),
                {"client-certificate-data": _b64(pki.admin.cert_pem()), "client-key-data": _b64(pki.admin.key_pem())},
            ),
        )
        self._wait(
            "kube-apiserver /readyz", deadline, lambda: self._http_ok(f"{self.server_url}/readyz"), [etcd, apiserver]
        )

        if self.crd_paths:
            self._apply_early(self.crd_paths)

        # --- kube-controller-manager
        kcm_kubeconfig = write_kubeconfig(
            rd / "kube-controller-manager.kubeconfig",
            kubeconfig_dict(
                self.server_url,
                pki.ca.cert_pem(),
                {
                    "client-certificate-data": _b64(pki.controller_manager.cert_pem()),
                    "client-key-data": _b64(pki.controller_manager.key_pem()),
                },
            ),
        )
        kcm = _Proc(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--leader-elect=false",
                # No serving endpoint needed (readiness is observed through the API below), and
                # port 0 removes one more port to race for.
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--controllers={','.join(self.controllers)}",
                # Each controller acts as its own ServiceAccount, as on kubeadm clusters: the
                # system:kube-controller-manager identity alone is not allowed to create Pods.
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                # Tests create bursts of objects; the default 20 qps makes controllers lag.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                *self.controller_manager_args,
            ],
            logs / "kube-controller-manager.log",
            env,
        )
        self._procs.append(kcm)
        # The serviceaccount controller creating `default` in `default` proves the controller
        # manager is authenticated, authorized and running its loops.
        self._wait(
            "kube-controller-manager (default ServiceAccount)",
            deadline,
            lambda: self._http_ok(f"{self.server_url}/api/v1/namespaces/default/serviceaccounts/default"),
            [etcd, apiserver, kcm],
        )

    def _apply_early(self, paths: list[Path]) -> None:
        from . import apply

        t0 = time.monotonic()
        kube = apply.client(self.kubeconfig)
        try:
            applied = apply.apply_files(kube, paths)
        finally:
            kube.close()
        self._log(f"applied {len(applied)} object(s) before the controllers in {time.monotonic() - t0:.1f}s")

    def _wait(self, what: str, deadline: float, ready: Callable[[], bool], procs: list[_Proc]) -> None:
        t0 = time.monotonic()
        while True:
            for p in procs:
                p.check()
            if ready():
                self._log(f"{what} ready after {time.monotonic() - t0:.1f}s")
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {self.start_timeout:.0f}s waiting for {what}; last lines of "
                    f"{procs[-1].log}:\n{_tail(procs[-1].log)}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop_procs()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.run_dir and not self.keep_run_dir and self._run_dir_arg is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop_procs(self) -> None:
        # Reverse start order: the controller manager first, etcd last, so nothing logs
        # connection-refused storms while shutting down.
        for p in reversed(self._procs):
            with contextlib.suppress(Exception):
                p.stop()
        self._procs.clear()

    def check_alive(self) -> None:
        """Raise ComponentDied if any component has exited (with its log tail)."""
        for p in self._procs:
            p.check()

    def log_path(self, component: str) -> Path:
        assert self.run_dir
        return self.run_dir / "logs" / f"{component}.log"

    # ------------------------------------------------------------------ raw API access (admin)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            assert self.pki
            ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
            ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
            self._ssl = ctx
        return self._ssl

    def _http_ok(self, url: str, tls: bool = True) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=self._ssl_context() if tls else None) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 10) -> Any:
        """Call the API as cluster-admin without a client library; returns the decoded JSON."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.server_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise ClusterError(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------------ kubeconfigs for RBAC tests

    def _kubeconfig_dir(self) -> Path:
        assert self.run_dir
        d = self.run_dir / "kubeconfigs"
        d.mkdir(exist_ok=True)
        return d

    def serviceaccount_kubeconfig(
        self,
        namespace: str,
        name: str,
        *,
        create: bool = True,
        expiration_seconds: int = 3600,
        path: Path | None = None,
    ) -> Path:
        """Kubeconfig authenticating as system:serviceaccount:<namespace>:<name> with a bound
        token from the TokenRequest API (what a Pod would get). Creates the SA if asked."""
        base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        if create:
            try:
                self.request(
                    "POST",
                    base,
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
                )
            except ClusterError as e:
                if "HTTP 409" not in str(e):
                    raise
        tr = self.request(
            "POST",
            f"{base}/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        assert self.pki
        cfg = kubeconfig_dict(
            self.server_url, self.pki.ca.cert_pem(), {"token": tr["status"]["token"]}, namespace=namespace
        )
        return write_kubeconfig(path or self._kubeconfig_dir() / f"sa-{namespace}-{name}.kubeconfig", cfg)

    def user_kubeconfig(
        self, user: str, groups: Iterable[str] = (), *, impersonate: bool = False, path: Path | None = None
    ) -> Path:
        """Kubeconfig acting as an arbitrary user/groups.

        Default: a client certificate (CN=user, O=groups) signed by the cluster CA, i.e. real
        authentication that every client library understands. impersonate=True instead uses
        the admin credentials with `as`/`as-groups`, which kubectl honours (the Python client
        does not), handy for checking impersonation RBAC itself.
        """
        assert self.pki
        groups = list(groups)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        if impersonate:
            u: dict[str, Any] = {
                "client-certificate-data": _b64(self.pki.admin.cert_pem()),
                "client-key-data": _b64(self.pki.admin.key_pem()),
                "as": user,
            }
            if groups:
                u["as-groups"] = groups
            default = self._kubeconfig_dir() / f"impersonate-{safe}.kubeconfig"
        else:
            pair = self.pki.issue_client(f"user-{safe}-{len(groups)}", user, groups)
            u = {"client-certificate-data": _b64(pair.cert_pem()), "client-key-data": _b64(pair.key_pem())}
            default = self._kubeconfig_dir() / f"user-{safe}.kubeconfig"
        return write_kubeconfig(path or default, kubeconfig_dict(self.server_url, self.pki.ca.cert_pem(), u))

    @property
    def version(self) -> str:
        return versions.KUBERNETES_VERSION
