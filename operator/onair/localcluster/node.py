"""A real Kubernetes node for the local control plane: pods run, Services route, PVCs bind.

containerd and runc (Debian's), the CNI bridge/host-local/portmap/loopback plugins (Debian's
containernetworking-plugins), kubelet, kube-proxy in iptables mode and kube-scheduler (built
from the pinned k8s.io/kubernetes), CoreDNS and rancher's local-path-provisioner (built from
their pinned Go modules, run as Deployments from images written by `images`).

Isolation, so a node can neither reach the network nor leave anything behind:

* Network: the node lives in a network namespace of its own, joined to the host by a veth pair
  on a /30 picked among unused private addresses. kube-apiserver listens on the host end, the
  kubelet's InternalIP is the node end. The node namespace has no default route: the Pod CIDR,
  the Service CIDR, the bridge, every iptables rule (kube-proxy's, the CNI plugins') exist only
  inside it, and nothing a pod sends can leave this machine. Pod traffic to the apiserver is
  masqueraded to the node address by the bridge plugin, so the host needs no route to pods.
* Mounts: containerd, kubelet and kube-proxy share a private mount namespace whose /run,
  /var/lib and /var/log are the node's own (tmpfs, or the state dir). Every overlay, tmpfs,
  bind and netns mount they make dies with that namespace: the host's mount table never sees one.
* Kernel settings: kubelet insists on a few global sysctls (kernel.panic, vm.overcommit_memory,
  ...). Inside the node's mount namespace the files it reads already hold its values, so it
  never writes the host's.
* cgroups: every pod lives below a cgroup root named after the node (cgroupfs driver; the
  host has cgroup v1), removed at teardown.

`leftovers()` lists whatever of a node still exists; the tests assert it is empty after stop().
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from . import build, certs, images
from .cluster import (
    DEFAULT_CONTROLLERS,
    NODE_CONTROLLERS,
    ClusterError,
    LocalCluster,
    _b64,
    _pid_alive,
    _Proc,
    _tail,
    kubeconfig_dict,
    write_kubeconfig,
)

NODE_NAME = "onair-node"
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"  # this node's share of CLUSTER_CIDR; the CNI bridge hands these out
DNS_SERVICE_IP = str(ipaddress.ip_network(certs.SERVICE_CIDR)[10])
STORAGE_CLASS = "local-path"
LOCAL_PATH_NAMESPACE = "local-path-storage"
LOCAL_PATH_PROVISIONER_NAME = "rancher.io/local-path"
# Host/node links are /30s out of this block; ones in use on the host (another node, anything
# else) are skipped. It overlaps neither CLUSTER_CIDR nor the Service CIDR.
LINK_POOL = ipaddress.IPv4Network("10.201.0.0/16")

CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
_STATE_PREFIX = "onair-node-"
_STATE_FILE = "node.json"
_OWNER_FILE = "owner.pid"

# What kubelet sets on start (kubelet/cm: setupKernelTunables) unless already so.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}

# Debian packages the node runs (installed by scripts/install-deps from debian-test-packages.txt).
REQUIRED_TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "catatonit": "catatonit",
}


class NodeError(ClusterError):
    pass


def missing_tools() -> list[str]:
    """What this machine lacks to run a node, as 'tool (Debian package)'."""
    out = [
        f"{tool} ({pkg})"
        for tool, pkg in REQUIRED_TOOLS.items()
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).is_file()
    ]
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN_DIR / plugin).is_file():
            out.append(f"{CNI_BIN_DIR / plugin} (containernetworking-plugins)")
    if not Path("/bin/busybox").is_file():
        out.append("/bin/busybox (busybox-static)")
    return out


def _run(cmd: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# ----------------------------------------------------------------------------- addresses


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for cmd in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        for line in _run(cmd, check=False).stdout.splitlines():
            if line.startswith("blackhole"):  # the nodes' own guard routes (see add_guard_routes)
                continue
            for word in line.split():
                with contextlib.suppress(ValueError):
                    if "/" in word or word[:1].isdigit():
                        nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if n.version == 4 and n.prefixlen > 0]


def pick_link(
    used: Iterable[ipaddress.IPv4Network], pool: ipaddress.IPv4Network = LINK_POOL, rng: random.Random | None = None
) -> ipaddress.IPv4Network:
    """A /30 of `pool` overlapping nothing in `used` (random start, so parallel runs rarely
    even meet the lock)."""
    used = list(used)
    subnets = list(pool.subnets(new_prefix=30))
    start = (rng or random).randrange(len(subnets))
    for i in range(len(subnets)):
        cand = subnets[(start + i) % len(subnets)]
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise NodeError(f"no free /30 left in {pool} for a node link")


# Ranges that exist only inside node network namespaces. While any node exists, the host
# drops traffic to them instead of following its default route off the machine: kube-apiserver
# dialing a pod or Service address (a proxy subresource, a webhook) or a straggler to a link
# just removed. A node's own /30 is more specific and still reaches it.
GUARD_ROUTES = (CLUSTER_CIDR, certs.SERVICE_CIDR, str(LINK_POOL))
_LINK_LOCK = ".onair-node-link.lock"


@contextlib.contextmanager
def _link_lock():
    """Serializes address picking and guard-route bookkeeping among nodes starting and stopping."""
    with open(_state_base() / _LINK_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _host_routes() -> list[str]:
    return _run(["ip", "-4", "route", "show"], check=False).stdout.splitlines()


def add_guard_routes() -> list[str]:
    """Blackhole GUARD_ROUTES on the host, except a range the host really routes somewhere
    (then it is not ours to shadow). Returns the ranges guarded."""
    routes = _host_routes()
    real = [
        ipaddress.IPv4Network(line.split()[0], strict=False)
        for line in routes
        if line.split() and not line.startswith(("default", "blackhole")) and line.split()[0][:1].isdigit()
    ]
    guarded = []
    for net in GUARD_ROUTES:
        n = ipaddress.IPv4Network(net)
        if any(n.overlaps(r) and not (r.subnet_of(n) and n == LINK_POOL) for r in real):
            continue
        _run(["ip", "route", "replace", "blackhole", net])
        guarded.append(net)
    return guarded


def remove_guard_routes(except_netns: str = "") -> None:
    """Drop the guard routes once no node is left (callers hold _link_lock)."""
    others = [
        line.split()[0]
        for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines()
        if line.startswith(_STATE_PREFIX) and line.split()[0] != except_netns
    ]
    if others:
        return
    for line in _host_routes():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "blackhole" and parts[1] in GUARD_ROUTES:
            _run(["ip", "route", "del", "blackhole", parts[1]], check=False)


# ----------------------------------------------------------------------------- processes


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


# Programs a node runs on the host. A process whose command line names the node's state dir is
# the node's only if it is one of these, so a shell or editor looking at a node's logs is never
# mistaken for part of it.
NODE_PROGRAMS = frozenset(
    {
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "kubelet",
        "kube-proxy",
        "kube-scheduler",
        "nsenter",
        "unshare",
        "sh",
        "catatonit",
        "iptables",
        "iptables-nft",
        "iptables-restore",
        "ip6tables",
        "ip6tables-restore",
        "xtables-nft-multi",
        "bridge",
        "host-local",
        "portmap",
        "loopback",
    }
)


def _protected_pids() -> set[int]:
    """This process, its ancestors and init: never a node's, whatever else matches."""
    out, pid = {0, 1}, os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                raw = fh.read()
            pid = int(raw[raw.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def node_processes(*, marker: str = "", cgroup_root: str = "", namespaces: Iterable[tuple[str, int]] = ()) -> list[int]:
    """Pids that belong to a node: one of NODE_PROGRAMS whose command line names `marker` (the
    state dir: containerd, kubelet, every shim's -address), anything whose cgroup is below
    `cgroup_root` (every container; the root is the node's own), or anything in one of the
    node's (kind, inode) `namespaces`. Namespaces equal to this process's own are ignored, so a
    mistaken inode can never select the host's processes."""
    # Both selectors must name a node's own things: an empty or shortened one would select the
    # whole machine.
    if marker and _STATE_PREFIX not in os.path.basename(marker.rstrip("/")):
        raise ValueError(f"not a node state dir: {marker!r}")
    if cgroup_root and not cgroup_root.startswith("/" + _STATE_PREFIX):
        raise ValueError(f"not a node cgroup root: {cgroup_root!r}")
    own = {(kind, _ns_inode("self", kind)) for kind in ("mnt", "net")}
    namespaces = [ns for ns in namespaces if ns[1] and ns not in own]
    protected = _protected_pids()
    mark = marker.encode() if marker else b""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in protected:
            continue
        hit = False
        if mark:
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
                hit = os.path.basename(argv[0].decode(errors="replace")) in NODE_PROGRAMS and any(
                    mark in a for a in argv
                )
        if not hit and cgroup_root:
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cgroup") as fh:
                    paths = [line.rstrip("\n").split(":", 2)[-1] for line in fh]
                hit = any(p == cgroup_root or p.startswith(cgroup_root + "/") for p in paths)
        if not hit and namespaces:
            hit = any(_ns_inode(entry, kind) == ino for kind, ino in namespaces)
        if hit:
            found.append(int(entry))
    return found


def kill_until_gone(find: Callable[[], list[int]], timeout: float = 15.0) -> list[int]:
    """SIGKILL whatever find() returns until it returns nothing; the pids still alive on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        pids = find()
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


# ----------------------------------------------------------------------------- cgroups (v1)


def cgroup_hierarchies() -> list[Path]:
    """Mount points of the host's cgroup hierarchies (v1 controllers, or the v2 unified one)."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2"):
                out.append(Path(left.split()[4]))
    return out


def _check_cgroup_name(name: str) -> None:
    if not name.startswith(_STATE_PREFIX) or "/" in name:
        raise ValueError(f"not a node cgroup name: {name!r}")


def create_cgroup_root(name: str) -> None:
    _check_cgroup_name(name)
    for h in cgroup_hierarchies():
        d = h / name
        d.mkdir(exist_ok=True)
        if (h / "cpuset.cpus").is_file():
            # A new v1 cpuset starts with no CPUs and no memory nodes: nothing could run in it.
            for f in ("cpuset.cpus", "cpuset.mems"):
                with contextlib.suppress(OSError):
                    (d / f).write_text((h / f).read_text())


def remove_cgroup_root(name: str, timeout: float = 10.0) -> list[str]:
    """rmdir the node's cgroups bottom-up; returns what could not be removed."""
    _check_cgroup_name(name)
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for h in cgroup_hierarchies():
            top = h / name
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        left.append(dirpath)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# ----------------------------------------------------------------------------- stale nodes


def _state_base() -> Path:
    return Path(tempfile.gettempdir())


def teardown_state(state_dir: Path, info: dict[str, Any]) -> list[str]:
    """Remove every trace of the node described by `info` (the node's state file): processes,
    cgroups, the host end of its link, its network namespace, then the state dir. Works on a
    node whose owner was SIGKILLed as well as on a clean stop. Returns what resisted."""
    problems = []
    # By command line and cgroup only: namespace inodes are reused once a namespace is gone,
    # so a recorded one may name someone else's by now.
    cgroup = info.get("cgroup") or ""
    left = kill_until_gone(lambda: node_processes(marker=str(state_dir), cgroup_root="/" + cgroup if cgroup else ""))
    if left:
        problems.append(f"processes still alive: {left}")
    if info.get("cgroup"):
        problems += [f"cgroup not removable: {d}" for d in remove_cgroup_root(info["cgroup"])]
    if info.get("host_if"):
        _run(["ip", "link", "del", info["host_if"]], check=False)
    with _link_lock():
        if info.get("netns"):
            _run(["ip", "netns", "del", info["netns"]], check=False)
        remove_guard_routes(except_netns=info.get("netns") or "")
    # Mounts the node made live in its own mount namespace, gone with its last process; a
    # failure to unmount here would mean one escaped to the host, so look and report.
    for m in _host_mounts_under(str(state_dir)):
        if _run(["umount", "-l", m], check=False).returncode != 0:
            problems.append(f"mount left: {m}")
    shutil.rmtree(state_dir, ignore_errors=True)
    return problems


def _host_mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def reap_stale_nodes(base: Path | None = None) -> list[Path]:
    """Tear down nodes whose owning process is gone (a SIGKILLed test run leaves containers,
    shims, cgroups and a network namespace behind). Never touches a live owner's node."""
    removed = []
    for d in (base or _state_base()).glob(_STATE_PREFIX + "*"):
        try:
            pid = int((d / _OWNER_FILE).read_text().strip())
            info = json.loads((d / _STATE_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            teardown_state(d, info)
            removed.append(d)
    return removed


# ----------------------------------------------------------------------------- the node


class Node:
    """One kubelet node in its own network and mount namespaces.

    Two phases because kube-apiserver must listen on the node link's host end:

    >>> node = Node().create_network()
    >>> cluster = LocalCluster(**node.cluster_options()).start()
    >>> node.start(cluster)
    ...
    >>> node.stop_components(); cluster.stop(); node.stop()

    `LocalNodeCluster` does exactly that as one context manager.
    """

    def __init__(
        self,
        *,
        name: str = NODE_NAME,
        start_timeout: float = 240.0,
        keep_state: bool | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.name = name
        self.start_timeout = start_timeout
        self.keep_state = (os.environ.get("ONAIR_KEEP_CLUSTER_DIR") == "1") if keep_state is None else keep_state
        self._log = log or (lambda m: print(f"[localcluster.node] {m}", flush=True))
        token = secrets.token_hex(4)
        self.netns = f"{_STATE_PREFIX}{token}"
        self.host_if = f"onair{token}"  # IFNAMSIZ: at most 15 characters
        self.cgroup = f"{_STATE_PREFIX}{token}"
        self.state_dir: Path | None = None
        self.link: ipaddress.IPv4Network | None = None
        self.host_ip = self.node_ip = ""
        self.cluster: LocalCluster | None = None
        self.images: dict[str, images.Image] = {}
        self._procs: list[_Proc] = []
        self._holder: _Proc | None = None
        self._namespaces: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self._stopped = self._components_stopped = False

    # ------------------------------------------------------------------ phase 1: network

    def create_network(self) -> "Node":
        missing = missing_tools()
        if missing:
            raise NodeError(
                "a local node needs "
                + ", ".join(missing)
                + "; scripts/install-deps installs them (system-packages/debian-test-packages.txt)"
            )
        t0 = time.monotonic()
        reap_stale_nodes()
        self.state_dir = Path(tempfile.mkdtemp(prefix=_STATE_PREFIX, dir=_state_base()))
        self.state_dir.chmod(0o755)
        (self.state_dir / _OWNER_FILE).write_text(str(os.getpid()))
        self._save_state()
        try:
            # The lock makes "pick an unused /30, then take it" atomic among nodes starting at once.
            with _link_lock():
                add_guard_routes()
                self.link = pick_link(_used_networks())
                hosts = list(self.link.hosts())
                self.host_ip, self.node_ip = str(hosts[0]), str(hosts[1])
                _run(["ip", "netns", "add", self.netns])
                self._save_state()
                _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
                self._save_state()
                _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
                _run(["ip", "link", "set", self.host_if, "up"])
            inside = ["ip", "netns", "exec", self.netns]
            _run(inside + ["ip", "addr", "add", f"{self.node_ip}/30", "dev", "eth0"])
            _run(inside + ["ip", "link", "set", "eth0", "up"])
            _run(inside + ["ip", "link", "set", "lo", "up"])
            # Pods reach Services through the bridge, which must hand frames to iptables for
            # kube-proxy's NAT (both sysctls are per network namespace).
            _run(inside + ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"])
        except BaseException:
            self.stop()
            raise
        self.timings["network"] = time.monotonic() - t0
        self._log(f"network {self.netns}: host {self.host_ip} <-> node {self.node_ip} ({self.host_if}/eth0)")
        return self

    def cluster_options(self) -> dict[str, Any]:
        """LocalCluster keyword arguments for a control plane this node can join."""
        if not self.host_ip:
            raise NodeError("create_network() first: the apiserver listens on the node link")
        return {"address": self.host_ip, "node_access": True, "controllers": DEFAULT_CONTROLLERS + NODE_CONTROLLERS}

    def _save_state(self) -> None:
        assert self.state_dir
        (self.state_dir / _STATE_FILE).write_text(
            json.dumps(
                {
                    "netns": self.netns,
                    "host_if": self.host_if,
                    "cgroup": self.cgroup,
                    "namespaces": self._namespaces,
                    "host_ip": self.host_ip,
                    "node_ip": self.node_ip,
                },
                indent=1,
            )
        )

    # ------------------------------------------------------------------ phase 2: components

    def start(self, cluster: LocalCluster) -> "Node":
        assert self.state_dir, "create_network() first"
        self.cluster = cluster
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        try:
            bins = build.ensure_built(build.NODE_COMPONENTS)
            self.images = images.node_images()
            archives = {role: images.ensure_archive(img) for role, img in self.images.items()}
            self._write_configs(bins)
            self._start_holder()
            create_cgroup_root(self.cgroup)
            containerd = self._spawn("containerd", ["containerd", "--config", str(self._p("containerd/config.toml"))])
            self._wait("containerd", deadline, self._containerd_ready, [containerd])
            t_img = time.monotonic()
            for archive in archives.values():
                self.ctr("images", "import", str(archive))
            self.timings["image import"] = time.monotonic() - t_img
            self._start_control_plane_side(bins)
            kubelet = self._spawn(
                "kubelet",
                [
                    str(bins["kubelet"]),
                    f"--config={self._p('kubelet/config.yaml')}",
                    f"--kubeconfig={self._p('kubelet/kubeconfig')}",
                    f"--root-dir={self._p('kubelet/root')}",
                    f"--cert-dir={self._p('kubelet/pki')}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.node_ip}",
                    "--v=1",
                ],
            )
            proxy = self._spawn(
                "kube-proxy", [str(bins["kube-proxy"]), f"--config={self._p('kube-proxy.yaml')}", "--v=1"]
            )
            self._wait("node Ready", deadline, self._node_ready, [containerd, kubelet, proxy])
            self.timings["node ready"] = time.monotonic() - t0
            from . import apply

            kube = apply.client(cluster.kubeconfig)
            try:
                apply.apply_documents(kube, addon_documents(self))
            finally:
                kube.close()
            self._wait(
                "CoreDNS and local-path-provisioner available",
                deadline,
                self._addons_ready,
                [containerd, kubelet, proxy],
            )
        except BaseException as e:
            self.keep_state = self.keep_state or isinstance(e, ClusterError)
            # The network stays until the caller has stopped the control plane (see stop_components).
            self.stop_components()
            if isinstance(e, ClusterError) and self.state_dir:
                raise NodeError(f"{e}\n(node state dir kept for inspection: {self.state_dir})") from e
            raise
        self.timings["start"] = time.monotonic() - t0
        self._log(
            f"node {self.name} Ready with DNS and storage in {self.timings['start']:.1f}s "
            f"({', '.join(f'{k} {v:.1f}s' for k, v in self.timings.items())}); logs in {self._p('logs')}"
        )
        return self

    def _p(self, rel: str) -> Path:
        assert self.state_dir
        return self.state_dir / rel

    @property
    def containerd_socket(self) -> Path:
        return self._p("containerd/containerd.sock")

    def _in_node(self) -> list[str]:
        """Prefix running a command in the node's network and mount namespaces."""
        assert self._holder
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount=/proc/{self._holder.popen.pid}/ns/mnt", "--"]

    def _env(self) -> dict[str, str]:
        assert self.cluster
        env = self.cluster._env()
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return env

    def _spawn(self, name: str, argv: list[str], *, in_node: bool = True) -> _Proc:
        proc = _Proc(name, (self._in_node() if in_node else []) + argv, self._p(f"logs/{name}.log"), self._env())
        self._procs.append(proc)
        return proc

    def ctr(self, *args: str, timeout: float = 120) -> str:
        """Run `ctr` against this node's containerd in its k8s.io namespace (the CRI's)."""
        proc = subprocess.run(
            self._in_node() + ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def exec_in_netns(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        """Run a host command inside the node's network namespace (e.g. to inspect iptables)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv], capture_output=True, text=True, **kw
        )

    def _start_holder(self) -> None:
        """The process that owns the node's mount namespace (and sets it up), in the node's
        network namespace. Everything else joins it with nsenter."""
        sysctl_dir = self._p("sysctl")
        sysctl_dir.mkdir(exist_ok=True)
        binds = []
        for key, want in KUBELET_SYSCTLS.items():
            host = Path("/proc/sys") / key
            with contextlib.suppress(OSError):
                if host.read_text().strip() == str(want):
                    continue
            f = sysctl_dir / key.replace("/", ".")
            f.write_text(f"{want}\n")
            binds.append(f"mount --bind {f} {host}")
        script = "\n".join(
            [
                "set -e",
                "mount -t tmpfs -o mode=0755,size=256m onair-node-run /run",
                "mount -t tmpfs -o mode=0755,size=256m onair-node-varlib /var/lib",
                f"mount --bind {self._p('varlog')} /var/log",
                *binds,
                f": > {self._p('holder.ready')}",
                "exec catatonit -P",
            ]
        )
        self._p("varlog").mkdir(exist_ok=True)
        self._p("logs").mkdir(exist_ok=True)
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ]
        self._holder = _Proc("namespace holder", argv, self._p("logs/holder.log"), self._env())
        deadline = time.monotonic() + 10
        while not self._p("holder.ready").exists():
            self._holder.check()
            if time.monotonic() > deadline:
                raise NodeError(f"namespace holder not ready; log:\n{_tail(self._p('logs/holder.log'))}")
            time.sleep(0.02)
        pid = self._holder.popen.pid
        self._namespaces = {kind: _ns_inode(pid, kind) or 0 for kind in ("mnt", "net")}
        for kind, ino in self._namespaces.items():
            if not ino or ino == _ns_inode("self", kind):
                raise NodeError(f"the namespace holder (pid {pid}) is not in a {kind} namespace of its own")
        self._save_state()

    def _holder_namespaces(self) -> list[tuple[str, int]]:
        """The node's namespaces while the holder keeps them (only then is an inode surely theirs)."""
        if not self._holder or self._holder.popen.poll() is not None:
            return []
        pid = self._holder.popen.pid
        return [(k, v) for k, v in self._namespaces.items() if v and _ns_inode(pid, k) == v]

    def _write_configs(self, bins: dict[str, Path]) -> None:
        assert self.cluster and self.cluster.pki and self.state_dir
        pki, server_url = self.cluster.pki, self.cluster.server_url
        for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pki", "local-path", "logs"):
            self._p(d).mkdir(parents=True, exist_ok=True)
        self._p("containerd/config.toml").write_text(
            containerd_config(
                self._p("containerd"), sandbox_image=self.images["pause"].ref, cni_conf_dir=self._p("cni/net.d")
            )
        )
        (self._p("cni/net.d") / "10-onair.conflist").write_text(json.dumps(cni_config(self._p("cni/ipam")), indent=1))
        # Pods' resolv.conf is built from this plus cluster DNS: no host resolver is ever handed in.
        self._p("resolv.conf").write_text("# onair local node: cluster DNS only\noptions ndots:5\n")

        def kubeconfig(name: str, cn: str, orgs: list[str]) -> Path:
            pair = pki.issue_client(name, cn, orgs)
            return write_kubeconfig(
                self._p(f"{name}.kubeconfig"),
                kubeconfig_dict(
                    server_url,
                    pki.ca.cert_pem(),
                    {"client-certificate-data": _b64(pair.cert_pem()), "client-key-data": _b64(pair.key_pem())},
                ),
            )

        # Identities the built-in RBAC bindings and the Node authorizer already know.
        kubelet_kc = kubeconfig("kubelet", f"system:node:{self.name}", ["system:nodes"])
        shutil.copyfile(kubelet_kc, self._p("kubelet/kubeconfig"))
        proxy_kc = kubeconfig("kube-proxy", "system:kube-proxy", [])
        sched_kc = kubeconfig("kube-scheduler", "system:kube-scheduler", [])
        self._p("kubelet/config.yaml").write_text(
            yaml.safe_dump(
                kubelet_config(
                    node_ip=self.node_ip,
                    cgroup_root="/" + self.cgroup,
                    client_ca=pki.ca.cert,
                    runtime_socket=self.containerd_socket,
                    resolv_conf=self._p("resolv.conf"),
                ),
                sort_keys=False,
            )
        )
        self._p("kube-proxy.yaml").write_text(
            yaml.safe_dump(
                kube_proxy_config(kubeconfig=proxy_kc, node_name=self.name, node_ip=self.node_ip), sort_keys=False
            )
        )
        self._p("kube-scheduler.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(sched_kc), "qps": 100, "burst": 200},
                    "leaderElection": {"leaderElect": False},
                },
                sort_keys=False,
            )
        )

    def _start_control_plane_side(self, bins: dict[str, Path]) -> None:
        # The scheduler belongs to the control plane: host network namespace, like the apiserver.
        self._spawn(
            "kube-scheduler",
            [str(bins["kube-scheduler"]), f"--config={self._p('kube-scheduler.yaml')}", "--secure-port=0", "--v=1"],
            in_node=False,
        )

    # ------------------------------------------------------------------ readiness

    def _wait(self, what: str, deadline: float, ready: Callable[[], bool], procs: list[_Proc]) -> None:
        t0 = time.monotonic()
        while True:
            for p in [*procs, *(self._procs if self._procs else [])]:
                p.check()
            if self.cluster:
                self.cluster.check_alive()
            if ready():
                self._log(f"{what} after {time.monotonic() - t0:.1f}s")
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.log}:\n{_tail(p.log, 15)}" for p in procs)
                raise NodeError(f"timed out after {self.start_timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(0.25)

    def _containerd_ready(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        try:
            self.ctr("version", timeout=10)
        except (NodeError, subprocess.TimeoutExpired):
            return False
        return True

    def _node_ready(self) -> bool:
        assert self.cluster
        try:
            node = self.cluster.request("GET", f"/api/v1/nodes/{self.name}", timeout=5)
        except ClusterError:
            return False
        conds = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
        taints = [t["key"] for t in (node.get("spec") or {}).get("taints") or []]
        return conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

    def _addons_ready(self) -> bool:
        assert self.cluster
        for ns, name in (("kube-system", "coredns"), (LOCAL_PATH_NAMESPACE, "local-path-provisioner")):
            try:
                d = self.cluster.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", timeout=5)
            except ClusterError:
                return False
            st = d.get("status") or {}
            if st.get("availableReplicas", 0) < (d.get("spec") or {}).get("replicas", 1):
                return False
        return True

    def check_alive(self) -> None:
        for p in self._procs:
            p.check()
        if self._holder:
            self._holder.check()

    def component_pid(self, name: str) -> int:
        """The host PID of one of the node's own processes (e.g. "kubelet"), for tests that make
        it slow or stop it as a real node's component can be."""
        found = [p.popen.pid for p in self._procs if p.name == name and p.popen.poll() is None]
        if not found:
            raise NodeError(f"no running {name} on node {self.name}")
        return found[0]

    # ------------------------------------------------------------------ teardown

    def stop_components(self) -> None:
        """Stop every process of the node (containers included) but keep its network: the
        control plane listens on the link's host end and must be stopped before it goes, or
        its last requests to that address would follow the host's default route."""
        if self._components_stopped or self.state_dir is None:
            return
        self._components_stopped = True
        t0 = time.monotonic()
        # kubelet first, so it does not restart what is being killed; containerd and the
        # shims after their containers; the holder (and with it the mount namespace) last.
        order = {"kubelet": 0, "kube-proxy": 1, "kube-scheduler": 2, "containerd": 4}
        for p in sorted(self._procs, key=lambda p: order.get(p.name, 3)):
            if p.name == "containerd":
                kill_until_gone(lambda: node_processes(cgroup_root="/" + self.cgroup))
            with contextlib.suppress(Exception):
                p.stop(timeout=5)
        self._procs.clear()
        # Shims and anything else still in the node's namespaces, while the holder pins them.
        holder_pid = self._holder.popen.pid if self._holder else -1
        kill_until_gone(
            lambda: [
                pid
                for pid in node_processes(
                    marker=str(self.state_dir), cgroup_root="/" + self.cgroup, namespaces=self._holder_namespaces()
                )
                if pid != holder_pid
            ]
        )
        if self._holder:
            with contextlib.suppress(Exception):
                self._holder.stop(timeout=5)
        self.timings["teardown"] = self.timings.get("teardown", 0.0) + time.monotonic() - t0

    def stop(self) -> list[str]:
        """Stop everything and remove every trace; returns what could not be removed (empty
        on success; `leftovers()` checks independently)."""
        if self._stopped or self.state_dir is None:
            return []
        self.stop_components()
        self._stopped = True
        t0 = time.monotonic()
        info = (
            json.loads(self._p(_STATE_FILE).read_text())
            if self._p(_STATE_FILE).is_file()
            else {"netns": self.netns, "host_if": self.host_if, "cgroup": self.cgroup, "namespaces": self._namespaces}
        )
        if self.keep_state:
            kept = self.state_dir.parent / (self.state_dir.name.replace(_STATE_PREFIX, "onair-kept-node-"))
            with contextlib.suppress(OSError):
                shutil.copytree(self._p("logs"), kept / "logs", dirs_exist_ok=True)
                self._log(f"node logs kept in {kept / 'logs'}")
        problems = teardown_state(self.state_dir, info)
        self.timings["teardown"] = self.timings.get("teardown", 0.0) + time.monotonic() - t0
        self._log(
            f"node {self.name} torn down in {self.timings['teardown']:.1f}s"
            + (f"; PROBLEMS: {problems}" if problems else "")
        )
        return problems

    def leftovers(self) -> list[str]:
        """Everything of this node that still exists on the host: processes, mounts, the
        network namespace, the host end of the link, cgroups, the state dir. Empty after stop()."""
        out = []
        # Recorded inodes are only reported against, never acted on (see teardown_state).
        ns = [(k, v) for k, v in self._namespaces.items() if v]
        pids = node_processes(
            marker=str(self.state_dir) if self.state_dir else "", cgroup_root="/" + self.cgroup, namespaces=ns
        )
        if pids:
            out.append(f"processes {pids}")
        if self.state_dir:
            out += [f"mount {m}" for m in _host_mounts_under(str(self.state_dir))]
        with open("/proc/self/mountinfo") as fh:
            out += [f"mount {line.split()[4]}" for line in fh if self.netns in line]
        if self.netns in _run(["ip", "netns", "list"], check=False).stdout.split():
            out.append(f"network namespace {self.netns}")
        if _run(["ip", "link", "show", self.host_if], check=False).returncode == 0:
            out.append(f"link {self.host_if}")
        out += [f"cgroup {h / self.cgroup}" for h in cgroup_hierarchies() if (h / self.cgroup).exists()]
        if self.state_dir and self.state_dir.exists():
            out.append(f"state dir {self.state_dir}")
        others = [n for n in _run(["ip", "netns", "list"], check=False).stdout.split() if n.startswith(_STATE_PREFIX)]
        if not others:
            out += [
                f"guard route {line}"
                for line in _host_routes()
                if line.startswith("blackhole") and line.split()[1] in GUARD_ROUTES
            ]
        return out


# ----------------------------------------------------------------------------- configuration


def containerd_config(root: Path, *, sandbox_image: str, cni_conf_dir: Path) -> str:
    """containerd 1.6 (config version 2) confined to `root`; no registry is configured, and
    the node's network namespace has no route to one anyway."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{root}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[{cri}]
  # Must be imported beforehand: there is no registry to pull it from.
  sandbox_image = "{sandbox_image}"
  # Without CAP_SYS_RESOURCE, runc cannot give sandboxes the oom_score_adj of -998 kubelet
  # asks for, and every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{root}/certs.d"
"""


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "onair",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "hairpinMode": True,
                # Pod traffic leaving the bridge (to the apiserver on the host end of the node
                # link) goes out as the node address: the host never needs a route to pods.
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    *, node_ip: str, cgroup_root: str, client_ca: Path, runtime_socket: Path, resolv_conf: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        # The host has cgroup v1, which kubelet 1.35 refuses unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "clusterDomain": certs.CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(resolv_conf),
        # Tests share the machine's disk: never evict for a disk that is merely busy, never
        # garbage-collect the images that cannot be pulled again.
        "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }


def kube_proxy_config(*, kubeconfig: Path, node_name: str, node_ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": CLUSTER_CIDR,
        "nodePortAddresses": [f"{node_ip}/32"],
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # nf_conntrack_max and the TCP timeouts are host-wide: leave them as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"minSyncPeriod": "0s", "syncPeriod": "30s"},
    }


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if namespace:
        m["namespace"] = namespace
    if labels:
        m["labels"] = labels
    return m


def deployment_document(metadata: dict[str, Any], labels: dict[str, str], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """One replica of ``pod_spec``, its pods labelled ``labels`` and found by them (the local
    cluster's add-ons: CoreDNS, local-path-provisioner, Traefik)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def binding_document(
    kind: str, metadata: dict[str, Any], role_kind: str, role: str, service_account: str, namespace: str
) -> dict[str, Any]:
    """A (Cluster)RoleBinding granting ``role`` to one ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }


def coredns_documents(image: str) -> list[dict[str, Any]]:
    ns, labels = "kube-system", {"k8s-app": "kube-dns"}
    # Cluster names only: no `forward`, so no query ever leaves the node for an upstream resolver.
    corefile = (
        ".:53 {\n"
        "    errors\n"
        "    health :8080\n"
        "    ready :8181\n"
        f"    kubernetes {certs.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "    }\n"
        "    cache 30\n"
        "}\n"
    )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("coredns", ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("system:coredns"),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        binding_document("ClusterRoleBinding", _meta("system:coredns"), "ClusterRole", "system:coredns", "coredns", ns),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("coredns", ns), "data": {"Corefile": corefile}},
        deployment_document(
            _meta("coredns", ns, **labels),
            labels,
            {
                "serviceAccountName": "coredns",
                "priorityClassName": "system-cluster-critical",
                # Its own resolv.conf is the node's (no upstream), never itself.
                "dnsPolicy": "Default",
                "tolerations": [
                    {"key": "CriticalAddonsOnly", "operator": "Exists"},
                    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                ],
                "containers": [
                    {
                        "name": "coredns",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                        ],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kube-dns", ns, **labels),
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def local_path_documents(image: str, helper_image: str, node_path: Path) -> list[dict[str, Any]]:
    ns, sa = LOCAL_PATH_NAMESPACE, "local-path-provisioner-service-account"
    labels = {"app": "local-path-provisioner"}
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "helper-pod", "image": helper_image, "imagePullPolicy": "Never"}],
        },
    }
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(node_path)]}]}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("local-path-provisioner", ns),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("local-path-provisioner"),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["persistentvolumes"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
                {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
            ],
        },
        binding_document("RoleBinding", _meta("local-path-provisioner", ns), "Role", "local-path-provisioner", sa, ns),
        binding_document(
            "ClusterRoleBinding", _meta("local-path-provisioner"), "ClusterRole", "local-path-provisioner", sa, ns
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("local-path-config", ns),
            "data": {
                "config.json": json.dumps(config),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": yaml.safe_dump(helper_pod, sort_keys=False),
            },
        },
        deployment_document(
            _meta("local-path-provisioner", ns, **labels),
            labels,
            {
                "serviceAccountName": sa,
                "containers": [
                    {
                        "name": "local-path-provisioner",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": [
                            "/local-path-provisioner",
                            "--debug",
                            "start",
                            "--config",
                            "/etc/config/config.json",
                            "--helper-image",
                            helper_image,
                        ],
                        "env": [
                            {
                                "name": "POD_NAMESPACE",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                            },
                            {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
                        ],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/config/"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "local-path-config"}}],
            },
        ),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            # The default class, as on k3s and kind: PVCs without a class bind through it.
            "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER_NAME,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]


def addon_documents(node: Node) -> list[dict[str, Any]]:
    return coredns_documents(node.images["coredns"].ref) + local_path_documents(
        node.images["local-path-provisioner"].ref, node.images["busybox"].ref, node._p("local-path")
    )


# ----------------------------------------------------------------------------- both together


class LocalNodeCluster:
    """A control plane and one real node, started and stopped in the right order.

    >>> with LocalNodeCluster() as kc:
    ...     kc.cluster.kubeconfig_path, kc.node.node_ip
    """

    def __init__(
        self,
        *,
        crd_paths: Iterable[Path] = (),
        node_name: str = NODE_NAME,
        log: Callable[[str], None] | None = None,
        **cluster_kwargs: Any,
    ):
        self.node = Node(name=node_name, log=log)
        self._crd_paths = list(crd_paths)
        self._cluster_kwargs = cluster_kwargs
        self._log = log
        self.cluster: LocalCluster | None = None
        self.start_seconds = 0.0

    @property
    def control_plane(self) -> LocalCluster:
        """The started control plane the node belongs to."""
        if self.cluster is None:
            raise ClusterError("the local node cluster is not started")
        return self.cluster

    def __enter__(self) -> "LocalNodeCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "LocalNodeCluster":
        t0 = time.monotonic()
        build.ensure_built(["etcd", "kubernetes", *build.NODE_COMPONENTS])
        self.node.create_network()
        try:
            self.cluster = LocalCluster(
                crd_paths=self._crd_paths, log=self._log, **{**self.node.cluster_options(), **self._cluster_kwargs}
            ).start()
            self.node.start(self.cluster)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        # Runs before LocalCluster's own atexit hook (registered earlier), keeping the order.
        atexit.register(self.stop)
        return self

    def stop(self) -> list[str]:
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self.node.stop_components()
        if self.cluster:
            self.cluster.stop()
        return self.node.stop()

    def check_alive(self) -> None:
        if self.cluster:
            self.cluster.check_alive()
        self.node.check_alive()
