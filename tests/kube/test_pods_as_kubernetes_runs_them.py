"""What Kubernetes itself does to the media pods, observed on a real kubelet (no process runner).

`onair dev`'s fallback runtime (onair.localcluster.podrunner) imitates these behaviours; here the
kubelet, kube-proxy, the EndpointSlice controller and CoreDNS of the real node do them, to the
pods the operator renders, and the product must follow:

- readiness: an ingest whose nginx does not answer is taken out of its Service (encoders are not
  sent to it) and comes back once nginx answers;
- a crashed agent: the kubelet restarts the container in the same pod, nothing the old one started
  (nginx) outlives it, and the stream comes back;
- Secret volumes: an agent token and a stream key changed in `<ls>-credentials` reach the running
  pods through the kubelet's volume resync, without a restart; until then the agents refuse the
  operator and the Livestream says so (AgentRefusedCredential), after it the operator talks to them
  with the new token; the new key is accepted, the old one refused;
- a new pod template for one role (the origin's DVR window) replaces that pod only; the transcoder
  keeps uploading to the new origin through the same Service name;
- a backup ingest turned on later is read by the running transcoder through the Service name its
  config already held, and a push to the backup's NodePort makes status.backupLive true.

One helm install and one Livestream (360p, one rung, 1 s segments, no recording) serve every test,
in the order of this file; each test leaves the show running for the next. Timings are printed
(run with -s).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from onair import roles
from tests.fixtures.cluster import wait_for
from tests.fixtures.kube import (
    ffmpeg_push,
    install_onair,
    livestream_status,
    patch_spec,
    pod_logs,
    pod_problems,
    restricted_namespace,
    restricted_pod,
    uninstall_in_user_order,
    wait_pods_ready,
)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

RELEASE = "onair"
LS = "show"
MEDIA_KEYS = ("ingest", "transcoder", "origin")

# An HTTP client run inside the cluster (the `client` pod): prints the status code, then the body.
HTTP_GET = (
    "import sys, urllib.request, urllib.error\n"
    "req = urllib.request.Request(sys.argv[1])\n"
    "if len(sys.argv) > 2: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
    "try:\n"
    "    with urllib.request.urlopen(req, timeout=5) as r: code, body = r.status, r.read()\n"
    "except urllib.error.HTTPError as e: code, body = e.code, e.read()\n"
    "except Exception as e: code, body = 0, repr(e).encode()\n"
    "print(code); sys.stdout.write(body.decode(errors='replace'))\n"
)
# The segments a viewer's media playlist lists now (master playlist -> first variant).
SEGMENTS = (
    "import sys, urllib.request, urllib.parse\n"
    "def get(u):\n"
    "    with urllib.request.urlopen(u, timeout=5) as r: return r.read().decode()\n"
    "url = sys.argv[1]\n"
    "try:\n"
    "    media = urllib.parse.urljoin(url, [l for l in get(url).splitlines() if l and not l.startswith('#')][0])\n"
    "    print('\\n'.join(l for l in get(media).splitlines() if l and not l.startswith('#')))\n"
    "except Exception as e: print('#', repr(e))\n"
)


class Encoder:
    """ffmpeg on the host pushing to a URL the owner was given (the NodePort): it dials again when
    its connection drops, as OBS does."""

    def __init__(self, url: Callable[[], str]) -> None:
        self.url = url
        self.proc: Optional[subprocess.Popen] = None
        self.dials = 0

    def keep(self) -> "Encoder":
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                ffmpeg_push("flv", self.url()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.dials += 1
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@dataclass
class Show:
    node_cluster: Any
    ns: str
    op_ns: str
    timings: dict[str, float] = field(default_factory=dict)
    encoders: dict[str, Encoder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = self.node_cluster.core()
        self.custom = client.CustomObjectsApi(self.node_cluster.api)
        self.discovery = client.DiscoveryV1Api(self.node_cluster.api)

    # ---------------------------------------------------------------- observation
    def status(self) -> dict:
        return livestream_status(self.custom, self.ns, LS)

    def pod(self, key: str):
        """The one live pod of component `key` (None while there is none, or more than one)."""
        pods = [
            p
            for p in self.core.list_namespaced_pod(
                self.ns, label_selector=f"app.kubernetes.io/instance={LS},app.kubernetes.io/component={key}"
            ).items
            if not p.metadata.deletion_timestamp
        ]
        return pods[0] if len(pods) == 1 else None

    def ready_pod(self, key: str):
        pod = self.pod(key)
        ready = (
            pod is not None
            and pod.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())
        )
        return pod if ready else None

    def secret(self) -> dict[str, str]:
        data = self.core.read_namespaced_secret(f"{LS}-credentials", self.ns).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def ready_endpoints(self, service: str) -> set[str]:
        """The addresses the Service routes to now (EndpointSlice endpoints with ready true)."""
        out: set[str] = set()
        for s in self.discovery.list_namespaced_endpoint_slice(
            self.ns, label_selector=f"kubernetes.io/service-name={service}"
        ).items:
            for e in s.endpoints or ():
                if e.conditions is not None and e.conditions.ready:
                    out.update(e.addresses)
        return out

    def diagnostics(self) -> str:
        logs = pod_logs(self.core, self.ns, f"app.kubernetes.io/instance={LS}")
        return f"{pod_problems(self.core, self.ns)}\n{logs}\nstatus: {json.dumps(self.status(), indent=1, default=str)}"

    def until(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=interval, what=what)
        except BaseException:
            print(self.diagnostics())
            raise

    # ---------------------------------------------------------------- inside the cluster
    def in_cluster(self, script: str, *args: str, timeout: float = 30) -> str:
        return self.node_cluster.exec(self.ns, "client", ["python3", "-c", script, *args], timeout=timeout)

    def agent(self, key: str, path: str, token: Optional[str]) -> tuple[int, str]:
        """An agent's API, asked at its pod's address as the operator asks it."""
        pod = self.ready_pod(key) or self.pod(key)
        out = self.in_cluster(
            HTTP_GET, f"http://{pod.status.pod_ip}:{roles.AGENT_PORT}{path}", *([token] if token else [])
        )
        code, _, body = out.partition("\n")
        return int(code), body

    def segments(self) -> list[str]:
        url = (self.status().get("playback") or {}).get("hlsCmaf")
        if not url:
            return []
        return [line for line in self.in_cluster(SEGMENTS, url).splitlines() if line and not line.startswith("#")]

    def new_segments(self, after: set[str], count: int, timeout: float, what: str) -> list[str]:
        return self.until(
            lambda: (fresh := [s for s in self.segments() if s not in after]) and len(fresh) >= count and fresh,
            timeout,
            what,
            interval=1,
        )

    # ---------------------------------------------------------------- encoders outside the cluster
    def encoder(self, slot: str = "main") -> Encoder:
        key = "rtmpPublishUrl" if slot == "main" else "backupRtmpPublishUrl"
        if slot not in self.encoders:
            # The URL is read again at every dial: a rotated key reaches the next dial.
            self.encoders[slot] = Encoder(lambda: self.secret()[key])
        return self.encoders[slot]

    def live(self, what: str, timeout: float = 90) -> dict:
        """Push to the main ingest (dialling again as needed) until status.live."""
        enc = self.encoder("main")
        return self.until(lambda: enc.keep() and (s := self.status()).get("live") is True and s, timeout, what)

    def stop_encoders(self) -> None:
        for enc in self.encoders.values():
            enc.stop()


def _container_id(pod) -> str:
    [cs] = pod.status.container_statuses
    return cs.container_id.split("://", 1)[1]


def _task_pids(node, container_id: str) -> list[int]:
    """The host PIDs of every process in a container (what `ctr tasks ps` lists)."""
    out = node.ctr("tasks", "ps", container_id)
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split() and line.split()[0].isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _start_time(pid: int) -> Optional[str]:
    """The process's start time (field 22 of /proc/PID/stat): tells a PID reused by another process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@pytest.fixture(scope="module")
def show(node_cluster, onair_image):
    core = node_cluster.core()
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ns = restricted_namespace(core, f"kubelet-{suffix}")
    s = Show(node_cluster, ns, op_ns)
    installed = False
    try:
        t0 = time.monotonic()
        install_onair(node_cluster, onair_image, RELEASE, op_ns)
        installed = True
        s.custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": LS},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp"], "backup": False},
                        "broadcasting": {
                            "hls": {"qualityTracks": ["360p"]},
                            "segmentDurationSeconds": 1,
                            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
                        },
                        "dvr": {"durationSeconds": 60},
                        "recording": {"mode": "disabled"},
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        core.create_namespaced_pod(ns, restricted_pod("client", onair_image.name, ["sleep", "3600"]))
        wait_pods_ready(
            core, ns, f"app.kubernetes.io/instance={LS}", len(MEDIA_KEYS), 240, "the Livestream's media pods"
        )
        node_cluster.wait_running(ns, "client", timeout=60)
        s.until(
            lambda: node_cluster.node.node_ip in s.secret().get("rtmpPublishUrl", ""),
            60,
            "the publish URL on the node's address (the ingest's NodePort)",
        )
        s.timings["helm install -> media pods Ready"] = time.monotonic() - t0
        yield s
    finally:
        s.stop_encoders()
        print("\n" + "\n".join(f"  {k}: {v:.1f}s" for k, v in s.timings.items()))
        uninstall_in_user_order(
            core,
            s.custom,
            livestream_ns=ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )


def _nginx_pids(show: Show, pod) -> list[int]:
    every = _task_pids(show.node_cluster.node, _container_id(pod))
    pids = [p for p in every if "nginx" in _cmdline(p)]
    assert pids, f"no nginx in the ingest container: {[(p, _cmdline(p)) for p in every]}"
    return pids


def test_an_ingest_whose_nginx_does_not_answer_is_out_of_its_service_until_it_does(show):
    """The ingest's readiness is nginx's (its /readyz), not only the agent's: while nginx does not
    answer (frozen here with SIGSTOP from the node), the kubelet marks the pod not Ready, the
    EndpointSlice drops its address and kube-proxy refuses an encoder at once instead of handing
    its connection to an nginx that never answers; once nginx answers again, it is back."""
    pod = show.ready_pod("ingest")
    assert pod is not None
    ip = pod.status.pod_ip
    assert show.ready_endpoints(f"{LS}-ingest") == {ip}
    node_port = {p.name: p.node_port for p in show.core.read_namespaced_service(f"{LS}-ingest", show.ns).spec.ports}
    frozen = _nginx_pids(show, pod)
    t0 = time.monotonic()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        show.until(
            lambda: (
                show.pod("ingest").metadata.uid == pod.metadata.uid
                and show.ready_pod("ingest") is None
                and ip not in show.ready_endpoints(f"{LS}-ingest")
            ),
            60,
            "the ingest pod not Ready and out of its Service's endpoints while nginx does not answer",
        )
        show.timings["nginx frozen -> ingest out of its Service"] = time.monotonic() - t0
        # The agent itself still answers: what it says is what the probe now hears.
        code, body = show.agent("ingest", "/readyz", None)
        assert code == 503 and "nginx" in body, (code, body)
        # An encoder dialling the NodePort now is refused at once (no ready endpoint), not handed
        # to an nginx whose kernel backlog accepts the connection and then never answers.
        try:
            socket.create_connection((show.node_cluster.node.node_ip, node_port["rtmp"]), timeout=5).close()
        except ConnectionRefusedError:
            pass
        else:
            pytest.fail("an encoder's connection to the ingest NodePort reached the pod that is not ready")
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    t0 = time.monotonic()
    show.until(
        lambda: (
            (p := show.ready_pod("ingest")) is not None
            and p.metadata.uid == pod.metadata.uid
            and ip in show.ready_endpoints(f"{LS}-ingest")
        ),
        60,
        "the same ingest pod Ready and back in its Service once nginx answers",
    )
    show.timings["nginx answers -> ingest back in its Service"] = time.monotonic() - t0
    assert show.pod("ingest").status.container_statuses[0].restart_count == 0, "readiness must not restart it"
    t0 = time.monotonic()
    show.live("status.live from the host's push once the ingest is back")
    show.timings["push -> status.live"] = time.monotonic() - t0


def test_a_killed_ingest_agent_is_restarted_by_the_kubelet_and_nothing_it_started_outlives_it(show):
    show.live("live before the crash")
    before = show.new_segments(set(), 1, 60, "segments before the crash")
    pod = show.ready_pod("ingest")
    old_container = _container_id(pod)
    restarts = pod.status.container_statuses[0].restart_count
    family = {pid: _start_time(pid) for pid in _task_pids(show.node_cluster.node, old_container)}
    assert any("nginx" in _cmdline(p) for p in family), (
        f"the agent and its nginx expected in the container: {[(p, _cmdline(p)) for p in family]}"
    )
    t0 = time.monotonic()
    # The agent is the container's main process: killed as an OOM kill or a crash would.
    show.node_cluster.node.ctr("tasks", "kill", "--signal", "SIGKILL", old_container)

    def restarted():
        p = show.ready_pod("ingest")
        if p is None or p.metadata.uid != pod.metadata.uid:
            return None
        cs = p.status.container_statuses[0]
        return p if cs.restart_count == restarts + 1 and _container_id(p) != old_container else None

    now = show.until(restarted, 90, "the kubelet restarting the killed ingest container in the same pod")
    show.timings["ingest agent killed -> restarted and Ready"] = time.monotonic() - t0
    cs = now.status.container_statuses[0]
    assert cs.last_state.terminated is not None and cs.last_state.terminated.exit_code == 137, cs.last_state
    left = [(pid, _cmdline(pid)) for pid, started in family.items() if _start_time(pid) == started]
    assert not left, f"processes of the killed ingest container outlived it: {left}"
    assert _nginx_pids(show, now), "the restarted ingest runs its own nginx"
    assert now.status.pod_ip == pod.status.pod_ip and show.ready_endpoints(f"{LS}-ingest") == {pod.status.pod_ip}
    t0 = time.monotonic()
    show.live("status.live again: the encoder dials the restarted ingest")
    show.new_segments(set(before), 2, 90, "new segments from the restarted ingest's stream")
    show.timings["restarted ingest -> live with new segments"] = time.monotonic() - t0


def _events(show: Show, reason: str) -> list:
    return [
        e
        for e in show.core.list_namespaced_event(
            show.ns, field_selector=f"involvedObject.name={LS},involvedObject.kind=Livestream,reason={reason}"
        ).items
    ]


def test_a_rotated_agent_token_reaches_the_running_pods_through_their_secret_volume(show):
    """The owner edits agentToken in the credentials Secret: the operator uses the new token at
    once; until the kubelet has updated the pods' Secret volume (held back here by stopping the
    kubelet for a few seconds, as a busy kubelet or the default one-minute sync does) the agents
    refuse it, the Livestream is not live and says why (AgentRefusedCredential); once the kubelet
    syncs, without restarting a pod, the agents take the new token, refuse the old one, and the
    operator sees the stream live again."""
    show.live("live before the rotation")
    uids = {k: show.pod(k).metadata.uid for k in MEDIA_KEYS}
    restarts = {k: show.pod(k).status.container_statuses[0].restart_count for k in MEDIA_KEYS}
    old_token, new_token = show.secret()["agentToken"], "rotated-" + secrets.token_hex(24)
    kubelet = show.node_cluster.node.component_pid("kubelet")
    assert "kubelet" in _cmdline(kubelet), _cmdline(kubelet)
    refused_before = len(_events(show, "AgentRefusedCredential"))
    t0 = time.monotonic()
    os.kill(kubelet, signal.SIGSTOP)
    try:
        show.core.patch_namespaced_secret(
            f"{LS}-credentials", show.ns, {"data": {"agentToken": base64.b64encode(new_token.encode()).decode()}}
        )
        # Short waits: the node must not miss its lease renewals for long.
        show.until(
            lambda: (
                show.encoder("main").keep()
                and show.status().get("live") is False
                and len(_events(show, "AgentRefusedCredential")) > refused_before
            ),
            25,
            "not live and AgentRefusedCredential while the pods still hold the old token",
        )
    finally:
        os.kill(kubelet, signal.SIGCONT)
    refusals = _events(show, "AgentRefusedCredential")[refused_before:]
    for event in refusals:  # one per refusing agent
        assert event.type == "Warning" and f"Secret {LS}-credentials" in event.message, event.message
    show.live("live again once the kubelet updated the Secret volumes", timeout=150)
    show.timings["agentToken edited -> live again (kubelet held 25 s at most)"] = time.monotonic() - t0
    for key in MEDIA_KEYS:
        show.until(
            lambda: show.agent(key, "/status", new_token)[0] == 200,
            150,
            f"the {key} pod's Secret volume updated by the kubelet (its agent accepting the new token)",
            interval=2,
        )
        code, body = show.agent(key, "/status", old_token)
        assert code == 403 and "wrong agent token" in body, (key, code, body)
    assert {k: show.pod(k).metadata.uid for k in MEDIA_KEYS} == uids, "a rotation must not replace pods"
    assert {k: show.pod(k).status.container_statuses[0].restart_count for k in MEDIA_KEYS} == restarts
    # The refusals ended with the kubelet's sync: no agent refused the operator after it.
    assert len(_events(show, "AgentRefusedCredential")) == refused_before + len(refusals)


def test_a_rotated_stream_key_reaches_the_running_ingest_through_its_secret_volume(show):
    """The owner edits streamKey in the credentials Secret: the operator keeps it and renders the
    publish URL with it; the kubelet updates the running ingest's Secret volume (no restart); the
    new key is accepted and the old one refused as a wrong key."""
    show.live("live before the rotation")
    uid = show.pod("ingest").metadata.uid
    restarts = show.pod("ingest").status.container_statuses[0].restart_count
    old_key, new_key = show.secret()["streamKey"], "rotated" + secrets.token_hex(12)
    show.encoder("main").stop()
    show.until(lambda: show.status().get("live") is False, 60, "not live once the encoder stopped")
    t0 = time.monotonic()
    show.core.patch_namespaced_secret(
        f"{LS}-credentials", show.ns, {"data": {"streamKey": base64.b64encode(new_key.encode()).decode()}}
    )
    show.until(
        lambda: new_key in show.secret()["rtmpPublishUrl"] and show.secret()["streamKey"] == new_key,
        60,
        "the operator keeping the new key and rendering the publish URL with it",
    )
    # The encoder dials with the new URL until the kubelet has updated the ingest's key file.
    show.live("status.live from a push with the new key", timeout=150)
    show.timings["streamKey edited -> a push with the new key live"] = time.monotonic() - t0
    assert show.pod("ingest").metadata.uid == uid, "a rotation must not replace the ingest pod"
    assert show.pod("ingest").status.container_statuses[0].restart_count == restarts
    t0 = time.monotonic()
    show.encoder("main").stop()
    show.until(lambda: show.status().get("live") is False, 60, "not live once the encoder stopped")
    show.timings["encoder stopped -> not live"] = time.monotonic() - t0
    token = show.secret()["agentToken"]

    def wrong_key_refusals() -> int:
        code, body = show.agent("ingest", "/status", token)
        assert code == 200, (code, body)
        return sum(r["count"] for r in json.loads(body).get("refusals") or () if r["reason"] == "wrong_key")

    # Dials with the new key before the kubelet's sync were refused too (and announced: one
    # PublishRefusedWrongKey Event a minute at most), so the ingest's own count tells this one.
    refused_before = wrong_key_refusals()
    t0 = time.monotonic()
    stale_url = show.secret()["rtmpPublishUrl"].replace(new_key, old_key)
    stale = subprocess.Popen(
        ffmpeg_push("flv", stale_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = stale.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stale.kill()
        stale.communicate(timeout=10)
        pytest.fail("the old stream key is still accepted after the rotation")
    assert stale.returncode != 0, err
    show.timings["push with the old key -> encoder refused"] = time.monotonic() - t0
    show.until(lambda: wrong_key_refusals() > refused_before, 30, "the ingest counting the old key as wrong_key")
    show.until(lambda: _events(show, "PublishRefusedWrongKey"), 30, "the owner told why pushes are refused")
    assert show.status().get("live") is False
    show.live("live again with the new key")


def test_a_new_origin_pod_template_replaces_only_the_origin_and_the_transcoder_finds_it_by_its_service(show):
    show.live("live before the template change")
    pods = {k: show.ready_pod(k) for k in MEDIA_KEYS}
    service_ip = show.core.read_namespaced_service(f"{LS}-origin", show.ns).spec.cluster_ip
    t0 = time.monotonic()
    patch_spec(show.custom, show.ns, {"settingsOverride": {"dvr": {"durationSeconds": 120}}}, name=LS)
    origin = show.until(
        lambda: (p := show.ready_pod("origin")) is not None and p.metadata.uid != pods["origin"].metadata.uid and p,
        120,
        "a new origin pod Ready with the new template",
    )
    show.timings["dvr window changed -> new origin pod Ready"] = time.monotonic() - t0
    for key in ("ingest", "transcoder"):
        p = show.pod(key)
        assert p.metadata.uid == pods[key].metadata.uid, f"the {key} pod was replaced for the origin's change"
        assert p.status.container_statuses[0].restart_count == pods[key].status.container_statuses[0].restart_count
    assert show.core.read_namespaced_service(f"{LS}-origin", show.ns).spec.cluster_ip == service_ip
    show.until(
        lambda: show.ready_endpoints(f"{LS}-origin") == {origin.status.pod_ip},
        30,
        "the origin Service routing to the new pod only",
    )
    code, body = show.agent("origin", "/status", show.secret()["agentToken"])
    assert code == 200 and json.loads(body)["dvrWindowSeconds"] == 120, (code, body)
    # The transcoder uploads to the origin by its Service name: the new pod gets the new segments.
    t0 = time.monotonic()
    seen = set(show.until(show.segments, 60, "the new origin pod serving the media playlist", interval=1))
    show.new_segments(seen, 3, 90, "new segments uploaded by the running transcoder to the new origin pod")
    show.timings["new origin Ready -> 3 new segments"] = time.monotonic() - t0
    assert show.until(lambda: show.status().get("broadcasting") is True, 30, "status.broadcasting")


def test_a_backup_ingest_turned_on_later_is_read_by_the_running_transcoder_through_its_service(show):
    show.live("live on the main ingest")
    transcoder = show.ready_pod("transcoder")
    config = json.loads(show.core.read_namespaced_config_map(f"{LS}-transcoder", show.ns).data["config.json"])
    # The name was in the transcoder's config before the backup ingest existed.
    backup_host = f"{LS}-ingest-backup.{show.ns}.svc"
    assert backup_host in config["backupUrl"], config["backupUrl"]
    t0 = time.monotonic()
    patch_spec(show.custom, show.ns, {"settingsOverride": {"ingest": {"backup": True}}}, name=LS)
    backup = show.until(lambda: show.ready_pod("ingest-backup"), 120, "the backup ingest pod Ready")
    show.until(
        lambda: backup.status.pod_ip in show.ready_endpoints(f"{LS}-ingest-backup"),
        30,
        "the backup ingest Service routing to its pod",
    )
    node_ip = show.node_cluster.node.node_ip
    show.until(
        lambda: node_ip in show.secret().get("backupRtmpPublishUrl", ""),
        60,
        "the backup publish URL on the node's address (its NodePort)",
    )
    show.timings["backup on -> backup ingest Ready"] = time.monotonic() - t0
    t0 = time.monotonic()
    backup_encoder = show.encoder("backup")
    show.until(
        lambda: backup_encoder.keep() and show.status().get("backupLive") is True,
        90,
        "status.backupLive from a push to the backup NodePort",
    )
    show.timings["push to the backup NodePort -> backupLive"] = time.monotonic() - t0
    now = show.pod("transcoder")
    assert now.metadata.uid == transcoder.metadata.uid, "turning the backup on must not replace the transcoder"
    assert now.status.container_statuses[0].restart_count == transcoder.status.container_statuses[0].restart_count
    assert json.loads(show.core.read_namespaced_config_map(f"{LS}-transcoder", show.ns).data["config.json"]) == config
    # The main encoder leaves: the running transcoder reads the backup through the Service name.
    t0 = time.monotonic()
    seen = set(show.segments())
    show.encoder("main").stop()
    show.until(
        lambda: backup_encoder.keep() and show.status().get("activeSource") == "backup",
        60,
        "status.activeSource backup: the transcoder reading the backup ingest",
    )
    show.new_segments(seen, 3, 60, "new segments from the backup encoder")
    show.timings["main encoder gone -> transcoder on the backup"] = time.monotonic() - t0
