"""``origin.replicas: 2`` on a real kubelet: the StatefulSet, its headless Service (per-pod DNS for
the transcoder's uploads and the replicas' copies), the NetworkPolicies and the readinessProbe
that waits for a replica's DVR copy, through a rolling update while a player plays.

A player in the cluster reloads the LL-HLS media playlist through the origin Service (kube-proxy
balances it across the replicas) all through a rolling update of the origin (a new DVR window:
a new pod template). What it must see: no reload refused (a leaving pod drains: not ready, serving
on until the Service's endpoints and kube-proxy dropped it), the live edge moving on, and one numbering: a media sequence number always names the
same segment, whichever replica answered, before, during and after the update.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.kube import (
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
from tests.kube.test_pods_as_kubernetes_runs_them import Encoder

pytestmark = [pytest.mark.kube, pytest.mark.slow, pytest.mark.timeout(900)]

RELEASE = "onair"
LS = "dup"
# The player: reloads the media playlist every 0.3 s for argv[2] seconds; prints one JSON line per
# reload: [HTTP status, {msn: segment URI}].
PLAYER = (
    "import sys, json, time, urllib.request, urllib.error\n"
    "url, until = sys.argv[1], time.time() + float(sys.argv[2])\n"
    "while time.time() < until:\n"
    "    try:\n"
    "        with urllib.request.urlopen(url, timeout=3) as r: code, text = r.status, r.read().decode()\n"
    "    except urllib.error.HTTPError as e: code, text = e.code, ''\n"
    "    except Exception: code, text = 0, ''\n"
    "    seq, segs = 0, {}\n"
    "    for l in text.splitlines():\n"
    "        if l.startswith('#EXT-X-MEDIA-SEQUENCE:'): seq = int(l.split(':')[1])\n"
    "        elif l and not l.startswith('#'): segs[seq] = l; seq += 1\n"
    "    print(json.dumps([code, segs]), flush=True)\n"
    "    time.sleep(0.3)\n"
)


def test_a_rolling_update_of_two_origin_replicas_while_a_player_plays(node_cluster, onair_image):
    from kubernetes import client

    core = node_cluster.core()
    custom = client.CustomObjectsApi(node_cluster.api)
    apps = client.AppsV1Api(node_cluster.api)
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ns = restricted_namespace(core, f"replicas-{suffix}")
    encoder = None
    installed = False

    def diagnostics() -> str:
        logs = pod_logs(core, ns, f"app.kubernetes.io/instance={LS}")
        return f"{pod_problems(core, ns)}\n{logs}\nstatus: {json.dumps(livestream_status(custom, ns, LS), default=str)}"

    def until(predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout=timeout, interval=1, what=what)
        except BaseException:
            print(diagnostics())
            raise

    try:
        install_onair(node_cluster, onair_image, RELEASE, op_ns)
        installed = True
        custom.create_namespaced_custom_object(
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
                    "phase": "live",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp"], "backup": False},
                        "broadcasting": {
                            "lowLatency": True,
                            "hls": {"qualityTracks": ["360p"]},
                            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
                        },
                        "dvr": {"durationSeconds": 120},
                        "recording": {"mode": "disabled"},
                        "screenshots": {"enabled": False},
                        "origin": {"replicas": 2},
                    },
                },
            },
        )
        core.create_namespaced_pod(ns, restricted_pod("client", onair_image.name, ["sleep", "3600"]))
        wait_pods_ready(core, ns, f"app.kubernetes.io/instance={LS}", 4, 300, "ingest, transcoder, 2 origins")
        node_cluster.wait_running(ns, "client", timeout=60)
        until(lambda: livestream_status(custom, ns, LS).get("originReplicas") == "2/2", 60, "originReplicas 2/2")

        def secret() -> dict:
            import base64

            data = core.read_namespaced_secret(f"{LS}-credentials", ns).data or {}
            return {k: base64.b64decode(v).decode() for k, v in data.items()}

        until(lambda: node_cluster.node.node_ip in secret().get("rtmpPublishUrl", ""), 60, "the NodePort publish URL")
        encoder = Encoder(lambda: secret()["rtmpPublishUrl"])
        until(lambda: encoder.keep() and livestream_status(custom, ns, LS).get("broadcasting") is True, 120, "live")
        master = livestream_status(custom, ns, LS)["playback"]["hlsCmaf"]
        media = master.rsplit("/", 1)[0] + "/360p/index.m3u8"

        def play(seconds: float) -> list:
            out = node_cluster.exec(ns, "client", ["python3", "-c", PLAYER, media, str(seconds)], timeout=seconds + 60)
            return [json.loads(line) for line in out.splitlines() if line.startswith("[")]

        until(lambda: len(play(1)[-1][1]) >= 4, 120, "4 segments through the origin Service")
        sts = apps.read_namespaced_stateful_set(f"{LS}-origin", ns)
        before = sts.status.current_revision
        pods_before = {
            p.metadata.name: p.metadata.uid
            for p in core.list_namespaced_pod(
                ns, label_selector=f"app.kubernetes.io/instance={LS},app.kubernetes.io/component=origin"
            ).items
        }

        reloads: list = []
        player = threading.Thread(target=lambda: reloads.extend(play(150)))
        player.start()
        time.sleep(10)
        patch_spec(custom, ns, {"settingsOverride": {"dvr": {"durationSeconds": 180}}}, name=LS)

        def rolled() -> bool:
            s = apps.read_namespaced_stateful_set(f"{LS}-origin", ns).status
            return (
                s.update_revision != before
                and s.current_revision == s.update_revision
                and s.updated_replicas == 2
                and s.ready_replicas == 2
            )

        until(rolled, 240, "the origin StatefulSet rolled to the new template, both replicas Ready")
        pods_after = {
            p.metadata.name: p.metadata.uid
            for p in core.list_namespaced_pod(
                ns, label_selector=f"app.kubernetes.io/instance={LS},app.kubernetes.io/component=origin"
            ).items
        }
        assert set(pods_after) == set(pods_before) and not set(pods_after.values()) & set(pods_before.values())
        player.join(200)
        for name in pods_after:
            log = core.read_namespaced_pod_log(name, ns)
            print(
                f"----- {name}\n" + "\n".join(line for line in log.splitlines() if "onair.agent.origin" in line)[-6000:]
            )
        print("reloads:", json.dumps(reloads[:5]), json.dumps(reloads[-3:]))
        assert reloads, "the player got nothing"
        # One numbering: an msn always names the same segment, whichever replica answered.
        names: dict[str, str] = {}
        for _code, segs in reloads:
            for msn, uri in segs.items():
                assert names.setdefault(msn, uri) == uri, f"msn {msn} was {names[msn]}, then {uri}"
        # No outage, not even one reload: a replica that leaves drains (not ready, serving on) until
        # the endpoints and kube-proxy have dropped it.
        refused = [i for i, (code, _) in enumerate(reloads) if code != 200]
        print(f"{len(refused)} of {len(reloads)} reloads refused: {[reloads[i][0] for i in refused]}")
        assert not refused, f"reloads {refused} of {len(reloads)} failed: {[c for c, _ in reloads]}"
        edges = [max(int(m) for m in segs) for code, segs in reloads if code == 200 and segs]
        # Balanced between replicas a reload may land one segment behind the last, never further.
        assert all(b >= a - 1 for a, b in zip(edges, edges[1:])), f"the live edge went back: {edges}"
        assert edges[-1] - edges[0] >= 60, f"the live edge barely moved: {edges[0]} -> {edges[-1]}"
        for name in pods_after:
            log = core.read_namespaced_pod_log(name, ns)
            assert "DVR copied from the peer replica" in log, f"{name} did not copy its peer:\n{log[-3000:]}"
    finally:
        if encoder is not None:
            encoder.stop()
        uninstall_in_user_order(
            core,
            custom,
            livestream_ns=ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )
