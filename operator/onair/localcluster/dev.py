"""`onair dev`: a local cluster with onair in it, on a real node when this machine allows it.

Which runtime runs the pods is ``devruntime.choose``'s decision (``--runtime auto|node|process``),
printed first:

* ``node`` (``devnode``): control plane + a real node, the onair image of this checkout, the chart
  installed with helm; encoders and players on this machine use the node's address.
* ``process``: control plane + CRDs + built-in CallTypes, the operator in-process against the
  admin kubeconfig (a code change is one Ctrl-C and re-run away; the cluster stays up when the
  operator crashes). With ``--media`` (the default when ffmpeg and nginx with the RTMP module are
  installed) the process runner (``podrunner``) stands in for the kubelet: every agent runs as a
  local process on 127.0.0.1 with its config rewritten for loopback, and each Livestream's local
  push and playback URLs are printed as they appear.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import shutil
import sys
import threading
import traceback
from pathlib import Path

from . import build, devruntime, versions
from .image import repo_root


def _crd_files(root: Path) -> list[Path]:
    from . import apply

    crd_dir = root / "crds"
    files = apply.yaml_files(crd_dir) if crd_dir.is_dir() else []
    if files:
        print(f"installing CRDs from {crd_dir}: {', '.join(p.name for p in files)}")
    else:
        print(f"no CRDs found in {crd_dir} (generate them with `onair crds`); continuing without")
    return files


def _apply_builtin_calltypes(cluster, root: Path) -> None:
    from . import apply

    builtin = root / "manifests" / "builtin-calltypes.yaml"
    if not builtin.is_file():
        print(f"{builtin} not present; no built-in CallTypes installed")
        return
    kube = apply.client(cluster.kubeconfig)
    try:
        applied = apply.apply_files(kube, [builtin])
        print(f"applied {len(applied)} built-in CallType(s) from {builtin}")
    except Exception as e:  # noqa: BLE001 - a bad manifest must not take the dev cluster down
        print(f"could not apply {builtin}: {e}", file=sys.stderr)
    finally:
        kube.close()


def _load_runner():
    try:
        from onair.controller import runner  # noqa: PLC0415 - optional, written separately
    except ModuleNotFoundError as e:
        if e.name in ("onair.controller.runner", "onair.controller"):
            print(
                "operator not started: onair.controller.runner does not exist yet; "
                "the cluster stays up for kubectl use",
                file=sys.stderr,
            )
            return None
        raise
    fn = getattr(runner, "run_operator", None)
    if fn is None:
        print("operator not started: onair.controller.runner has no run_operator()", file=sys.stderr)
    return fn


class _OperatorThread:
    """The operator on a worker thread, so the main thread keeps SIGINT handling and can watch
    the cluster; stopped through run_operator's stop_flag. Falls back to a blocking call in
    the main thread for a runner without stop_flag."""

    def __init__(self, fn, kubeconfig: Path, resolver=None, replicas=None):
        self.fn, self.kubeconfig, self.resolver, self.replicas = fn, kubeconfig, resolver, replicas
        self.params = inspect.signature(fn).parameters
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._reported_ready = self._reported_exit = False
        self.thread = threading.Thread(target=self._target, name="onair-operator", daemon=True)

    @property
    def stoppable(self) -> bool:
        return "stop_flag" in self.params

    def _call(self, **extra) -> None:
        kwargs = {"kubeconfig": str(self.kubeconfig), **extra}
        if self.resolver is not None and "resolver" in self.params:
            kwargs["resolver"] = self.resolver
        if self.replicas is not None and "replicas_resolver" in self.params:
            kwargs["replicas_resolver"] = self.replicas
        if inspect.iscoroutinefunction(self.fn):
            asyncio.run(self.fn(**kwargs))
            return
        result = self.fn(**kwargs)
        if inspect.iscoroutine(result):
            asyncio.run(result)

    def _target(self) -> None:
        extra = {"stop_flag": self.stop}
        if "ready_flag" in self.params:
            extra["ready_flag"] = self.ready
        try:
            self._call(**extra)
        except BaseException as e:  # noqa: BLE001 - reported from the main thread
            self.error = e
            traceback.print_exc()

    def poll(self) -> None:
        """Called from the main thread's wait loop: report readiness and exits once."""
        if self.ready.is_set() and not self._reported_ready:
            self._reported_ready = True
            print("operator ready", flush=True)
        if not self.thread.is_alive() and not self._reported_exit:
            self._reported_exit = True
            what = "crashed" if self.error else "exited"
            print(f"operator {what}; cluster stays up until Ctrl-C", file=sys.stderr, flush=True)


def media_tools_missing() -> list[str]:
    """What the media agents need and this machine lacks (empty: `--media` can run)."""
    from onair.agent.ingest.nginx import MODULES_DIR, nginx_binary

    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if not Path(nginx_binary()).is_file():
        missing.append("nginx")
    elif not Path(MODULES_DIR, "ngx_rtmp_module.so").is_file():
        missing.append("libnginx-mod-rtmp")
    return missing


class _EndpointPrinter(devruntime.UrlPrinter):
    """The process runner's Livestreams, on this machine's loopback ports."""

    where = "on this machine"

    def __init__(self, runner) -> None:
        super().__init__()
        self.runner = runner

    def livestream_urls(self):
        for ns, name in self.runner.livestreams():
            try:
                eps = self.runner.endpoints(ns, name)
            except Exception:  # noqa: BLE001 - the API may be busy; next round
                continue
            if eps:
                yield ns, name, eps


def _start_media(kubeconfig: Path, media_dir: Path):
    from .podrunner import PodRunner

    runner = PodRunner(kubeconfig, media_dir)
    try:
        runner.start()
    except Exception as e:  # noqa: BLE001 - the control plane is still useful without media
        print(f"media agents not started: {e}", file=sys.stderr, flush=True)
        return None
    print(f"media agents run as local processes (process runner); volumes and logs in {media_dir}", flush=True)
    return runner


def main(argv: list[str] | None = None) -> int:
    from .cluster import ClusterError, LocalCluster

    ap = argparse.ArgumentParser(prog="onair dev", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--kubeconfig",
        default=str(build.cache_root() / "dev" / "kubeconfig"),
        help="stable path the admin kubeconfig is copied to (default: %(default)s)",
    )
    ap.add_argument(
        "--runtime",
        choices=devruntime.RUNTIMES,
        default=devruntime.AUTO,
        help="node: a real kubelet and containerd run the onair image, the chart is installed with helm "
        "(needs root, the node's Debian packages and built node binaries); process: the process "
        "runner simulates the kubelet with local processes; auto (default): node when this "
        "machine can run one at once, else process, saying why",
    )
    ap.add_argument("--no-operator", action="store_true", help="process runtime: only the cluster, CRDs and CallTypes")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the run dir (logs, etcd data) after stopping, and with the node runtime the node's logs",
    )
    ap.add_argument(
        "--media",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run every Livestream's media agents as local processes (default: on when ffmpeg and "
        "nginx with the RTMP module are installed)",
    )
    ap.add_argument(
        "--media-dir",
        default=str(build.cache_root() / "dev" / "media"),
        help="where local agents keep volumes (DVR, recordings) and logs (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    root = repo_root()
    control_plane_only = args.no_operator or args.media is False
    if args.runtime == devruntime.NODE and control_plane_only:
        print(
            "onair dev: --no-operator and --no-media are process-runtime options; the node runtime always "
            "installs the chart",
            file=sys.stderr,
        )
        return 2
    requested = devruntime.PROCESS if control_plane_only else args.runtime
    if requested == devruntime.PROCESS:
        choice = devruntime.choose(requested, [], [])
    else:
        choice = devruntime.choose(requested, devruntime.node_missing(), devruntime.node_unbuilt())
    print(f"onair dev {choice.message}", file=sys.stderr if choice.runtime is None else sys.stdout, flush=True)
    if choice.runtime is None:
        return 2
    if choice.runtime == devruntime.NODE:
        from . import devnode

        return devnode.run(args, root, _crd_files(root), Path(args.kubeconfig).expanduser().resolve())
    missing = media_tools_missing() if args.media is not False else []
    if args.media and missing:
        print(f"onair dev: --media needs {', '.join(missing)}", file=sys.stderr)
        return 2
    media = args.media if args.media is not None else not missing
    if args.media is None and missing:
        print(f"media agents off: {', '.join(missing)} not installed (control plane only)", flush=True)

    try:
        # CRDs go in before kube-controller-manager starts so its garbage collector knows
        # the custom kinds at once instead of after its 30s rediscovery.
        with LocalCluster(keep_run_dir=args.keep, crd_paths=_crd_files(root)) as cluster:
            out = Path(args.kubeconfig).expanduser().resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig, out)
            out.chmod(0o600)
            # Anything in-process that falls back to the default kubeconfig must see this cluster,
            # never whatever cluster the developer's shell points at.
            os.environ["KUBECONFIG"] = str(out)
            _apply_builtin_calltypes(cluster, root)
            print(
                f"\nkube-apiserver {versions.KUBERNETES_VERSION} at {cluster.server_url}; "
                f"component logs in {cluster.logs_dir}"
            )
            print(f"\n    export KUBECONFIG={out}\n", flush=True)

            runner = _start_media(out, Path(args.media_dir).expanduser().resolve()) if media else None
            printer = _EndpointPrinter(runner) if runner else None
            try:
                _run(cluster, args, out, runner, printer)
            finally:
                if runner is not None:
                    print("stopping media agents...", flush=True)
                    runner.stop()
            print("\nstopping cluster...", flush=True)
    except (ClusterError, build.BuildError) as e:
        print(f"onair dev: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _run(cluster, args, out: Path, runner, printer) -> None:
    """The operator (with the pod runner's resolver when media agents run) until Ctrl-C."""
    from .cli import wait_for_interrupt

    def check() -> None:
        if printer is not None:
            printer.poll()

    fn = None if args.no_operator else _load_runner()
    if fn is None:
        print("Ctrl-C to stop.", flush=True)
        wait_for_interrupt(cluster, extra_check=check)
        return
    op = _OperatorThread(
        fn, out, resolver=runner.resolver if runner else None, replicas=runner.replicas if runner else None
    )
    print("starting operator in-process; Ctrl-C to stop.", flush=True)
    if op.stoppable:
        op.thread.start()

        def check_both() -> None:
            op.poll()
            check()

        wait_for_interrupt(cluster, extra_check=check_both)
        print("\nstopping operator...", flush=True)
        op.stop.set()
        op.thread.join(timeout=20)
        if op.thread.is_alive():
            print("operator did not stop within 20s; tearing the cluster down anyway", file=sys.stderr, flush=True)
    else:
        try:
            op._call()
        except KeyboardInterrupt:
            pass
        except Exception:  # noqa: BLE001 - keep the cluster for post-mortem poking
            traceback.print_exc()
        print("operator stopped; cluster stays up until Ctrl-C", flush=True)
        wait_for_interrupt(cluster, extra_check=check)


if __name__ == "__main__":
    sys.exit(main())
