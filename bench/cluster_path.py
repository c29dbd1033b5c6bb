"""The cluster path as a user runs it, both ways, side by side: the real node and `onair dev`.

Real node: a LocalNodeCluster (kubelet, containerd, kube-proxy, CoreDNS, local-path-provisioner),
the onair image built by scripts/build-image's code and imported into the node's containerd,
`helm install charts/onair` (ingest Services of type NodePort), the operator as a pod.
Process runner: `onair dev` as a subprocess (local control plane, operator in-process, the pod
runner starting every agent as a local process), its push and playback URLs read from what it
prints, as its user reads them.

Per trial, on each: a fresh Livestream (callType development, backup ingest, one 360p rung, 2 s
segments, HLS CMAF), and once its Ready condition says every agent reports:

* publish -> status.live: ffmpeg on the host pushes RTMP to the URL the user is given (node:
  the credentials Secret's rtmpPublishUrl, the node's address and nodePort; onair dev: the
  printed push URL + the Secret's streamKey) until the Livestream's status.live is true;
* publish -> first playable: a viewer (bench/_hls_viewer.py) started before the push fetches the
  status.playback master playlist, its first variant and that variant's newest segment. On the node
  status.playback names the origin's cluster DNS name (no playback route is configured: there is
  no Ingress controller on the node), so the viewer runs in a pod of the onair image there and on
  the host for onair dev;
* recording initialisation (Gcore: 3-7 s): with main live, `spec.recording: true` is patched as a
  user starts a recording; measured until status.recording is true (a session is open) and until
  status.recordingDurationSeconds is above 0 (media written). Both are read from the status, as a
  user reads them, so each includes the wait for the operator's next agent poll;
* failover gap: main (red) and backup (blue) encoders push; a watching viewer decodes each new
  segment's frames; main's ffmpeg is SIGKILLed; gap = when the first segment with a backup (blue)
  frame was listed in the public playlist - the kill. On the node a second variant deletes the
  main ingest pod instead (`kubectl delete pod`, default grace period).

Context printed too: node start, image build (cached or not) and import, helm install -> operator
Ready; `onair dev` start -> operator ready; Livestream apply -> Ready.

Both ways run with the operator's defaults (status poll every 5 s) unless --status-poll-seconds;
the trials push at phases spread evenly over one poll interval (see push_phase).
Prints figures and ratios, asserts nothing. Everything it starts (node, onair dev, ffmpeg,
viewers) is stopped on exit, Ctrl-C and SIGTERM included.

    python3 bench/cluster_path.py [--trials 3] [--only node|dev] [--status-poll-seconds S]
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]
# `onair dev` and the agents it starts must run this tree's code.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT)] + (
    [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))

from bench._onair_dev import OnairDev  # noqa: E402 - needs the paths above

from onair.api.meta import GROUP, VERSION  # noqa: E402
VIEWER = Path(__file__).resolve().parent / "_hls_viewer.py"
SEGMENT_SECONDS = 2
RELEASE = "onair"
METRICS = ("publish -> status.live", "publish -> first playable", "spec.recording: true -> status.recording",
           "spec.recording: true -> media recorded", "main encoder killed -> backup listed",
           "main ingest pod deleted -> backup listed")


# ----------------------------------------------------------------------------- pure helpers
def summary(values: list[float]) -> Optional[tuple[float, float, float]]:
    """(min, median, max), or None without values."""
    if not values:
        return None
    return min(values), statistics.median(values), max(values)


def format_summary(values: list[float]) -> str:
    s = summary(values)
    return "n/a" if s is None else f"{s[0]:.2f} / {s[1]:.2f} / {s[2]:.2f} s (n={len(values)})"


def ratio(node: list[float], runner: list[float]) -> str:
    """Median on the node over median under the process runner."""
    a, b = summary(node), summary(runner)
    if a is None or b is None or b[1] <= 0:
        return "n/a"
    return f"{a[1] / b[1]:.2f}x"


def table(results: dict[str, dict[str, list[float]]], metrics: Iterable[str] = METRICS) -> str:
    """The side-by-side table: per metric min / median / max on the node and under the runner."""
    rows = [("metric", "real node min / median / max", "process runner min / median / max", "node/runner")]
    for m in metrics:
        node, runner = results.get("node", {}).get(m, []), results.get("dev", {}).get(m, [])
        rows.append((m, format_summary(node), format_summary(runner), ratio(node, runner)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def push_phase(trial: int, trials: int, poll_seconds: float) -> float:
    """Delay before trial `trial`'s push: the trials' pushes fall at phases spread evenly over one
    status poll interval (stratified), whatever phase the first one starts from."""
    return (trial + 0.5) / max(trials, 1) * poll_seconds


def viewer_events(text: str) -> list[dict]:
    """The JSON lines a viewer printed (anything else, e.g. a Python warning, is skipped)."""
    events = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


def segment_colors(event: dict) -> set[str]:
    """The dominant colours of a `segment` event's frames (the transcoder tests' classification)."""
    from tests.fixtures.transcoder import dominant

    return {dominant(tuple(rgb)) for rgb in event.get("rgb") or ()}


def gap_after(events: list[dict], t_cut: float, colour: str = "blue") -> Optional[float]:
    """Seconds from t_cut until the first segment listed at or after it that holds a `colour` frame."""
    for e in events:
        if e["event"] == "segment" and e["t"] >= t_cut and colour in segment_colors(e):
            return e["t"] - t_cut
    return None


def steady(events: list[dict], colour: str = "red", count: int = 2) -> bool:
    """The last `count` new segments are all and only `colour`: the show runs on main."""
    segs = [e for e in events if e["event"] == "segment"]
    return len(segs) >= count and all(segment_colors(e) == {colour} for e in segs[-count:])


# ----------------------------------------------------------------------------- processes
class Stopped(BaseException):
    """SIGTERM (e.g. from `timeout`): unwinds like Ctrl-C so every finally block runs."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Stopped(f"signal {signum}")


def wait(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll until truthy; the value. Raises TimeoutError naming `what` (the trial is dropped)."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - an API hiccup: retried until the deadline
            last = e
        time.sleep(interval)
    raise TimeoutError(f"no {what} within {timeout:.0f}s" + (f" (last error: {last!r})" if last else ""))


class Procs:
    """Host processes the bench started (encoders, viewers), each in a session of its own."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    @staticmethod
    def kill(p: subprocess.Popen) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            p.wait(10)

    def close(self) -> None:
        for p in self.procs:
            self.kill(p)
        self.procs.clear()


def encoder(url: str, colour: str) -> list[str]:
    """A small live source of one colour, as an encoder app pushes it (1 s GOP)."""
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"color=c={colour}:size=640x360:rate=15",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "15", "-keyint_min", "15", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url]


class HostViewer:
    def __init__(self, procs: Procs, mode: str, url: str) -> None:
        self.out = tempfile.TemporaryFile(mode="w+")
        self.proc = procs.start([sys.executable, str(VIEWER), mode, url], stdout=self.out, stderr=subprocess.STDOUT)

    def events(self) -> list[dict]:
        self.out.seek(0)
        return viewer_events(self.out.read())

    def stop(self) -> None:
        Procs.kill(self.proc)
        self.out.close()


class PodViewer:
    """The viewer as a pod of the onair image in the Livestream's namespace: the playback URL is a
    cluster DNS name. Its output is read from the pod's log."""

    def __init__(self, core, namespace: str, image: str, mode: str, url: str, name: str) -> None:
        from tests.fixtures.kube import restricted_pod

        self.core, self.ns, self.name = core, namespace, name
        body = restricted_pod(name, image, ["python3", "-c", VIEWER.read_text(), mode, url])
        body["spec"]["restartPolicy"] = "Never"
        core.create_namespaced_pod(namespace, body)

    def events(self) -> list[dict]:
        try:
            return viewer_events(self.core.read_namespaced_pod_log(self.name, self.ns))
        except Exception:  # noqa: BLE001 - not started yet
            return []

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.core.delete_namespaced_pod(self.name, self.ns, grace_period_seconds=0)


def event(viewer, kind: str) -> Optional[dict]:
    return next((e for e in viewer.events() if e["event"] == kind), None)


# ----------------------------------------------------------------------------- one way of running
@dataclass
class Way:
    """What differs between the node and onair dev: where URLs come from, where viewers run."""

    label: str
    api: object
    procs: Procs
    results: dict[str, list[float]] = field(default_factory=dict)
    context: dict[str, list[float]] = field(default_factory=dict)
    poll_seconds: float = 5.0  # the operator's status poll interval
    trials: int = 1

    def note(self, key: str, value: float) -> None:
        self.context.setdefault(key, []).append(value)

    def record(self, metric: str, value: float) -> None:
        self.results.setdefault(metric, []).append(value)
        print(f"  [{self.label}] {metric}: {value:.2f} s", flush=True)

    # -- implemented by the two ways
    namespace = "bench"

    def push_urls(self, name: str) -> Optional[tuple[str, str]]:
        raise NotImplementedError

    def playback(self, name: str) -> Optional[str]:
        raise NotImplementedError

    def viewer(self, mode: str, url: str, name: str):
        raise NotImplementedError

    def delete_main_ingest_pod(self, name: str, probe: bool = False) -> bool:
        """Delete the main ingest pod (probe: only say whether there is one to delete)."""
        return False

    # -- shared
    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "livestreams", name).get(
            "status") or {}

    def secret(self, name: str, key: str) -> str:
        s = self.core.read_namespaced_secret(f"{name}-credentials", self.namespace)
        return base64.b64decode(s.data[key]).decode()

    def ready(self, name: str) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in self.status(name).get("conditions") or ())

    def trial(self, i: int) -> None:
        name = f"bench-{i}"
        t0 = time.monotonic()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "livestreams", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Livestream", "metadata": {"name": name},
            "spec": {"callType": "development", "settingsOverride": {
                "ingest": {"protocols": ["rtmp"], "backup": True},
                "broadcasting": {"hls": {"qualityTracks": ["360p"]}, "segmentDurationSeconds": SEGMENT_SECONDS,
                                 "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False}},
                "dvr": {"durationSeconds": 60},
                "recording": {"mode": "available", "type": "origin", "storage": {"size": "1Gi"}},
                "screenshots": {"enabled": False},
            }}})
        viewers, main = [], None
        try:
            wait(lambda: self.ready(name), 240, f"{name} Ready (every agent reporting)", interval=0.5)
            main_url, backup_url = wait(lambda: self.push_urls(name), 60, f"{name} push URLs", interval=0.5)
            master = wait(lambda: self.playback(name), 60, f"{name} playback URL", interval=0.5)
            self.note("Livestream apply -> Ready", time.monotonic() - t0)

            first = self.viewer("first", master, f"{name}-first")
            viewers.append(first)
            wait(lambda: event(first, "polling"), 120, "the viewer polling", interval=0.3)
            # status.live waits for the operator's next poll of the ingest. Ready turned True at a
            # poll, so pushing right away would hit the same phase of the poll every trial (and a
            # different one on each way: the node's viewer pod takes longer to start); the trials
            # push at phases spread evenly over one interval instead, as users push at any moment.
            time.sleep(push_phase(i, self.trials, self.poll_seconds))
            t_push = time.time()
            main = self.procs.start(encoder(main_url, "red"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(lambda: self.status(name).get("live") is True, 90, "status.live after the push")
            self.record("publish -> status.live", time.time() - t_push)
            playable = wait(lambda: event(first, "playable"), 90, "a playable segment", interval=0.2)
            self.record("publish -> first playable", playable["t"] - t_push)
            first.stop()

            t_record = time.time()
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "livestreams", name,
                                                       {"spec": {"recording": True}})
            wait(lambda: self.status(name).get("recording") is True, 60, "status.recording after spec.recording")
            self.record("spec.recording: true -> status.recording", time.time() - t_record)
            wait(lambda: (self.status(name).get("recordingDurationSeconds") or 0) > 0, 60, "recorded media",
                 interval=0.2)
            self.record("spec.recording: true -> media recorded", time.time() - t_record)

            self.procs.start(encoder(backup_url, "blue"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(lambda: (s := self.status(name)).get("backupLive") is True and s.get("activeSource") == "main", 60,
                 "backupLive with main on air", interval=0.3)
            main = self._failover(name, master, main, "main encoder killed -> backup listed", viewers,
                                  lambda: Procs.kill(main))
            if self.delete_main_ingest_pod(name, probe=True):
                main = self.procs.start(encoder(main_url, "red"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                wait(lambda: (s := self.status(name)).get("live") is True and s.get("activeSource") == "main", 90,
                     "main back on air", interval=0.3)
                self._failover(name, master, main, "main ingest pod deleted -> backup listed", viewers,
                               lambda: self.delete_main_ingest_pod(name))
        finally:
            for v in viewers:
                v.stop()
            self.procs.close()
            t_del = time.monotonic()
            with contextlib.suppress(Exception):
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "livestreams", name)
            with contextlib.suppress(TimeoutError):
                wait(lambda: self.gone(name), 120, f"{name} and its pods gone", interval=0.5)
                self.note("Livestream delete -> gone", time.monotonic() - t_del)

    def _failover(self, name: str, master: str, main, metric: str, viewers: list, cut: Callable[[], object]):
        watcher = self.viewer("watch", master, f"{name}-watch-{len(viewers)}")
        viewers.append(watcher)
        # Steady state on main: the last two new segments are red (not blue left from a failover).
        wait(lambda: steady(watcher.events()), 90, "two main (red) segments listed", interval=0.3)
        t_cut = time.time()
        cut()
        gap = wait(lambda: gap_after(watcher.events(), t_cut), 60, "a backup (blue) segment listed", interval=0.3)
        self.record(metric, gap)
        watcher.stop()
        return main

    def gone(self, name: str) -> bool:
        return not any(i["metadata"]["name"] == name for i in self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "livestreams")["items"])


class DevWay(Way):
    """`onair dev`: its printed URLs; viewers on the host."""

    def __init__(self, api, procs: Procs, dev: OnairDev) -> None:
        super().__init__("onair dev", api, procs)
        self.dev = dev

    def _endpoints(self, name: str) -> dict[str, dict[str, str]]:
        return self.dev.endpoints(self.namespace, name)

    def push_urls(self, name: str) -> Optional[tuple[str, str]]:
        ingest = self._endpoints(name)["ingest"]
        if "rtmp" not in ingest or "backupRtmp" not in ingest:
            return None
        key = self.secret(name, "streamKey")
        return f"{ingest['rtmp']}/{key}", f"{ingest['backupRtmp']}/{key}"

    def playback(self, name: str) -> Optional[str]:
        return self._endpoints(name)["playback"].get("hlsCmaf")

    def viewer(self, mode: str, url: str, name: str):
        return HostViewer(self.procs, mode, url)



class NodeWay(Way):
    """The real node: the Secret's outside URLs; viewers as pods (playback is a cluster DNS name)."""

    def __init__(self, api, procs: Procs, node_ip: str, image: str, namespace: str) -> None:
        super().__init__("real node", api, procs)
        self.node_ip, self.image, self.namespace = node_ip, image, namespace

    def push_urls(self, name: str) -> Optional[tuple[str, str]]:
        main, backup = self.secret(name, "rtmpPublishUrl"), self.secret(name, "backupRtmpPublishUrl")
        return (main, backup) if self.node_ip in main and self.node_ip in backup else None

    def playback(self, name: str) -> Optional[str]:
        return (self.status(name).get("playback") or {}).get("hlsCmaf")

    def viewer(self, mode: str, url: str, name: str):
        return PodViewer(self.core, self.namespace, self.image, mode, url, name)

    def delete_main_ingest_pod(self, name: str, probe: bool = False) -> bool:
        pods = [p for p in self.core.list_namespaced_pod(self.namespace,
                                                         label_selector=f"app.kubernetes.io/instance={name}").items
                if p.metadata.name.startswith(f"{name}-ingest-")
                and not p.metadata.name.startswith(f"{name}-ingest-backup-") and not p.metadata.deletion_timestamp]
        if probe or not pods:
            return bool(pods)
        self.core.delete_namespaced_pod(pods[0].metadata.name, self.namespace)
        return True

    def gone(self, name: str) -> bool:
        return super().gone(name) and not self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/instance={name}").items


def poll_interval(status_poll: Optional[float]) -> float:
    from onair.api.operator_config import OperatorConfig

    return status_poll if status_poll is not None else OperatorConfig.model_fields[
        "status_poll_interval_seconds"].default


def run_trials(way: Way, trials: int) -> None:
    way.trials = trials
    for i in range(trials):
        print(f"[{way.label}] trial {i + 1}/{trials} ({load()})", flush=True)
        try:
            way.trial(i)
        except (Exception, _pytest_failed()) as e:  # noqa: BLE001 - a failed trial is reported, not fatal
            print(f"[{way.label}] trial {i + 1} dropped: {str(e)[:3000]}", flush=True)


def _pytest_failed() -> type:
    import pytest

    return pytest.fail.Exception


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- onair dev
def run_dev(trials: int, status_poll: Optional[float], results: dict, context: dict) -> None:
    from kubernetes import client

    procs = Procs()
    # The process runner: as root `onair dev` would pick the real node, which is the other column.
    with OnairDev(runtime="process", status_poll=status_poll) as dev:
        try:
            context.setdefault("onair dev start -> operator ready", []).append(dev.startup_seconds)
            client.CoreV1Api(dev.api).create_namespace({"metadata": {"name": "bench"}})
            way = DevWay(dev.api, procs, dev)
            way.poll_seconds = poll_interval(status_poll)
            run_trials(way, trials)
            results["dev"] = way.results
            for k, v in way.context.items():
                context.setdefault(f"{k} (onair dev)", []).extend(v)
        finally:
            procs.close()


# ----------------------------------------------------------------------------- the real node
def run_node(trials: int, status_poll: Optional[float], results: dict, context: dict) -> None:
    from kubernetes.config import new_client_from_config

    from onair.localcluster import apply
    from onair.localcluster.image import build_image
    from onair.localcluster.node import LocalNodeCluster
    from tests.fixtures.kube import ROLES, SMALL, helm, restricted_namespace, wait_pods_ready

    def took(key: str, t0: float) -> None:
        context.setdefault(key, []).append(time.monotonic() - t0)
        print(f"  [real node] {key}: {time.monotonic() - t0:.1f} s", flush=True)

    t0 = time.monotonic()
    image = build_image()
    took("image build_image() (0 when cached)", t0)
    print(f"  [real node] image {image.name}: {image.size_bytes / 2**20:.0f} MiB unpacked, "
          f"{image.archive_bytes / 2**20:.0f} MiB archive, its build took {image.build_seconds:.1f} s", flush=True)
    procs = Procs()
    kc = LocalNodeCluster(crd_paths=apply.yaml_files(ROOT / "crds"))
    api = None
    try:
        t0 = time.monotonic()
        kc.start()
        took("node start (control plane + node Ready with DNS and storage)", t0)
        api = new_client_from_config(str(kc.cluster.kubeconfig_path))
        from kubernetes import client

        core = client.CoreV1Api(api)
        t0 = time.monotonic()
        kc.node.ctr("images", "import", str(image.archive), timeout=600)
        took("image import into the node's containerd", t0)
        op_ns = restricted_namespace(core, "onair-system")
        ls_ns = restricted_namespace(core, "bench")
        values = ["--set", f"image.repository={image.repository}", "--set", f"image.tag={image.tag}",
                  "--set", "image.pullPolicy=Never", "--set", "livestreams.ingest.serviceType=NodePort"]
        if status_poll is not None:
            values += ["--set", f"livestreams.statusPollIntervalSeconds={status_poll:g}"]
        for role in ROLES:
            for part, quantities in SMALL.items():
                for k, v in quantities.items():
                    values += ["--set-string", f"livestreams.resources.{role}.{part}.{k}={v}"]
        t0 = time.monotonic()
        helm("install", RELEASE, str(ROOT / "charts/onair"), "--namespace", op_ns, *values,
             kubeconfig=str(kc.cluster.kubeconfig_path))
        wait_pods_ready(core, op_ns, "app.kubernetes.io/component=operator", 1, 180, "operator")
        took("helm install -> operator Ready", t0)
        way = NodeWay(api, procs, kc.node.node_ip, image.name, ls_ns)
        way.poll_seconds = poll_interval(status_poll)
        run_trials(way, trials)
        results["node"] = way.results
        for k, v in way.context.items():
            context.setdefault(f"{k} (real node)", []).extend(v)
    finally:
        procs.close()
        if api is not None:
            api.close()
        t0 = time.monotonic()
        left = kc.stop()
        print(f"  [real node] stopped in {time.monotonic() - t0:.1f} s"
              + (f"; LEFT BEHIND: {left}" if left else ""), flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--only", choices=("node", "dev"), help="run one way only (no ratio)")
    ap.add_argument("--status-poll-seconds", type=float, default=None,
                    help="operator status poll interval for both ways (default: the operator's, 5 s)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    results: dict[str, dict[str, list[float]]] = {}
    context: dict[str, list[float]] = {}
    code = 0
    print(f"bench/cluster_path.py --trials {args.trials}: {os.cpu_count()} cores, {load()}", flush=True)
    try:
        if args.only in (None, "dev"):
            print("=== process runner: onair dev", flush=True)
            run_dev(args.trials, args.status_poll_seconds, results, context)
        if args.only in (None, "node"):
            print(f"=== real node ({load()})", flush=True)
            run_node(args.trials, args.status_poll_seconds, results, context)
    except (KeyboardInterrupt, Stopped) as e:
        print(f"interrupted ({e!r}); everything started was stopped", flush=True)
        code = 130
    finally:
        print(f"\n--- context ({load()})")
        for k, v in context.items():
            print(f"{k}: {format_summary(v)}")
        print(f"\n--- side by side ({SEGMENT_SECONDS} s segments, one 360p rung, min / median / max)")
        print(table(results), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
