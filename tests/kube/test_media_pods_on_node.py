"""What happens to a running show when its pods and its install change under it, on the real node.

One helm install and one Livestream with a backup ingest, pushed to by two encoders on the host
(through the ingest Services' NodePorts, reconnecting as OBS does), watched by a viewer pod
through the origin Service, and recorded onto its PVC. The tests run in file order on that one
show, as an operator's day goes:

1. backstage -> live -> backstage -> live as viewers see it (the public gets 403 in backstage and
   a growing playlist when live; a member's playback token watches the backstage preview);
   meanwhile the operator's log (chart default logLevel info) stays free of per-event chatter;
2. the main ingest pod deleted: the transcoder fails over to the backup, status and Events say
   so, viewers keep getting segments, and it returns to main once main is back; the URLs given
   to encoders outside keep naming the node throughout;
3. the transcoder pod deleted: its Deployment brings it back and the playlist goes on;
4. the recorder pod deleted mid-recording: the session is finalized, a new one starts; the
   recorder killed (SIGKILL): the restarted one finalizes the session as recovered;
5. `helm upgrade` of the ingest's settings rolls the two ingest slots one after the other (the
   backup first): encoders always have one, the playlist never stands still; `helm upgrade` to a
   new image tag rolls the operator and every media pod, the ingest slots the same way; no
   recording lost;
6. live -> ended as a viewer sees it (the playlist ends and stays playable, pushes refused);
7. `helm uninstall` leaves the CRDs, the Livestream, its pods and its recordings PVC;
8. the second install path, `manifests/` applied server-side (the Python client's server-side
   apply, as `kubectl apply --server-side` does) with the local image, adopts the show and runs a
   new Livestream from a push;
9. both Livestreams deleted, one mid-recording: their recordings PVCs stay Bound with every part
   and a finalized session on them.

Kept small for 2 cores: 360p source, one 360p rung, 1 s segments, HLS CMAF only. Timings of each
step are printed at the end (run with -s).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from onair.api.conditions import INGEST_ROLLOUT_CONTINUED, INGEST_ROLLOUT_NOT_BRIDGED, INGEST_ROLLOUT_STAGGERED
from tests.fixtures.cluster import wait_for
from tests.fixtures.kube import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    SMALL,
    ffmpeg_push,
    helm,
    livestream_status,
    patch_spec,
    pod_logs,
    pod_problems,
    restricted_namespace,
    restricted_pod,
    wait_pods_ready,
)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "onair"
GROUP, VERSION, PLURAL = "onair.dev", "v1alpha1", "livestreams"
MEDIA_KEYS = ("ingest", "ingest-backup", "transcoder", "origin", "recorder")
OPERATOR = "app.kubernetes.io/component=operator"
SHOW = "app.kubernetes.io/instance=show"

# A viewer: the player page, the master playlist, its first media playlist and the newest segment,
# as a browser fetches them, with a playback token when given one; prints what it got as JSON
# (HTTP status 0: no answer).
VIEW = r"""
import json, sys, urllib.request, urllib.parse, urllib.error
def get(u):
    try:
        with urllib.request.urlopen(u, timeout=5) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()[:300]
    except Exception as e: return 0, repr(e).encode()
url, player = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    url, player = (u + ("&" if "?" in u else "?") + "token=" + sys.argv[3] for u in (url, player))
out = {}
out["player"], _ = get(player)
out["master"], body = get(url)
if out["master"] == 200:
    uris = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
    media = urllib.parse.urljoin(url, uris[0])
    out["media"], body = get(media)
    if out["media"] == 200:
        lines = body.decode().splitlines()
        out["segments"] = [l for l in lines if l and not l.startswith("#")]
        out["sequence"] = next((int(l.split(":")[1]) for l in lines if l.startswith("#EXT-X-MEDIA-SEQUENCE:")), 0)
        out["endlist"] = "#EXT-X-ENDLIST" in lines
        out["discontinuities"] = lines.count("#EXT-X-DISCONTINUITY")
        # [sequence, period (discontinuity sequence), program date time, duration] per segment:
        # the same segment gets the same entry from every playlist that lists it.
        seq, period, pdt, dur, timeline = out["sequence"], 0, None, None, []
        for l in lines:
            if l.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"): period = int(l.split(":")[1])
            elif l == "#EXT-X-DISCONTINUITY": period += 1
            elif l.startswith("#EXT-X-PROGRAM-DATE-TIME:"): pdt = l.split(":", 1)[1]
            elif l.startswith("#EXTINF:"): dur = float(l.split(":")[1].split(",")[0])
            elif l and not l.startswith("#"):
                timeline.append([seq, period, pdt, dur]); seq, pdt, dur = seq + 1, None, None
        out["timeline"] = timeline
        out["target"] = next((int(l.split(":")[1]) for l in lines if l.startswith("#EXT-X-TARGETDURATION:")), 0)
        if out["segments"]:
            out["newest"], seg = get(urllib.parse.urljoin(media, out["segments"][-1]))
            out["newest_bytes"] = len(seg)
else:
    out["body"] = body.decode(errors="replace")
print(json.dumps(out))
"""

# Lists a recordings volume: {file: bytes}.
LIST_FILES = "import json, os, sys; d = sys.argv[1]; print(json.dumps({f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)}))"
# Per recordings volume: [{file: bytes}, {sidecar: its document}].
READ_VOLUMES = r"""
import json, os, sys
out = {}
for d in sys.argv[1:]:
    names = os.listdir(d)
    out[d] = [{f: os.path.getsize(os.path.join(d, f)) for f in names},
              {f: json.load(open(os.path.join(d, f))) for f in names if f.endswith(".json")}]
print(json.dumps(out))
"""


class Encoder:
    """An encoder on the host pushing RTMP to `url` and reconnecting a second after every drop,
    as OBS does with automatic reconnection. A write that blocks for 3 s counts as a drop (a
    deleted pod's address stops answering rather than closing the connection)."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.starts = 0
        self.last_errors: list[str] = []
        self._stop = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._thread = threading.Thread(target=self._run, name=f"encoder-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        argv = ffmpeg_push("flv", self.url)
        # Output options go before `-f flv URL`.
        argv = argv[:-3] + ["-rw_timeout", "3000000"] + argv[-3:]
        while not self._stop.is_set():
            self.starts += 1
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            _, err = self._proc.communicate()
            self.last_errors = (self.last_errors + [(err or "").strip()[-300:]])[-3:]
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc and proc.poll() is None:
            proc.terminate()
        self._thread.join(15)
        # The loop may have started one more run just as it was told to stop.
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


@dataclass
class Show:
    node: Any
    image: Any
    core: Any
    custom: Any
    apps: Any
    op_ns: str
    ls_ns: str
    helm_values: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    encoders: dict[str, Encoder] = field(default_factory=dict)
    installed: bool = False
    manifest_docs: list[dict] = field(default_factory=list)
    finished_recordings: list[dict] = field(default_factory=list)

    def status(self, name: str = "show") -> dict:
        return livestream_status(self.custom, self.ls_ns, name)

    def view(self, name: str = "show", token: Optional[str] = None) -> dict:
        playback = self.status(name).get("playback") or {}
        assert playback.get("hlsCmaf") and playback.get("player"), playback
        argv = ["python3", "-c", VIEW, playback["hlsCmaf"], playback["player"], *([token] if token else [])]
        return json.loads(self.node.exec(self.ls_ns, "viewer", argv, timeout=30))

    def produced(self, view: dict) -> int:
        """How many segments the stream has published up to the newest in the playlist."""
        return view.get("sequence", 0) + len(view.get("segments") or ())

    def events(self, reason: str, name: str = "show") -> int:
        return sum(
            e.count or 1
            for e in self.core.list_namespaced_event(self.ls_ns).items
            if e.involved_object.kind == "Livestream" and e.involved_object.name == name and e.reason == reason
        )

    def media_pods(self, key: Optional[str] = None) -> list:
        selector = SHOW + (f",app.kubernetes.io/component={key}" if key else "")
        return [
            p
            for p in self.core.list_namespaced_pod(self.ls_ns, label_selector=selector).items
            if not p.metadata.deletion_timestamp
        ]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=interval, what=what)
        except BaseException:
            self.diagnose()
            raise

    def diagnose(self) -> None:
        print(
            pod_problems(self.core, self.ls_ns),
            pod_problems(self.core, self.op_ns),
            pod_logs(self.core, self.ls_ns, SHOW),
            pod_logs(self.core, self.op_ns, OPERATOR),
            json.dumps({k: v for k, v in self.status().items() if k != "effectiveSettings"}, indent=1, default=str),
            {n: (e.starts, e.last_errors) for n, e in self.encoders.items()},
            sep="\n",
        )

    def timed(self, what: str, since: float) -> None:
        self.timings[what] = time.monotonic() - since


class StatusWatch:
    """Polls the show's status in the background while something is done to it: what a dashboard
    polling `kubectl get livestream -o json` every half second would have seen."""

    KEYS = ("live", "backupLive", "activeSource", "broadcasting", "recording", "ingest", "conditions")

    def __init__(self, show: "Show") -> None:
        self.show = show
        self.seen: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = self.show.status()
                self.seen.append((time.monotonic(), {k: s.get(k) for k in self.KEYS}))
            except Exception:  # noqa: BLE001 - a missed poll
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> "StatusWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def longest(self, predicate: Callable[[dict], bool]) -> float:
        """The longest stretch of polls for which `predicate` held."""
        longest, since = 0.0, None
        for t, s in self.seen:
            if predicate(s):
                since = t if since is None else since
                longest = max(longest, t - since)
            else:
                since = None
        return longest


class PlaylistWatch:
    """The viewer pod reading the origin's media playlist over and over in the background: every
    segment any read listed, by media sequence number, with its period (discontinuity sequence),
    program date time and duration. Reads that fail (the origin pod rolling) are skipped; the DVR
    window lists the segments made meanwhile at the next read."""

    def __init__(self, show: "Show") -> None:
        self.show = show
        self.segments: dict[int, tuple[int, float, float]] = {}
        self.target = 0
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                view = self.show.view()
            except Exception:  # noqa: BLE001 - a failed read (origin rolling, exec refused)
                self._stop.wait(1.0)
                continue
            if view.get("media") == 200:
                self.reads += 1
                self.target = view.get("target") or self.target
                for seq, period, pdt, dur in view.get("timeline") or ():
                    if pdt and dur:
                        self.segments[seq] = (period, _parse(pdt), dur)
            self._stop.wait(1.0)

    def __enter__(self) -> "PlaylistWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(40)

    def stalls(self, limit: float) -> list[str]:
        """Consecutive segments of one period (no discontinuity between them: a new run of the
        transcoder's encoder starts one, and so do segments the origin missed while it restarted)
        between which more than ``limit`` seconds of media time are missing: the program date
        times, which the transcoder moves forward over an outage, say how long the playlist stood
        still."""
        out = []
        for seq in sorted(self.segments):
            if seq + 1 not in self.segments:
                continue
            (period, pdt, duration), (next_period, next_pdt, _) = self.segments[seq], self.segments[seq + 1]
            missing = next_pdt - (pdt + duration)
            if next_period == period and missing > limit:
                out.append(f"segments {seq}->{seq + 1}: {missing:.1f}s missing")
        return out

    def runs(self, milestones: list[tuple[str, float]]) -> str:
        """Per period: its segments and their program date times relative to the first
        milestone (to read next to the ingest pods' milestones, also relative to it)."""
        zero = milestones[0][1] if milestones else 0.0
        out = []
        for period in sorted({p for p, _, _ in self.segments.values()}):
            seqs = sorted(s for s, (p, _, _) in self.segments.items() if p == period)
            pdts = [self.segments[s][1] - zero for s in seqs]
            out.append(f"period {period}: segments {seqs[0]}-{seqs[-1]} at {min(pdts):+.1f}..{max(pdts):+.1f}s")
        marks = ", ".join(f"{m} {t - zero:+.1f}s" for m, t in milestones)
        return "; ".join(out) + f" (milestones: {marks})"

    def run_around(self, start: float, end: float) -> Optional[int]:
        """The period with segments both before ``start`` and after ``end`` (wall-clock instants, as
        the program date times are), if one period spans that stretch."""
        for period in {p for p, _, _ in self.segments.values()}:
            pdts = [pdt for p, pdt, _ in self.segments.values() if p == period]
            if min(pdts) <= start and max(pdts) >= end:
                return period
        return None


INGEST_KEYS = ("ingest", "ingest-backup")


def _ingest_slots_down_together(events: list) -> list[str]:
    """The EndpointSlice events after which neither ingest Service had a ready endpoint: the moments
    no encoder could push anywhere and the transcoder had no source at all."""
    slices: dict[str, tuple[str, frozenset]] = {}
    out = []
    for kind, type_, obj, _at in events:
        if kind != "endpointslices":
            continue
        service = obj.metadata.labels.get("kubernetes.io/service-name")
        if type_ == "DELETED":
            slices.pop(obj.metadata.name, None)
        else:
            slices[obj.metadata.name] = (
                service,
                frozenset(
                    e.target_ref.name
                    for e in obj.endpoints or ()
                    if e.target_ref and e.conditions and e.conditions.ready
                ),
            )
        ready: dict[str, set] = {}
        for svc, pods in slices.values():
            ready.setdefault(svc, set()).update(pods)
        if len(ready) == 2 and not any(ready.values()):
            out.append(f"after {type_} {obj.metadata.name}: {dict(slices)}")
    return out


def _ingest_milestones(events: list, old_pods: set[str]) -> list[tuple[str, float]]:
    """What the pod watch saw of the ingest pods, each milestone once and in the order it came:
    '<key> new pod created', '<key> new pod Ready', '<key> old pod deleting' (key: ingest or
    ingest-backup; old: one of ``old_pods``, the pods before the upgrade), with the host's clock
    at receipt."""
    out: list[tuple[str, float]] = []
    for kind, _type, pod, at in events:
        if kind != "pods":
            continue
        key = (pod.metadata.labels or {}).get("app.kubernetes.io/component")
        if key not in INGEST_KEYS:
            continue
        new = pod.metadata.name not in old_pods
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
        deleting = pod.metadata.deletion_timestamp is not None
        seen = {m for m, _ in out}
        for milestone, holds in (
            (f"{key} new pod created", new),
            (f"{key} new pod Ready", new and ready and not deleting),
            (f"{key} old pod deleting", not new and deleting),
        ):
            if holds and milestone not in seen:
                out.append((milestone, at))
    return out


def _parse(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _recording_coverage(recordings: list[dict]) -> str:
    """Per session its wall-clock span and recorded seconds, and the gaps between sessions."""
    lines, previous_end = [], None
    for r in recordings:
        start, end = _parse(r["startedAt"]), _parse(r["endedAt"])
        gap = f", {start - previous_end:.1f}s after the previous one" if previous_end else ""
        lines.append(
            f"{r['session']}: {len(r['parts'])} part(s), {r['durationSeconds']:.1f}s recorded over "
            f"{end - start:.1f}s ({r['endReason']}){gap}"
        )
        previous_end = end
    return "\n    ".join(lines)


def _livestream(name: str, override: dict, **spec: Any) -> dict:
    base = {
        "ingest": {"protocols": ["rtmp"]},
        "broadcasting": {
            "hls": {"qualityTracks": ["360p"]},
            "segmentDurationSeconds": 1,
            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
        },
        "dvr": {"durationSeconds": 60},
        "recording": {"mode": "available", "storage": {"size": "1Gi"}},
        "screenshots": {"enabled": False},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Livestream",
        "metadata": {"name": name},
        "spec": {"callType": "development", "settingsOverride": {**base, **override}, **spec},
    }


def _publish_urls(show: Show, name: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The publish URLs the Livestream's Secret gives encoders outside the cluster, once they name
    the node's address."""
    secret_name = show.wait(lambda: show.status(name).get("credentialsSecret"), 30, "status.credentialsSecret")

    def outside():
        data = show.core.read_namespaced_secret(secret_name, show.ls_ns).data
        urls = {k: base64.b64decode(data[k]).decode() for k in keys if k in data}
        return urls if len(urls) == len(keys) and all(show.node.node.node_ip in u for u in urls.values()) else None

    return show.wait(outside, 30, f"{keys} naming the node's address")


def _sessions(recordings: list[dict]) -> dict[str, dict]:
    return {r["session"]: r for r in recordings or ()}


def _resources_args() -> list[str]:
    out = []
    for role in ("ingest", "transcoder", "origin", "recorder"):
        for part, quantities in SMALL.items():
            for k, v in quantities.items():
                out += ["--set-string", f"livestreams.resources.{role}.{part}.{k}={v}"]
    return out


def _delete_livestreams(show: Show) -> None:
    items = show.custom.list_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL)["items"]
    for ls in items:
        show.custom.delete_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL, ls["metadata"]["name"])
    try:
        wait_for(
            lambda: not show.custom.list_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL)["items"],
            timeout=60,
            what="Livestreams deleted",
        )
    except BaseException:
        # No operator left to release kopf's finalizer: drop it as the chart README says.
        for ls in show.custom.list_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL)["items"]:
            show.custom.patch_namespaced_custom_object(
                GROUP, VERSION, show.ls_ns, PLURAL, ls["metadata"]["name"], {"metadata": {"finalizers": None}}
            )


@pytest.fixture(scope="module")
def show(node_cluster, onair_image):
    from kubernetes import client

    core = node_cluster.core()
    suffix = str(int(time.time()) % 100000)
    s = Show(
        node=node_cluster,
        image=onair_image,
        core=core,
        custom=client.CustomObjectsApi(node_cluster.api),
        apps=client.AppsV1Api(node_cluster.api),
        op_ns=f"onair-system-{suffix}",
        ls_ns=f"shows-{suffix}",
        helm_values=[
            "--set",
            f"image.repository={onair_image.repository}",
            "--set",
            f"image.tag={onair_image.tag}",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "livestreams.statusPollIntervalSeconds=1",
            "--set",
            "livestreams.ingest.serviceType=NodePort",
            *_resources_args(),
        ],
    )
    restricted_namespace(core, s.op_ns)
    restricted_namespace(core, s.ls_ns)
    try:
        t0 = time.monotonic()
        node_cluster.node.ctr("images", "import", str(onair_image.archive), timeout=300)
        s.timed("image import", t0)
        t0 = time.monotonic()
        helm(
            "install",
            RELEASE,
            str(ROOT / "charts/onair"),
            "--namespace",
            s.op_ns,
            *s.helm_values,
            kubeconfig=node_cluster.kubeconfig,
        )
        s.installed = True
        wait_pods_ready(core, s.op_ns, OPERATOR, 1, 120, "operator")
        s.timed("helm install -> operator Ready", t0)

        t0 = time.monotonic()
        s.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            s.ls_ns,
            PLURAL,
            _livestream(
                "show",
                {"backstage": {"enabled": True}, "ingest": {"protocols": ["rtmp"], "backup": True}},
                phase="backstage",
                members=[{"userId": "host-1", "role": "host"}],
            ),
        )
        pods = wait_pods_ready(core, s.ls_ns, SHOW, len(MEDIA_KEYS), 240, "the show's media pods")
        assert sorted(p.metadata.labels["app.kubernetes.io/component"] for p in pods) == sorted(MEDIA_KEYS)
        s.timed("Livestream with backup -> 5 pods Ready", t0)
        core.create_namespaced_pod(s.ls_ns, restricted_pod("viewer", onair_image.name, ["sleep", "3600"]))
        node_cluster.wait_running(s.ls_ns, "viewer", timeout=60)

        urls = _publish_urls(s, "show", ("rtmpPublishUrl", "backupRtmpPublishUrl"))
        assert urls["rtmpPublishUrl"] != urls["backupRtmpPublishUrl"], urls
        t0 = time.monotonic()
        s.encoders["main"] = Encoder(urls["rtmpPublishUrl"], "main")
        s.encoders["backup"] = Encoder(urls["backupRtmpPublishUrl"], "backup")
        s.wait(
            lambda: (st := s.status()).get("live") is True and st.get("backupLive") is True,
            60,
            "status.live and status.backupLive from the host's encoders",
        )
        s.timed("two host pushes -> live and backupLive", t0)
        yield s
    finally:
        print("\n" + "\n".join(f"  {k}: {v:.1f}s" for k, v in s.timings.items()))
        for encoder in s.encoders.values():
            encoder.close()
        try:
            _delete_livestreams(s)
        except Exception as e:  # noqa: BLE001 - reported, teardown goes on
            print(f"teardown: {e}")
        try:
            if s.installed:
                helm(
                    "uninstall",
                    RELEASE,
                    "--namespace",
                    s.op_ns,
                    "--wait",
                    "--timeout",
                    "60s",
                    kubeconfig=node_cluster.kubeconfig,
                )
            if s.manifest_docs:
                _delete_documents(node_cluster.api, s.manifest_docs)
        finally:
            for ns in (s.ls_ns, s.op_ns):
                core.delete_namespace(ns, propagation_policy="Background")


def _assert_operator_log_clean(show: Show) -> None:
    """The whole log of the running operator pod: no missing RBAC rule, no exception in a handler."""
    for pod in show.core.list_namespaced_pod(show.op_ns, label_selector=OPERATOR).items:
        log = show.core.read_namespaced_pod_log(pod.metadata.name, show.op_ns)
        assert not re.search(r"Forbidden|Traceback|\(403\)", log), f"{pod.metadata.name}:\n{log}"


def _host_token(show: Show) -> str:
    """The playback token the operator minted for the show's host (a member with join-backstage)."""
    name = show.wait(lambda: show.status().get("memberTokensSecret"), 30, "status.memberTokensSecret")
    data = show.core.read_namespaced_secret(name, show.ls_ns).data
    [key] = [k for k in data if k.startswith("host-1")]
    return base64.b64decode(data[key]).decode()


def _public_and_growing(show: Show) -> dict:
    view = show.wait(
        lambda: (v := show.view()).get("newest") == 200 and len(v["segments"]) >= 2 and v,
        60,
        "a viewer without a token getting segments",
        interval=1,
    )
    assert not view["endlist"] and view["newest_bytes"] > 1000, view
    before = show.produced(view)
    grown = show.wait(
        lambda: show.produced(v := show.view()) > before and v, 20, "the viewer's playlist growing", interval=1
    )
    # The player page is asked for before the playlists within one view, so the view that first saw
    # the playlists open may have asked for the page just before the origin let viewers in; a later
    # view must find it open too.
    assert grown["player"] == 200, grown
    return grown


def test_backstage_live_backstage_live_as_viewers_see_it(show: Show):
    status = show.status()
    assert status["phase"] == "backstage" and status["viewersAllowed"] is False, status
    assert status.get("backstageMembers") == ["host-1"], status.get("backstageMembers")
    host = _host_token(show)
    # The backstage preview: the host watches, the public is refused the player and the playlists.
    show.wait(lambda: show.status().get("outputsProduced") is True, 60, "the backstage preview")
    preview = show.wait(
        lambda: (v := show.view(token=host)).get("newest") == 200 and v,
        30,
        "the host watching the backstage preview",
        interval=1,
    )
    assert preview["player"] == 200 and preview["master"] == 200, preview
    public = show.view()
    assert public["master"] == 403 and public["player"] == 403, public
    assert show.status()["broadcasting"] is False

    t0 = time.monotonic()
    patch_spec(show.custom, show.ls_ns, {"phase": "live", "recording": True})
    _public_and_growing(show)
    show.timed("phase live -> viewer's playlist growing", t0)
    status = show.status()
    assert status["phase"] == "live" and status["viewersAllowed"] is True and status["broadcasting"] is True, status
    assert show.events("WentLive") == 1

    # Back to backstage (GetStream's stopLive): the public is shut out again, the host still
    # watches; and live once more.
    t0 = time.monotonic()
    patch_spec(show.custom, show.ls_ns, {"phase": "backstage"})
    show.wait(
        lambda: (v := show.view())["master"] == 403 and v["player"] == 403,
        30,
        "viewers without a token refused again in backstage",
        interval=1,
    )
    show.timed("phase backstage -> public refused", t0)
    assert show.view(token=host)["master"] == 200
    show.wait(lambda: show.events("ReturnedToBackstage") == 1, 15, "a ReturnedToBackstage Event")
    t0 = time.monotonic()
    patch_spec(show.custom, show.ls_ns, {"phase": "live"})
    _public_and_growing(show)
    show.timed("phase live again -> viewer's playlist growing", t0)
    assert show.events("WentLive") == 2
    show.wait(
        lambda: (s := show.status()).get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 2,
        60,
        "status.recording with recorded seconds",
    )


def test_operator_log_at_info_is_quiet_while_the_show_runs(show: Show):
    """The chart's default logLevel (info) keeps kopf's per-object handler logs out (they are what
    `verbose` adds): a show whose status changes every second must not write a line per watch event
    and per probe into the operator's log."""
    time.sleep(5)
    [op] = show.core.list_namespaced_pod(show.op_ns, label_selector=OPERATOR).items
    log = show.core.read_namespaced_pod_log(op.metadata.name, show.op_ns, since_seconds=5)
    chatter = [line for line in log.splitlines() if re.search(r"Handler '[^']+' succeeded|\bGET /healthz\b", line)]
    assert not chatter, f"{len(chatter)} lines in 5 s of a steady show:\n" + "\n".join(chatter[:20])


def test_deleting_the_main_ingest_pod_fails_over_to_the_backup(show: Show, request):
    # The tests before roll the ingest slots one after the other; on a busy node the transcoder may
    # still be on the backup until main's new pod is back and preferred again.
    status = show.wait(
        lambda: (s := show.status())["activeSource"] == "main" and s["backupLive"] is True and s,
        90,
        "the show on its main ingest with the backup live",
        interval=1,
    )
    failovers, returns = show.events("FailedOverToBackup"), show.events("ReturnedToMain")
    produced = show.produced(show.view())
    [main] = show.media_pods("ingest")

    ingest_urls = status["ingest"]
    watch = StatusWatch(show).__enter__()
    request.addfinalizer(watch.__exit__)
    t0 = time.monotonic()
    show.core.delete_namespaced_pod(main.metadata.name, show.ls_ns)
    seen: list[dict] = []

    def on_backup():
        s = show.status()
        seen.append({k: s.get(k) for k in ("live", "backupLive", "activeSource", "broadcasting")})
        return s.get("activeSource") == "backup"

    show.wait(on_backup, 30, "status.activeSource backup after the main ingest pod was deleted", interval=0.25)
    show.timed("main ingest pod deleted -> activeSource backup", t0)
    show.wait(lambda: show.events("FailedOverToBackup") > failovers, 15, "a FailedOverToBackup Event")
    # Viewers keep getting new segments from the backup while main is away.
    view = show.wait(
        lambda: (v := show.view()).get("newest") == 200 and show.produced(v) > produced + 2 and v,
        30,
        "new segments in the viewer's playlist on the backup",
        interval=1,
    )
    assert not view["endlist"], view
    assert all(s["backupLive"] for s in seen), f"the backup ingest dropped during the failover: {seen}"

    # Main is back (the Deployment's new pod, the encoder reconnected): the transcoder returns to
    # it once it has been healthy for a while, and says so.
    t0 = time.monotonic()
    [new_main] = wait_pods_ready(
        show.core, show.ls_ns, SHOW + ",app.kubernetes.io/component=ingest", 1, 90, "the new main ingest pod"
    )
    assert new_main.metadata.name != main.metadata.name
    show.wait(lambda: show.status().get("live") is True, 60, "status.live again from the main encoder's reconnect")
    show.wait(lambda: show.status().get("activeSource") == "main", 60, "status.activeSource back to main")
    show.timed("main ingest pod Ready -> activeSource main", t0)
    show.wait(lambda: show.events("ReturnedToMain") > returns, 15, "a ReturnedToMain Event")
    status = show.status()
    assert status["broadcasting"] is True and status["recording"] is True, status
    # The URLs encoders outside dial stayed the node's address and nodePorts while the main
    # ingest pod was replaced (an in-cluster URL in status or the Secret is useless to them).
    watch.__exit__()
    flips = [s["ingest"] for _, s in watch.seen if s["ingest"] != ingest_urls]
    assert not flips, f"status.ingest changed while the pod was replaced: {ingest_urls} -> {flips[:3]}"
    assert _publish_urls(show, "show", ("rtmpPublishUrl",))["rtmpPublishUrl"].startswith(ingest_urls["rtmp"])


def test_deleting_the_transcoder_pod_recovers(show: Show):
    [old] = show.media_pods("transcoder")
    view = show.view()
    produced, stopped, started = (
        show.produced(view),
        show.events("BroadcastingStopped"),
        show.events("BroadcastingStarted"),
    )
    t0 = time.monotonic()
    show.core.delete_namespaced_pod(old.metadata.name, show.ls_ns)
    readies: list[str] = []

    def broadcasting_again():
        s = show.status()
        ready = next((c for c in s.get("conditions") or () if c["type"] == "Ready"), {})
        readies.append(f"{ready.get('status')} {ready.get('reason')}: {ready.get('message')}")
        return s.get("broadcasting") is True and len(readies) > 1 and any(r.startswith("False") for r in readies)

    show.wait(broadcasting_again, 90, "status.broadcasting again after the transcoder pod was deleted", interval=0.5)
    show.timed("transcoder pod deleted -> broadcasting again", t0)
    # While it was away the status said which agent was missing.
    assert any("transcoder" in r for r in readies if r.startswith("False")), readies
    [new] = show.media_pods("transcoder")
    assert new.metadata.name != old.metadata.name
    view = show.wait(
        lambda: (v := show.view()).get("newest") == 200 and show.produced(v) > produced + 2 and v,
        30,
        "new segments from the new transcoder",
        interval=1,
    )
    # A new transcoder is a new run: the DVR window goes on with a discontinuity, not an end.
    assert view["discontinuities"] >= 1 and not view["endlist"], view
    show.wait(
        lambda: show.events("BroadcastingStopped") > stopped and show.events("BroadcastingStarted") > started,
        15,
        "BroadcastingStopped and BroadcastingStarted Events",
    )


def test_deleting_the_recorder_pod_keeps_the_recording(show: Show):
    status = show.status()
    assert status["recording"] is True, status
    before = _sessions(status.get("recordings"))
    [old] = show.media_pods("recorder")
    t0 = time.monotonic()
    show.core.delete_namespaced_pod(old.metadata.name, show.ls_ns)
    # The recorder stopping finalizes its session (sidecar on the PVC); the next one lists it and
    # starts recording again while the show is still live.
    finished = show.wait(
        lambda: [r for k, r in _sessions(show.status().get("recordings")).items() if k not in before],
        90,
        "the interrupted session in status.recordings",
    )
    assert len(finished) == 1, finished
    session = finished[0]
    # Deleted gracefully (SIGTERM): the recorder itself finalized the session.
    assert session["endReason"] == "agent stopped" and not session.get("recovered"), session
    assert session["parts"] and all(p["bytes"] > 0 and (p["durationSeconds"] or 0) > 0 for p in session["parts"]), (
        session
    )
    # The failover earlier was the same session going on from the backup: at least two parts.
    assert len(session["parts"]) >= 2, session
    show.wait(
        lambda: (
            (s := show.status()).get("recording") is True
            and 0 < (s.get("recordingDurationSeconds") or 0) < 60
            and len(show.media_pods("recorder")) == 1
        ),
        60,
        "a new recording session in the new recorder pod",
    )
    show.timed("recorder pod deleted -> recording again", t0)
    [new] = show.media_pods("recorder")
    assert new.metadata.name != old.metadata.name
    files = json.loads(show.node.exec(show.ls_ns, new.metadata.name, ["python3", "-c", LIST_FILES, "/recordings"]))
    for part in session["parts"]:
        assert files.get(part["file"]) == part["bytes"], (part, files)
    assert files.get(f"{session['session']}.json"), files


def test_a_killed_recorders_session_is_recovered_by_its_restart(show: Show):
    """Killed rather than stopped (SIGKILL, as the kernel's OOM killer does; the kubelet restarts
    the container in the same pod): the documented promise is that the parts play up to the kill
    and the next recorder on the volume finalizes the session with recovered: true. (Deleting the
    pod with grace period 0 is no kill: the kubelet still sends SIGTERM first.)"""
    show.wait(
        lambda: (s := show.status()).get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 3,
        30,
        "a few seconds in the open session",
    )
    before = _sessions(show.status().get("recordings"))
    [pod] = show.media_pods("recorder")
    [container] = pod.status.container_statuses
    t0 = time.monotonic()
    show.node.node.ctr("tasks", "kill", "--signal", "SIGKILL", container.container_id.split("://", 1)[1])
    finished = show.wait(
        lambda: [r for k, r in _sessions(show.status().get("recordings")).items() if k not in before],
        90,
        "the killed recorder's session in status.recordings",
    )
    assert len(finished) == 1, finished
    session = finished[0]
    assert session["recovered"] is True, session
    assert session["endReason"] == "recovered: the previous recorder stopped without finalizing", session
    assert session["parts"] and all(p["bytes"] > 0 and (p["durationSeconds"] or 0) > 0 for p in session["parts"]), (
        session
    )
    show.wait(
        lambda: (s := show.status()).get("recording") is True and _sessions(s["recordings"]).keys() >= before.keys(),
        60,
        "recording again after the kill",
    )
    show.timed("recorder killed -> recovered session listed and recording again", t0)
    [again] = show.media_pods("recorder")
    assert again.metadata.name == pod.metadata.name and again.status.container_statuses[0].restart_count == 1
    files = json.loads(show.node.exec(show.ls_ns, again.metadata.name, ["python3", "-c", LIST_FILES, "/recordings"]))
    for part in session["parts"]:
        assert files.get(part["file"]) == part["bytes"], (part, files)


def _live_and_recording_from_main(show: Show) -> None:
    """The show as the earlier tests leave it, also when a later test runs alone (`-k upgrade`):
    the fixture leaves it in backstage."""
    if show.status().get("phase") != "live":
        patch_spec(show.custom, show.ls_ns, {"phase": "live", "recording": True})
    show.wait(
        lambda: (
            (s := show.status()).get("broadcasting") is True
            and s.get("recording") is True
            and s.get("activeSource") == "main"
            and s.get("backupLive") is True
        ),
        90,
        "live, broadcasting and recording from main, the backup receiving",
    )


@dataclass
class Upgrade:
    """What the watches saw during one `helm upgrade` of the running show."""

    events: list  # ApiWatch events of the show's pods and of the ingest Services' EndpointSlices
    milestones: list[tuple[str, float]]
    playlist: PlaylistWatch
    status: StatusWatch
    rollout_events: list[str]  # the show's IngestRollout* Events so far: "reason xcount: message"
    counts: dict[str, int]  # IngestRollout* Events of the show before the upgrade, by reason


ROLLOUT_REASONS = (INGEST_ROLLOUT_STAGGERED, INGEST_ROLLOUT_CONTINUED, INGEST_ROLLOUT_NOT_BRIDGED)


def _helm_upgrade(show: Show, request, values: list[str], image: str, what: str) -> Upgrade:
    """`helm upgrade` of the release with ``values`` (after the install's), watched until every
    media pod is Ready on ``image``, the show is live on main with the backup receiving, and the
    viewer pod has read a few more segments."""
    from kubernetes import client

    from tests.fixtures.kube import ApiWatch

    _live_and_recording_from_main(show)
    counts = {reason: show.events(reason) for reason in ROLLOUT_REASONS}
    _assert_operator_log_clean(show)
    # What encoders reach (the ingest Services' ready endpoints) and what the pods do, as watches
    # deliver them; what viewers get, read by the viewer pod all along.
    watches = ApiWatch()
    request.addfinalizer(watches.stop)
    watches.follow("pods", show.core.list_namespaced_pod, show.ls_ns, SHOW)
    watches.follow(
        "endpointslices",
        client.DiscoveryV1Api(show.node.api).list_namespaced_endpoint_slice,
        show.ls_ns,
        "kubernetes.io/service-name in (show-ingest,show-ingest-backup)",
    )
    playlist = PlaylistWatch(show).__enter__()
    request.addfinalizer(playlist.__exit__)
    status = StatusWatch(show).__enter__()
    request.addfinalizer(status.__exit__)
    show.wait(
        lambda: {e[0] for e in watches.events} == {"pods", "endpointslices"} and playlist.reads,
        30,
        "the watches and the viewer started",
    )
    # The ingest pods before the upgrade, terminating ones of an earlier rollout included (as the
    # watch listed them): every other ingest pod the watch sees is one the upgrade made.
    ingest_before = {
        p.metadata.name
        for p in show.core.list_namespaced_pod(show.ls_ns, label_selector=SHOW).items
        if p.metadata.labels.get("app.kubernetes.io/component") in INGEST_KEYS
    }
    ingest_before |= {
        obj.metadata.name
        for kind, _, obj, _ in list(watches.events)
        if kind == "pods" and (obj.metadata.labels or {}).get("app.kubernetes.io/component") in INGEST_KEYS
    }
    t0 = time.monotonic()
    helm(
        "upgrade",
        RELEASE,
        str(ROOT / "charts/onair"),
        "--namespace",
        show.op_ns,
        *show.helm_values,
        *values,
        kubeconfig=show.node.kubeconfig,
    )
    [op] = wait_pods_ready(show.core, show.op_ns, OPERATOR, 1, 120, "the upgraded operator")
    assert [c.image for c in op.spec.containers] == [image]

    def rolled():
        pods = show.media_pods()
        ingest = {p.metadata.name for p in pods if p.metadata.labels["app.kubernetes.io/component"] in INGEST_KEYS}
        return (
            len(pods) == len(MEDIA_KEYS)
            and not ingest & ingest_before
            and all(c.image == image for p in pods for c in p.spec.containers)
            and all(
                p.status.phase == "Running" and all(cs.ready for cs in p.status.container_statuses or [False])
                for p in pods
            )
            and pods
        )

    show.wait(rolled, 240, f"every media pod Ready on {image}, both ingest pods new", interval=1)
    show.timed(f"{what} -> media pods rolled", t0)
    show.wait(
        lambda: (
            (s := show.status()).get("live") is True
            and s.get("backupLive") is True
            and s.get("broadcasting") is True
            and s.get("recording") is True
            and s.get("activeSource") == "main"
        ),
        90,
        "live on main, backup receiving, broadcasting and recording again after the upgrade",
    )
    show.timed(f"{what} -> live, broadcasting and recording again", t0)
    # A few more segments, so the playlist watch has read past the return to main.
    seen = max(playlist.segments, default=0)
    show.wait(lambda: max(playlist.segments, default=0) >= seen + 6, 60, "the playlist watch reading on")
    events = watches.stop()
    playlist.__exit__()
    status.__exit__()
    show.timings[f"{what}: longest poll stretch with neither ingest receiving"] = status.longest(
        lambda s: not s["live"] and not s["backupLive"]
    )
    show.timings[f"{what}: longest poll stretch not broadcasting"] = status.longest(lambda s: not s["broadcasting"])
    milestones = _ingest_milestones(events, ingest_before)
    rollout_events = [
        f"{e.reason} x{e.count or 1}: {e.message}"
        for e in sorted(
            show.core.list_namespaced_event(show.ls_ns, field_selector="involvedObject.name=show").items,
            key=lambda e: e.metadata.creation_timestamp,
        )
        if e.reason in ROLLOUT_REASONS
    ]
    print(
        f"\n  {what}: the ingest pods as the watch saw them: "
        + ", ".join(m for m, _ in milestones)
        + f"\n  {what}: "
        + f"\n  {what}: ".join(rollout_events)
        + f"\n  {what}: {len(playlist.segments)} segments read in {playlist.reads} playlist reads, "
        f"{len({p for p, _, _ in playlist.segments.values()})} period(s): {playlist.runs(milestones)}"
    )
    zero = milestones[0][1] if milestones else 0.0
    print(
        f"  {what}: ingest pod events: "
        + "; ".join(
            f"{at - zero:+.1f}s {type_} {obj.metadata.name}"
            f"{' (before)' if obj.metadata.name in ingest_before else ''}"
            f"{' Ready' if any(c.type == 'Ready' and c.status == 'True' for c in obj.status.conditions or ()) else ''}"
            f"{' deleting' if obj.metadata.deletion_timestamp else ''}"
            for kind, type_, obj, at in events
            if kind == "pods" and (obj.metadata.labels or {}).get("app.kubernetes.io/component") in INGEST_KEYS
        )
    )
    return Upgrade(events, milestones, playlist, status, rollout_events, counts)


def _assert_ingest_slots_rolled_one_after_the_other(show: Show, up: Upgrade) -> None:
    """Encoders always had an ingest to push to, the backup (not feeding the transcoder) rolled
    first, and status and Events told the owner so."""
    down = _ingest_slots_down_together(up.events)
    assert not down, "both ingest slots were down at once during the upgrade:\n  " + "\n  ".join(down[:5])
    # Main's old pod was left alone until the backup's new pod was Ready.
    names = [m for m, _ in up.milestones]
    assert {"ingest-backup new pod Ready", "ingest new pod Ready", "ingest old pod deleting"} <= set(names), names
    main_changed = min(names.index(m) for m in ("ingest new pod created", "ingest old pod deleting") if m in names)
    assert names.index("ingest-backup new pod Ready") < main_changed, f"main rolled before the backup was back: {names}"
    staggered, continued, not_bridged = ROLLOUT_REASONS
    conditions = {
        (c["reason"], c["message"])
        for _, s in up.status.seen
        for c in s.get("conditions") or ()
        if c["type"] == "Reconciling" and c["reason"] == staggered
    }
    assert conditions, "no Reconciling condition while the ingest slots rolled one after the other"
    assert all("ingest-backup first" in m for _, m in conditions), conditions
    assert show.events(staggered) == up.counts[staggered] + 1
    assert any("rolling ingest-backup first (ingest feeds the transcoder)" in e for e in up.rollout_events), (
        up.rollout_events
    )
    show.wait(
        lambda: show.events(continued) == up.counts[continued] + 1, 15, f"an {continued} Event once the backup was back"
    )
    assert show.events(not_bridged) == up.counts[not_bridged]
    urls = {json.dumps(s["ingest"], sort_keys=True) for _, s in up.status.seen}
    assert len(urls) == 1, f"status.ingest changed while the ingest pods rolled: {urls}"


def test_helm_upgrade_of_the_ingest_settings_rolls_the_slots_one_after_the_other_without_a_gap(show: Show, request):
    """A new ingest pod template for both slots while the rest keeps running (here the ingest's
    memory request; a new image does the same, see the next test): the operator rolls the slot not
    feeding the transcoder (the backup) first and main once the backup's new pod is Ready and its
    encoder is back. The transcoder fails over to the backup and back, as when a pod is deleted:
    viewers' playlist never stands still for more than two segments and has no discontinuity."""
    image = show.image.name
    up = _helm_upgrade(
        show, request, ["--set-string", "livestreams.resources.ingest.requests.memory=72Mi"], image, "ingest upgrade"
    )
    _assert_ingest_slots_rolled_one_after_the_other(show, up)
    target = up.playlist.target or 1
    # The DVR window may still hold discontinuities of this module's earlier tests (a transcoder pod
    # deleted): only a period that begins once the upgrade started is one of this roll.
    begins: dict[int, float] = {}
    for period, pdt, _ in up.playlist.segments.values():
        begins[period] = min(begins.get(period, pdt), pdt)
    started = up.milestones[0][1] - target
    assert not [p for p, t in begins.items() if t >= started and p != min(begins)], (
        "a discontinuity while only the ingest rolled",
        up.playlist.runs(up.milestones),
    )
    stalls = up.playlist.stalls(2 * target)
    assert not stalls, f"the playlist stood still while the ingest rolled: {stalls}; {up.playlist.runs(up.milestones)}"
    # The watch read the playlist all through both slots' rolls, the return to main included.
    at = dict(up.milestones)
    assert (
        up.playlist.run_around(at["ingest-backup new pod created"] - target, at["ingest old pod deleting"] + 2 * target)
        is not None
    ), up.playlist.runs(up.milestones)


def test_helm_upgrade_to_a_new_image_rolls_everything_without_losing_the_recording(show: Show, request):
    """`helm upgrade` to a new image tag: the operator and every media pod on it, the ingest slots
    one after the other as above. The transcoder and the origin restart too, so the playlist goes
    on after a discontinuity; between discontinuities it never stands still for more than two
    segments."""
    new_image = f"{show.image.repository}:{show.image.tag}-upgrade"
    show.node.node.ctr("images", "tag", show.image.name, new_image)
    _live_and_recording_from_main(show)
    before = _sessions(show.status().get("recordings"))
    viewed = show.view()
    up = _helm_upgrade(show, request, ["--set", f"image.tag={new_image.rsplit(':', 1)[1]}"], new_image, "image upgrade")
    _assert_ingest_slots_rolled_one_after_the_other(show, up)
    # (Whether main's roll falls inside one period depends on how long the transcoder's own
    # restart takes on the node; the test above covers the playlist through main's roll.)
    stalls = up.playlist.stalls(2 * (up.playlist.target or 1))
    assert not stalls, f"the playlist stood still between discontinuities: {stalls}; {up.playlist.runs(up.milestones)}"
    after = _sessions(show.status().get("recordings"))
    assert set(before) <= set(after), (sorted(before), sorted(after))
    assert len(after) > len(before), "the session interrupted by the recorder's roll is not listed"
    # The origin came back with its DVR volume: the playlist goes on where it was, never backwards
    # (a player seeing the media sequence go down stalls).
    view = show.wait(
        lambda: (v := show.view()).get("newest") == 200 and show.produced(v) > show.produced(viewed) and v,
        30,
        "the viewer's playlist going on after the upgrade",
        interval=1,
    )
    assert view["sequence"] >= viewed["sequence"] and not view["endlist"], (viewed, view)


def test_ending_the_show_as_a_viewer_sees_it(show: Show):
    refused = show.events("PublishRefusedEnded")
    t0 = time.monotonic()
    patch_spec(show.custom, show.ls_ns, {"phase": "ended"})
    view = show.wait(
        lambda: (v := show.view()).get("endlist") and v, 60, "EXT-X-ENDLIST in the viewer's playlist", interval=1
    )
    show.timed("phase ended -> viewer's playlist ended", t0)
    # The DVR stays playable after the end.
    assert view["master"] == 200 and view["newest"] == 200 and len(view["segments"]) >= 2, view
    status = show.wait(
        lambda: (s := show.status()).get("live") is False and s.get("recording") is False and s,
        60,
        "the publisher dropped and the recording finalized",
    )
    assert status["phase"] == "ended" and status["broadcasting"] is False, status
    # The encoders keep trying; the ingest refuses them and the owner reads why.
    show.wait(lambda: show.events("PublishRefusedEnded") > refused, 30, "a PublishRefusedEnded Event")
    assert show.events("Ended") == 1
    # Rate-limited: two encoders retrying every second do not bury the Livestream in Events.
    attempts = sum(e.starts for e in show.encoders.values())
    show.wait(lambda: sum(e.starts for e in show.encoders.values()) >= attempts + 4, 30, "the encoders retrying")
    assert show.events("PublishRefusedEnded") == refused + 1
    # Through everything done to the show, no container was restarted behind its back (a liveness
    # probe killing an agent while its peers were away, an OOM kill) and the operator hit no
    # missing RBAC rule and no exception.
    restarted = {
        p.metadata.name: cs.restart_count
        for p in show.media_pods()
        for cs in p.status.container_statuses or []
        if cs.restart_count
    }
    assert not restarted, f"containers restarted: {restarted}\n{pod_problems(show.core, show.ls_ns)}"
    _assert_operator_log_clean(show)
    events = [
        f"{e.type} {e.reason} x{e.count or 1}: {e.message}"
        for e in sorted(
            show.core.list_namespaced_event(show.ls_ns, field_selector="involvedObject.name=show").items,
            key=lambda e: e.metadata.creation_timestamp,
        )
        if e.involved_object.kind == "Livestream"
    ]
    print("\n  the show's Events:\n    " + "\n    ".join(events))
    # Nobody but the operator touched the show's children: an Event saying someone did would send
    # the owner looking for an intruder.
    drift = [e for e in events if " DriftCorrected " in e]
    if drift:
        [op] = show.core.list_namespaced_pod(show.op_ns, label_selector=OPERATOR).items
        print(show.core.read_namespaced_pod_log(op.metadata.name, show.op_ns))
    assert not drift, drift
    show.finished_recordings = status["recordings"]
    print("\n  recordings of the show:\n    " + _recording_coverage(show.finished_recordings))
    assert all(r["parts"] for r in show.finished_recordings), show.finished_recordings


def test_helm_uninstall_leaves_crds_livestreams_and_recordings(show: Show):
    from kubernetes import client

    t0 = time.monotonic()
    helm("uninstall", RELEASE, "--namespace", show.op_ns, "--wait", "--timeout", "60s", kubeconfig=show.node.kubeconfig)
    show.installed = False
    show.wait(
        lambda: not show.core.list_namespaced_pod(show.op_ns, label_selector=OPERATOR).items,
        60,
        "the operator pod gone",
    )
    show.timed("helm uninstall -> operator pod gone", t0)
    ext = client.ApiextensionsV1Api(show.node.api)
    crds = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert {"livestreams.onair.dev", "calltypes.onair.dev"} <= crds, crds
    # As the chart README says: the streams' objects stay (they belong to the Livestream, not to
    # the release), and so does the recordings PVC.
    assert show.custom.get_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL, "show")
    deployments = {d.metadata.name for d in show.apps.list_namespaced_deployment(show.ls_ns, label_selector=SHOW).items}
    assert deployments == {f"show-{k}" for k in MEDIA_KEYS}, deployments
    assert show.core.read_namespaced_persistent_volume_claim("show-recordings", show.ls_ns).status.phase == "Bound"


def _manifest_documents(image: str, operator_env: dict[str, str]) -> list[dict]:
    """manifests/ as a platform engineer adapts it (a kustomize image and env patch): the local
    image, and the ONAIR_* settings the chart would set from values."""
    from onair.localcluster import apply

    docs = apply.load_documents(apply.yaml_files(ROOT / "manifests"))
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            container["image"] = image
            container["imagePullPolicy"] = "Never"
            env = [e for e in container.get("env") or () if e["name"] not in operator_env]
            for e in env:
                if e["name"] == "ONAIR_IMAGE":
                    e["value"] = image
                elif e["name"] == "ONAIR_IMAGE_PULL_POLICY":
                    e["value"] = "Never"
            container["env"] = env + [{"name": k, "value": v} for k, v in operator_env.items()]
    return docs


def _delete_documents(api, docs: list[dict]) -> None:
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(api)
    for doc in reversed(docs):
        if doc["kind"] in ("CustomResourceDefinition", "Namespace"):
            continue  # the CRDs stay, as after helm; the namespace goes with the test's others
        res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            res.delete(
                name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace") if res.namespaced else None
            )
        except Exception as e:  # noqa: BLE001 - already gone
            if getattr(e, "status", None) != 404:
                raise


def test_manifests_install_adopts_the_show_and_runs_a_new_livestream(show: Show):
    from kubernetes import client

    from onair.localcluster import apply
    from tests.fixtures.kube import policy_allows

    env = {
        f"ONAIR_RESOURCES_{role.upper()}": json.dumps(SMALL) for role in ("ingest", "transcoder", "origin", "recorder")
    }
    env.update(ONAIR_INGEST_SERVICE_TYPE="NodePort", ONAIR_STATUS_POLL_INTERVAL_SECONDS="1")
    docs = _manifest_documents(show.image.name, env)
    [namespace] = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    t0 = time.monotonic()
    show.manifest_docs = docs
    apply.apply_documents(show.node.kube, docs)
    assert show.core.read_namespace(namespace).metadata.labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    try:
        [op] = wait_pods_ready(show.core, namespace, OPERATOR, 1, 120, "the operator from manifests/")
        show.timed("manifests/ applied -> operator Ready", t0)
        assert op.spec.service_account_name == "onair-operator"

        # It picks up the show left by the uninstalled release.
        generation = show.status().get("observedGeneration") or 0
        patch_spec(show.custom, show.ls_ns, {"displayName": "seen by the manifests install"})
        show.wait(
            lambda: (show.status().get("observedGeneration") or 0) > generation,
            60,
            "the new operator reconciling the show",
        )
        # Its agents' NetworkPolicies now admit the new operator pod, in its other namespace (the
        # node's bridge plugin does not enforce them; a cluster with Calico or Cilium would).
        ser = show.node.api.sanitize_for_serialization
        networking = client.NetworkingV1Api(show.node.api)

        def operator_admitted():
            policies = [ser(p) for p in networking.list_namespaced_network_policy(show.ls_ns).items]
            return all(
                policy_allows(policies, ser(pod), "agent", ser(op), ser(show.core.read_namespace(namespace)))
                for pod in show.media_pods()
            )

        show.wait(operator_admitted, 30, f"the show's NetworkPolicies admitting the operator in {namespace}")

        t0 = time.monotonic()
        show.custom.create_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL, _livestream("second", {}))
        wait_pods_ready(show.core, show.ls_ns, "app.kubernetes.io/instance=second", 4, 240, "the second's media pods")
        show.timed("manifests: Livestream -> 4 pods Ready", t0)
        url = _publish_urls(show, "second", ("rtmpPublishUrl",))["rtmpPublishUrl"]
        t0 = time.monotonic()
        show.encoders["second"] = Encoder(url, "second")
        show.wait(lambda: show.status("second").get("live") is True, 60, "the second Livestream live from a push")
        show.timed("manifests: push -> live", t0)
        show.wait(
            lambda: show.view("second").get("newest") == 200,
            60,
            "a viewer's segment of the second Livestream",
            interval=1,
        )
        show.timed("manifests: push -> viewer downloads a segment", t0)
        assert not show.events("DriftCorrected", name="second"), "the operator's own writes announced as drift"
        # Left recording for the next test, which deletes it mid-recording.
        patch_spec(show.custom, show.ls_ns, {"recording": True}, name="second")
        show.wait(
            lambda: (
                (s := show.status("second")).get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 2
            ),
            60,
            "the second Livestream recording",
        )
    except BaseException:
        print(pod_problems(show.core, namespace), pod_logs(show.core, namespace, OPERATOR))
        raise


def test_recordings_survive_deleting_the_livestreams(show: Show):
    """The ended show, and the second Livestream deleted while it records: both recordings PVCs
    stay Bound with every part and a sidecar per session on them."""
    assert show.finished_recordings, "needs the recordings of the ended show"
    for name in ("show", "second"):
        show.custom.delete_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL, name)
    show.wait(
        lambda: not show.custom.list_namespaced_custom_object(GROUP, VERSION, show.ls_ns, PLURAL)["items"],
        60,
        "both Livestreams deleted",
    )
    show.wait(
        lambda: not show.core.list_namespaced_pod(show.ls_ns, label_selector="onair.dev/role").items,
        60,
        "their media pods gone",
    )
    for encoder in show.encoders.values():
        encoder.close()
    show.encoders.clear()
    for name in ("show", "second"):
        claim = show.core.read_namespaced_persistent_volume_claim(f"{name}-recordings", show.ls_ns)
        assert claim.status.phase == "Bound" and not claim.metadata.deletion_timestamp, claim.status
    pod = restricted_pod("recordings-reader", show.image.name, ["sleep", "600"])
    pod["spec"]["securityContext"] = {**RESTRICTED_POD, "fsGroup": 10001}
    pod["spec"]["containers"][0]["securityContext"] = RESTRICTED_CONTAINER
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": n, "mountPath": f"/{n}", "readOnly": True} for n in ("show", "second")
    ]
    pod["spec"]["volumes"] = [
        {"name": n, "persistentVolumeClaim": {"claimName": f"{n}-recordings"}} for n in ("show", "second")
    ]
    show.core.create_namespaced_pod(show.ls_ns, pod)
    show.node.wait_running(show.ls_ns, "recordings-reader", timeout=60)
    volumes = json.loads(
        show.node.exec(show.ls_ns, "recordings-reader", ["python3", "-c", READ_VOLUMES, "/show", "/second"])
    )

    # The show: every part of every session its status listed, byte for byte.
    files, _ = volumes["/show"]
    for recording in show.finished_recordings:
        assert f"{recording['session']}.json" in files, (recording["session"], sorted(files))
        for part in recording["parts"]:
            assert files.get(part["file"]) == part["bytes"], (part, files)
    # The second: the recorder, stopped by the deletion, finalized its open session.
    files, sidecars = volumes["/second"]
    assert len(sidecars) == 1, (sidecars, files)
    [sidecar] = sidecars.values()
    assert sidecar["endReason"] == "agent stopped" and sidecar["durationSeconds"] >= 2, sidecar
    assert sidecar["parts"] and all(files.get(p["file"]) == p["bytes"] > 0 for p in sidecar["parts"]), (sidecar, files)
    assert sorted(f for f in files if f.endswith(".mp4")) == sorted(p["file"] for p in sidecar["parts"]), files
    print(
        f"  recordings on the PVCs: show {len(show.finished_recordings)} sessions "
        f"{sum(len(r['parts']) for r in show.finished_recordings)} parts, second {sidecar['durationSeconds']:.1f}s "
        f"in {len(sidecar['parts'])} part(s)"
    )
