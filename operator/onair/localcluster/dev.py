"""`onair dev`: local control plane + CRDs + built-in CallTypes + the operator, in one process.

The operator runs in-process (not as a Pod: there is no kubelet) against the local cluster's
admin kubeconfig, so a code change is one Ctrl-C and re-run away. The cluster itself stays
up when the operator is missing or crashes, so the API can still be poked at with kubectl.
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

from . import build, versions


def repo_root() -> Path:
    env = os.environ.get("ONAIR_REPO")
    if env:
        return Path(env).resolve()
    # Editable install: operator/onair/localcluster/dev.py -> repo root three levels above onair/.
    here = Path(__file__).resolve().parents[3]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


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
    api = apply.api_client(cluster.kubeconfig_path)
    try:
        applied = apply.apply_files(api, [builtin])
        print(f"applied {len(applied)} built-in CallType(s) from {builtin}")
    except Exception as e:  # noqa: BLE001 - a bad manifest must not take the dev cluster down
        print(f"could not apply {builtin}: {e}", file=sys.stderr)
    finally:
        api.close()


def _load_runner():
    try:
        from onair.controller import runner  # noqa: PLC0415 - optional, written separately
    except ModuleNotFoundError as e:
        if e.name in ("onair.controller.runner", "onair.controller"):
            print("operator not started: onair.controller.runner does not exist yet; "
                  "the cluster stays up for kubectl use", file=sys.stderr)
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

    def __init__(self, fn, kubeconfig: Path):
        self.fn, self.kubeconfig = fn, kubeconfig
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


def main(argv: list[str] | None = None) -> int:
    from .cli import wait_for_interrupt
    from .cluster import ClusterError, LocalCluster

    ap = argparse.ArgumentParser(prog="onair dev", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", default=str(build.cache_root() / "dev" / "kubeconfig"),
                    help="stable path the admin kubeconfig is copied to (default: %(default)s)")
    ap.add_argument("--no-operator", action="store_true", help="only the cluster, CRDs and CallTypes")
    ap.add_argument("--keep", action="store_true", help="keep the run dir (logs, etcd data) after stopping")
    args = ap.parse_args(argv)
    root = repo_root()

    try:
        # CRDs go in before kube-controller-manager starts so its garbage collector knows
        # the custom kinds at once instead of after its 30s rediscovery.
        with LocalCluster(keep_run_dir=args.keep, crd_paths=_crd_files(root)) as cluster:
            out = Path(args.kubeconfig).expanduser().resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig_path, out)
            out.chmod(0o600)
            # Anything in-process that falls back to the default kubeconfig must see this cluster,
            # never whatever cluster the developer's shell points at.
            os.environ["KUBECONFIG"] = str(out)
            _apply_builtin_calltypes(cluster, root)
            print(f"\nkube-apiserver {versions.KUBERNETES_VERSION} at {cluster.server_url}; "
                  f"component logs in {cluster.run_dir / 'logs'}")
            print(f"\n    export KUBECONFIG={out}\n", flush=True)

            fn = None if args.no_operator else _load_runner()
            if fn is None:
                print("Ctrl-C to stop.", flush=True)
                wait_for_interrupt(cluster)
            else:
                op = _OperatorThread(fn, out)
                print("starting operator in-process; Ctrl-C to stop.", flush=True)
                if op.stoppable:
                    op.thread.start()
                    wait_for_interrupt(cluster, extra_check=op.poll)
                    print("\nstopping operator...", flush=True)
                    op.stop.set()
                    op.thread.join(timeout=20)
                    if op.thread.is_alive():
                        print("operator did not stop within 20s; tearing the cluster down anyway",
                              file=sys.stderr, flush=True)
                else:
                    try:
                        op._call()
                    except KeyboardInterrupt:
                        pass
                    except Exception:  # noqa: BLE001 - keep the cluster for post-mortem poking
                        traceback.print_exc()
                    print("operator stopped; cluster stays up until Ctrl-C", flush=True)
                    wait_for_interrupt(cluster)
            print("\nstopping cluster...", flush=True)
    except (ClusterError, build.BuildError) as e:
        print(f"onair dev: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
