"""`onair localcluster build|start|info`."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from . import build, versions


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _cmd_build(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        paths = build.ensure_built(args.only or None, force=args.force)
        # Cached with the binaries, so the cluster tests that install them need no network.
        gateway_crds = [] if args.only else build.gateway_api_crds()
    except build.BuildError as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    for name, p in paths.items():
        print(f"{name:<24} {p}")
    if gateway_crds:
        print(f"{'gateway-api CRDs':<24} {gateway_crds[0].parent}")
    print(f"elapsed {time.monotonic() - t0:.1f}s")
    return 0


def _cmd_info(_args: argparse.Namespace) -> int:
    print(
        f"kubernetes {versions.KUBERNETES_VERSION}  etcd {versions.ETCD_VERSION}  helm {versions.HELM_VERSION}  "
        f"coredns {versions.COREDNS_VERSION}  local-path-provisioner {versions.LOCAL_PATH_PROVISIONER_VERSION}  "
        f"traefik {versions.TRAEFIK_VERSION}  seaweedfs {versions.SEAWEEDFS_VERSION}"
    )
    for name, p in build.binary_paths().items():
        print(f"{name:<24} {p}{'' if p.is_file() else '  (not built)'}")
    root = build.cache_root()
    for sub in ("controlplane", "images", "go/mod", "go/build"):
        d = root / sub
        print(f"cache {str(d):<50} {_human(build.disk_usage(d)) if d.exists() else '-'}")
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    root = build.cache_root()
    # The Go build cache is the bulk (GiBs) and only speeds up rebuilds after a version bump;
    # the module cache is kept so such a rebuild still needs no downloads.
    targets = [root] if args.all else [root / "go" / "build"]
    for t in targets:
        if t.exists():
            size = build.disk_usage(t)
            shutil.rmtree(t, ignore_errors=True)
            print(f"removed {t} ({_human(size)})")
    return 0


def wait_for_interrupt(cluster, extra_check=None) -> None:
    """Block until SIGINT/SIGTERM, failing loudly if a component dies meanwhile."""
    stop = {"flag": False}

    def handler(_sig, _frm):
        stop["flag"] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["flag"]:
            cluster.check_alive()
            if extra_check:
                extra_check()
            time.sleep(0.5)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _cmd_start(args: argparse.Namespace) -> int:
    from .cluster import ClusterError, LocalCluster

    try:
        from .node import LocalNodeCluster

        handle: LocalCluster | LocalNodeCluster
        if args.node:
            handle = LocalNodeCluster()
            handle.node.keep_state = args.keep
        else:
            handle = LocalCluster(keep_run_dir=args.keep)
        with handle:
            c = handle.control_plane if isinstance(handle, LocalNodeCluster) else handle
            kc = c.kubeconfig
            if args.kubeconfig:
                out = Path(args.kubeconfig).expanduser().resolve()
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(c.kubeconfig, out)
                out.chmod(0o600)
                kc = out
            print(
                f"\nkube-apiserver {versions.KUBERNETES_VERSION} at {c.server_url} (started in {c.start_seconds:.1f}s)"
            )
            print(f"component logs: {c.logs_dir}")
            if isinstance(handle, LocalNodeCluster):
                n = handle.node
                print(
                    f"node {n.name}: {n.node_ip} in network namespace {n.netns} (`ip netns exec {n.netns} ...`); "
                    f"logs in {n.state_dir}/logs; NodePorts answer on {n.node_ip}"
                )
                if args.traefik:
                    from . import traefik

                    entry = traefik.install(n)
                    print(
                        f"Traefik at {entry.url}: Ingress with ingressClassName {entry.ingress_class}, "
                        f"HTTPRoutes with parentRef {entry.namespace}/{entry.gateway_name} "
                        f"(sectionName {entry.gateway_listener}); point your test hostnames at {entry.address}"
                    )
            print(f"\nexport KUBECONFIG={kc}\n\nCtrl-C to stop.", flush=True)
            wait_for_interrupt(handle)
            print("\nstopping...", flush=True)
    except (ClusterError, build.BuildError) as e:
        print(f"localcluster: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="onair localcluster", description="Build or run the pinned local Kubernetes control plane."
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build etcd, kube-apiserver, kube-controller-manager and helm from source")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("only", nargs="*", help="components or binaries (etcd, kubernetes, helm, kube-apiserver, ...)")
    b.set_defaults(func=_cmd_build)
    s = sub.add_parser("start", help="run a cluster until Ctrl-C")
    s.add_argument("--kubeconfig", help="also write the admin kubeconfig to this path")
    s.add_argument("--keep", action="store_true", help="keep the run dir (logs, etcd data) after stopping")
    s.add_argument(
        "--node",
        action="store_true",
        help="also run a real node (containerd, kubelet, kube-proxy, CoreDNS, local-path-provisioner) "
        "in its own network namespace; needs root",
    )
    s.add_argument(
        "--no-traefik",
        dest="traefik",
        action="store_false",
        help="with --node: do not install Traefik (by default it serves Ingress of class traefik and "
        "the Gateway traefik/web on port 80 of the node address)",
    )
    s.set_defaults(func=_cmd_start)
    c = sub.add_parser("clean", help="free disk: drop the Go build cache (keeps binaries and modules)")
    c.add_argument("--all", action="store_true", help=f"remove the whole cache dir ({build.cache_root()})")
    c.set_defaults(func=_cmd_clean)
    i = sub.add_parser("info", help="show pinned versions, binary paths and cache sizes")
    i.set_defaults(func=_cmd_info)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
