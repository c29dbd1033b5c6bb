"""`onair dev --runtime node`: the product as a cluster runs it, on this machine.

A local control plane and a real node (``LocalNodeCluster``), the onair image of this checkout
(built, or taken from the cache) imported into the node's containerd, and the chart installed
with helm into ``onair-system`` (restricted Pod Security Standard): the operator runs as a pod
under its own ServiceAccount and RBAC, every Livestream's media pods run in containers.

Encoders on this machine reach the ingest through its NodePort Service on the node's address
(the status URLs say so). Players reach the origin through a NodePort Service `onair dev` adds
per Livestream (``<name>-dev-playback``, owned by the Livestream so it goes with it): the
chart's own ways in for playback (Ingress/HTTPRoute) need an ingress controller this node does
not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from onair.api.meta import GROUP, VERSION
from onair.kube import KINDS, LIVESTREAM, POD, KubeError, SyncKube

from . import devruntime

RELEASE = "onair"
NAMESPACE = "onair-system"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
MANAGED_BY = "onair-dev"
PLAYBACK_SUFFIX = "-dev-playback"
# The node shares this machine's cores: the operator's request defaults are sized for real streams
# (transcoder 1.5 cores) and would leave a laptop's node unable to schedule a second Livestream.
DEV_REQUESTS = {"cpu": "100m", "memory": "64Mi"}
ROLES = ("ingest", "transcoder", "origin", "recorder")


def helm_install_args(repository: str, tag: str, chart: Path, namespace: str = NAMESPACE) -> list[str]:
    """`helm install` of the chart with the locally imported image (never pulled: there is no registry)."""
    args = [
        "install",
        RELEASE,
        str(chart),
        "--namespace",
        namespace,
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        # Encoders outside the cluster (this machine) push to the node's address.
        "--set",
        "livestreams.ingest.serviceType=NodePort",
        "--set",
        "livestreams.statusPollIntervalSeconds=2",
        "--wait",
        "--timeout",
        "300s",
    ]
    for role in ROLES:
        for resource, quantity in DEV_REQUESTS.items():
            args += ["--set-string", f"livestreams.resources.{role}.requests.{resource}={quantity}"]
    return args


def playback_service(livestream: Mapping[str, Any]) -> dict[str, Any]:
    """A NodePort Service to the origin's playback port of ``livestream``, deleted with it."""
    from onair.api.meta import labels
    from onair.roles import ORIGIN

    meta = livestream["metadata"]
    name = meta["name"]
    selector = {k: v for k, v in labels(name, "origin").items()}
    http = next(p for p in ORIGIN.ports if p.name == "http")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name}{PLAYBACK_SUFFIX}",
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/part-of": "onair"},
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Livestream", "name": name, "uid": meta["uid"]}
            ],
        },
        "spec": {
            "type": "NodePort",
            "selector": selector,
            "ports": [{"name": "http", "port": http.number, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def local_urls(
    status: Mapping[str, Any],
    name: str,
    namespace: str,
    node_ip: str,
    playback_node_port: Optional[int],
    ready: Iterable[str],
) -> dict[str, dict[str, str]]:
    """The status' push and playback URLs that work from this machine now: ingest URLs already on
    the node's address (NodePort) of an ingest whose pod is ready, playback URLs moved from the
    origin's Service name to the node address and the dev playback Service's nodePort once the
    origin's pod is ready. ``ready``: the components (ingest, ingest-backup, origin) with a ready pod,
    as a Service only routes to those."""
    ready = set(ready)
    origin_host = f"{name}-origin.{namespace}.svc"
    out: dict[str, dict[str, str]] = {"ingest": {}, "playback": {}}
    for key, url in (status.get("ingest") or {}).items():
        component = "ingest-backup" if key.startswith("backup") else "ingest"
        if isinstance(url, str) and urlsplit(url).hostname == node_ip and component in ready:
            out["ingest"][key] = url
    for key, url in (status.get("playback") or {}).items():
        if not isinstance(url, str) or playback_node_port is None or "origin" not in ready:
            continue
        parts = urlsplit(url)
        if parts.hostname == origin_host:
            out["playback"][key] = urlunsplit(parts._replace(netloc=f"{node_ip}:{playback_node_port}"))
    return out


SERVICE = KINDS[("v1", "Service")]


class UrlPrinter(devruntime.UrlPrinter):
    """Gives each Livestream its dev playback Service and prints its local URLs when they change."""

    where = "on the node"

    def __init__(
        self,
        kube: SyncKube,
        node_ip: str,
        interval: float = 2.0,
        out: Callable[[str], None] = lambda text: print(text, flush=True),
    ) -> None:
        super().__init__(interval, out)
        self.kube, self.node_ip = kube, node_ip

    def livestream_urls(self) -> Iterable[tuple[str, str, dict[str, dict[str, str]]]]:
        try:
            items = self.kube.list(LIVESTREAM, None)
        except Exception:  # noqa: BLE001 - the API may be busy; next round
            return
        for ls in items:
            meta = ls["metadata"]
            ns, name = meta["namespace"], meta["name"]
            if meta.get("deletionTimestamp"):
                continue
            port = self._playback_port(ls)
            yield ns, name, local_urls(ls.get("status") or {}, name, ns, self.node_ip, port, self._ready(ns, name))

    def _ready(self, namespace: str, name: str) -> set[str]:
        """The components of Livestream ``name`` that have a ready pod."""
        from onair.api.meta import child_selector

        try:
            pods = self.kube.list(POD, namespace, child_selector(name))
        except Exception:  # noqa: BLE001 - the API may be busy; next round
            return set()
        ready = {
            (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or ()
            )
        }
        return {component for component in ready if component}

    def _playback_port(self, ls: Mapping[str, Any]) -> Optional[int]:
        meta = ls["metadata"]
        name = f"{meta['name']}{PLAYBACK_SUFFIX}"
        try:
            svc = self.kube.get(SERVICE, meta["namespace"], name) or self.kube.create(playback_service(ls))
        except KubeError:
            return None  # e.g. the namespace is going away; next round
        return next(
            (p.get("nodePort") for p in (svc.get("spec") or {}).get("ports") or () if p.get("name") == "http"), None
        )


def run(args: Any, root: Path, crd_files: list[Path], kubeconfig_out: Path) -> int:
    """Start the node, install the chart, print URLs until Ctrl-C; tear everything down."""
    from onair.packaging import manifests

    from . import apply, build, image, versions
    from .cli import wait_for_interrupt
    from .cluster import ClusterError
    from .node import LocalNodeCluster

    try:
        ref = image.build_image(root=root)
        print(f"onair image {ref.name} ({ref.size_bytes / 2**20:.0f} MiB)", flush=True)
        kc = LocalNodeCluster(crd_paths=crd_files, keep_run_dir=args.keep or None)
        node = kc.node
        node.keep_state = bool(args.keep)
        kc.start()
        try:
            assert kc.cluster is not None
            kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
            kubeconfig_out.write_bytes(kc.cluster.kubeconfig.read_bytes())
            kubeconfig_out.chmod(0o600)
            node.ctr("images", "import", str(ref.archive), timeout=600)
            kube = apply.client(kubeconfig_out)
            try:
                apply.apply_documents(
                    kube,
                    [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": RESTRICTED}}],
                )
                print(f"installing the chart into {NAMESPACE} (helm install --wait)...", flush=True)
                proc = manifests.helm(
                    "--kubeconfig",
                    str(kubeconfig_out),
                    *helm_install_args(ref.repository, ref.tag, root / "charts" / "onair"),
                    timeout=420,
                )
                if proc.returncode != 0:
                    print(
                        f"onair dev: helm install failed:\n{proc.stdout}{proc.stderr}\n"
                        f"node logs: {node.state_dir / 'logs' if node.state_dir else '-'}; "
                        f"kubectl --kubeconfig {kubeconfig_out} -n {NAMESPACE} get pods,events",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
                printer = UrlPrinter(kube, node.node_ip)
                print(
                    f"\nkube-apiserver {versions.KUBERNETES_VERSION} at {kc.cluster.server_url}; node "
                    f"{node.name} at {node.node_ip} (encoders and players on this machine reach it there); "
                    f"operator: deployment/{RELEASE}-operator in {NAMESPACE}; node logs in "
                    f"{node.state_dir / 'logs' if node.state_dir else '-'}"
                )
                print(f"\n    export KUBECONFIG={kubeconfig_out}\n")
                print(
                    "onair dev ready: create a Livestream (e.g. spec.callType: development); its push and "
                    "play URLs appear here. Ctrl-C to stop.",
                    flush=True,
                )
                wait_for_interrupt(kc, extra_check=printer.poll)
                print("\nstopping the node and the cluster...", flush=True)
            finally:
                kube.close()
        finally:
            # What teardown could not remove. Not node.leftovers() afterwards: with other nodes on this
            # machine, a namespace inode of ours may already be reused by one of theirs.
            problems = kc.stop()
        if problems:
            print(f"onair dev: the node left behind: {', '.join(problems)}", file=sys.stderr, flush=True)
            return 1
    except (ClusterError, build.BuildError) as e:
        print(f"onair dev: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
