"""The product as a platform engineer runs it: the onair image imported into a real node's
containerd, the chart installed with helm into a namespace enforcing the `restricted` Pod Security
Standard, the operator running as a pod under the chart's own ServiceAccount and RBAC, and one
Livestream whose real media pods (ingest, transcoder, origin, recorder) start on the node, bind
their PVCs through the node's provisioner, take an RTMP push from an encoder pod inside the
cluster, and serve HLS that a client pod downloads through the origin's Service DNS name.

Kept small for 2 cores: one Livestream, a 360p source with a one-rung ladder, HLS CMAF only.
Timings of each step are printed (run with -s to see them).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.kube import (
    ROLES,
    SMALL,
    ffmpeg_push,
    helm,
    livestream_status,
    patch_spec,
    pod_logs,
    pod_problems,
    policy_allows,
    restricted_namespace,
    restricted_pod,
    uninstall_in_user_order,
    wait_pods_ready,
)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "onair"


def test_chart_operator_and_a_livestream_run_on_the_node(node_cluster, onair_image):
    from kubernetes import client

    core = node_cluster.core()
    custom = client.CustomObjectsApi(node_cluster.api)
    timings: dict[str, float] = {}
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ls_ns = restricted_namespace(core, f"streams-{suffix}")
    installed = False
    try:
        t0 = time.monotonic()
        node_cluster.node.ctr("images", "import", str(onair_image.archive), timeout=300)
        timings["image import"] = time.monotonic() - t0
        assert onair_image.name in node_cluster.node.ctr("images", "list", "--quiet").split()

        resources = []
        for role in ROLES:
            for part, quantities in SMALL.items():
                for k, v in quantities.items():
                    resources += ["--set-string", f"livestreams.resources.{role}.{part}.{k}={v}"]
        t0 = time.monotonic()
        helm(
            "install",
            RELEASE,
            str(ROOT / "charts/onair"),
            "--namespace",
            op_ns,
            "--set",
            f"image.repository={onair_image.repository}",
            "--set",
            f"image.tag={onair_image.tag}",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "livestreams.statusPollIntervalSeconds=1",
            # Encoders outside the cluster push to the node's address.
            "--set",
            "livestreams.ingest.serviceType=NodePort",
            *resources,
            kubeconfig=node_cluster.kubeconfig,
        )
        installed = True
        selector = "app.kubernetes.io/component=operator"
        [op_pod] = wait_pods_ready(core, op_ns, selector, 1, 120, "operator")
        timings["helm install -> operator Ready"] = time.monotonic() - t0
        assert op_pod.spec.service_account_name == f"{RELEASE}-operator"

        t0 = time.monotonic()
        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ls_ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": "show"},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp", "srt"]},
                        "broadcasting": {
                            "hls": {"qualityTracks": ["360p"]},
                            "segmentDurationSeconds": 1,
                            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
                        },
                        "dvr": {"durationSeconds": 60},
                        "recording": {"mode": "available", "storage": {"size": "1Gi"}},
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        pods = wait_pods_ready(
            core, ls_ns, "app.kubernetes.io/instance=show", len(ROLES), 240, "the Livestream's media pods"
        )
        timings["Livestream apply -> all pods Ready"] = time.monotonic() - t0
        by_role = {p.metadata.labels.get("onair.dev/role"): p for p in pods}
        assert set(by_role) == set(ROLES), sorted(by_role)
        claims = core.list_namespaced_persistent_volume_claim(ls_ns).items
        assert claims and all(c.status.phase == "Bound" for c in claims), [
            (c.metadata.name, c.status.phase) for c in claims
        ]

        status = wait_for(
            lambda: (s := livestream_status(custom, ls_ns, "show")).get("credentialsSecret") and s,
            timeout=30,
            what="status.credentialsSecret",
        )
        # The URLs the owner is given are the ones encoders outside dial: the node's address and
        # the nodePorts Kubernetes allocated to the ingest Service.
        svc = core.read_namespaced_service("show-ingest", ls_ns)
        assert svc.spec.type == "NodePort"
        node_ports = {p.name: p.node_port for p in svc.spec.ports}
        outside_host = f"{node_cluster.node.node_ip}:{node_ports['rtmp']}"

        def secret_with_outside_urls():
            got = core.read_namespaced_secret(status["credentialsSecret"], ls_ns)
            return got if outside_host in base64.b64decode(got.data["rtmpPublishUrl"]).decode() else None

        secret = wait_for(secret_with_outside_urls, timeout=30, what=f"publish URLs naming {outside_host}")
        key = base64.b64decode(secret.data["streamKey"]).decode()
        outside = base64.b64decode(secret.data["rtmpPublishUrl"]).decode()
        assert outside == f"rtmp://{outside_host}/live/{key}", outside
        assert livestream_status(custom, ls_ns, "show")["ingest"]["rtmp"].startswith(f"rtmp://{outside_host}/")
        # Inside the cluster the Service name works too.
        publish = f"rtmp://show-ingest.{ls_ns}.svc:1935/live/{key}"

        # The encoder: ffmpeg of the onair image, in its own pod, pushing through the Service name.
        t0 = time.monotonic()
        core.create_namespaced_pod(ls_ns, restricted_pod("encoder", onair_image.name, ffmpeg_push("flv", publish)))
        try:
            wait_for(
                lambda: livestream_status(custom, ls_ns, "show").get("live") is True,
                timeout=90,
                interval=0.5,
                what="status.live after the encoder pod's RTMP push",
            )
        except BaseException:
            print(
                pod_problems(core, ls_ns),
                pod_logs(core, ls_ns, "app=encoder"),
                pod_logs(core, ls_ns, "app.kubernetes.io/instance=show"),
                json.dumps(livestream_status(custom, ls_ns, "show"), indent=1, default=str),
            )
            raise
        timings["push -> status.live"] = time.monotonic() - t0

        hls = wait_for(
            lambda: (livestream_status(custom, ls_ns, "show").get("playback") or {}).get("hlsCmaf"),
            timeout=30,
            what="status.playback.hlsCmaf",
        )
        assert f"show-origin.{ls_ns}.svc" in hls, hls
        # A viewer inside the cluster: follows the master playlist to a media playlist and
        # downloads one segment, through the origin Service's DNS name.
        fetch = (
            "import sys, time, urllib.request, urllib.parse\n"
            "def get(u):\n"
            "    with urllib.request.urlopen(u, timeout=5) as r: return r.read()\n"
            "url = sys.argv[1]\n"
            "deadline = time.monotonic() + 60\n"
            "while True:\n"
            "    try:\n"
            "        master = get(url).decode()\n"
            "        media = urllib.parse.urljoin(url, [l for l in master.splitlines() if l and not l.startswith('#')][0])\n"
            "        playlist = get(media).decode()\n"
            "        seg = [l for l in playlist.splitlines() if l and not l.startswith('#')]\n"
            "        data = get(urllib.parse.urljoin(media, seg[-1]))\n"
            "        print(len(data), seg[-1]); break\n"
            "    except Exception as e:\n"
            "        if time.monotonic() > deadline: print('FAILED', repr(e)); sys.exit(1)\n"
            "        time.sleep(0.5)\n"
        )
        core.create_namespaced_pod(ls_ns, restricted_pod("viewer", onair_image.name, ["sleep", "600"]))
        node_cluster.wait_running(ls_ns, "viewer", timeout=60)
        out = node_cluster.exec(ls_ns, "viewer", ["python3", "-c", fetch, hls], timeout=90)
        timings["push -> first HLS segment downloaded"] = time.monotonic() - t0
        size = int(out.split()[0])
        assert size > 1000, out

        # The player page, and the hls.js it loads, from the same origin.
        player = (livestream_status(custom, ls_ns, "show").get("playback") or {}).get("player")
        assert player, livestream_status(custom, ls_ns, "show").get("playback")
        page = (
            "import re, sys, urllib.request, urllib.parse\n"
            "url = sys.argv[1]\n"
            "html = urllib.request.urlopen(url, timeout=5).read().decode()\n"
            'srcs = [urllib.parse.urljoin(url, s) for s in re.findall(r\'src="([^"]+\\.js)"\', html)]\n'
            "print(len(html), *[f'{s} {len(urllib.request.urlopen(s, timeout=5).read())}' for s in srcs])\n"
        )
        out = node_cluster.exec(ls_ns, "viewer", ["python3", "-c", page, player], timeout=30)
        assert "hls.min.js" in out and int(out.split()[-1]) > 100_000, out

        # The NetworkPolicies the operator made, judged against the real pods (the node's bridge
        # plugin does not enforce them; Calico or Cilium would): the operator pod reaches every
        # agent, encoders the ingest, viewers the origin's playback port and nothing private.
        ser = node_cluster.api.sanitize_for_serialization
        policies = [
            ser(p) for p in client.NetworkingV1Api(node_cluster.api).list_namespaced_network_policy(ls_ns).items
        ]
        assert policies
        live_pods = {
            p.metadata.labels.get("onair.dev/role"): ser(p)
            for p in core.list_namespaced_pod(ls_ns, label_selector="app.kubernetes.io/instance=show").items
        }
        operator_pod = ser(core.list_namespaced_pod(op_ns, label_selector=selector).items[0])
        viewer = ser(core.read_namespaced_pod("viewer", ls_ns))
        namespaces = {ns: ser(core.read_namespace(ns)) for ns in (op_ns, ls_ns)}
        for role, pod in live_pods.items():
            assert policy_allows(policies, pod, "agent", operator_pod, namespaces[op_ns]), (
                f"the operator pod may not reach the {role} agent:\n{json.dumps(policies, indent=1)}"
            )
            assert not policy_allows(policies, pod, "agent", viewer, namespaces[ls_ns]), (
                f"any pod may reach the {role} agent API"
            )
        assert policy_allows(policies, live_pods["ingest"], "rtmp", viewer, namespaces[ls_ns])
        assert policy_allows(policies, live_pods["origin"], "http", viewer, namespaces[ls_ns])
        assert policy_allows(policies, live_pods["origin"], "upload", live_pods["transcoder"], namespaces[ls_ns])
        assert not policy_allows(policies, live_pods["origin"], "upload", viewer, namespaces[ls_ns])

        # A recording on the recordings PVC (written as the image's user through fsGroup).
        t0 = time.monotonic()
        patch_spec(custom, ls_ns, {"recording": True})
        wait_for(
            lambda: (
                (s := livestream_status(custom, ls_ns, "show")).get("recording") is True
                and (s.get("recordingDurationSeconds") or 0) >= 2
            ),
            timeout=60,
            interval=0.5,
            what="status.recording with recorded seconds",
        )
        patch_spec(custom, ls_ns, {"recording": False})
        recordings = wait_for(
            lambda: livestream_status(custom, ls_ns, "show").get("recordings"),
            timeout=60,
            interval=0.5,
            what="status.recordings after stopping the recording",
        )
        parts = recordings[-1]["parts"]
        assert parts and all(p["bytes"] > 0 for p in parts), recordings
        timings["recording on -> finished recording in status"] = time.monotonic() - t0

        # An encoder outside the cluster: the host pushes to the ingest's NodePort on the node.
        core.delete_namespaced_pod("encoder", ls_ns, grace_period_seconds=0)
        wait_for(
            lambda: livestream_status(custom, ls_ns, "show").get("live") is False,
            timeout=60,
            interval=0.5,
            what="status.live false once the encoder pod is gone",
        )
        t0 = time.monotonic()
        host_encoder = subprocess.Popen(
            ffmpeg_push("flv", outside), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(
                lambda: host_encoder.poll() is None and livestream_status(custom, ls_ns, "show").get("live") is True,
                timeout=60,
                interval=0.5,
                what=f"status.live from the host's push to {outside}",
            )
            timings["host push via NodePort -> status.live"] = time.monotonic() - t0
        finally:
            host_encoder.terminate()
            _, err = host_encoder.communicate(timeout=10)
        assert "Error" not in (err or ""), err
        wait_for(
            lambda: livestream_status(custom, ls_ns, "show").get("live") is False,
            timeout=60,
            interval=0.5,
            what="status.live false once the host encoder stopped",
        )

        # SRT (UDP through the Service) from an encoder pod.
        srt_outside = base64.b64decode(secret.data["srtPublishUrl"]).decode()
        srt_host = f"{node_cluster.node.node_ip}:{node_ports['srt']}"
        assert srt_outside.startswith(f"srt://{srt_host}?"), srt_outside
        srt = srt_outside.replace(srt_host, f"show-ingest.{ls_ns}.svc:9998", 1)
        t0 = time.monotonic()
        core.create_namespaced_pod(ls_ns, restricted_pod("srt-encoder", onair_image.name, ffmpeg_push("mpegts", srt)))
        try:
            wait_for(
                lambda: livestream_status(custom, ls_ns, "show").get("live") is True,
                timeout=60,
                interval=0.5,
                what="status.live after the encoder pod's SRT push",
            )
        except BaseException:
            print(
                pod_problems(core, ls_ns),
                pod_logs(core, ls_ns, "app=srt-encoder"),
                pod_logs(core, ls_ns, "app.kubernetes.io/instance=show"),
            )
            raise
        timings["SRT push from a pod -> status.live"] = time.monotonic() - t0
        core.delete_namespaced_pod("srt-encoder", ls_ns, grace_period_seconds=0)

        logs = pod_logs(core, op_ns, selector)
        assert not re.search(r"Forbidden|Traceback|\(403\)", logs), (
            f"the operator hit missing RBAC or crashed in a handler:\n{logs}"
        )

        # The operator pod replaced (a node drain, an upgrade): the new one picks the Livestream up.
        t0 = time.monotonic()
        generation_seen = livestream_status(custom, ls_ns, "show").get("observedGeneration")
        core.delete_namespaced_pod(op_pod.metadata.name, op_ns)
        [new_op] = wait_pods_ready(core, op_ns, selector, 1, 90, "the replacement operator pod")
        assert new_op.metadata.name != op_pod.metadata.name
        patch_spec(custom, ls_ns, {"displayName": "after the operator restart"})
        wait_for(
            lambda: (livestream_status(custom, ls_ns, "show").get("observedGeneration") or 0) > (generation_seen or 0),
            timeout=60,
            interval=0.5,
            what="the replacement operator reconciling a spec change",
        )
        timings["operator pod replaced -> reconciling again"] = time.monotonic() - t0

        # Nothing restarted behind our back (a liveness probe killing an agent, an OOM kill).
        restarted = {
            p.metadata.name: cs.restart_count
            for ns in (ls_ns, op_ns)
            for p in core.list_namespaced_pod(ns).items
            for cs in p.status.container_statuses or []
            if cs.restart_count
        }
        assert not restarted, f"containers restarted: {restarted}\n{pod_problems(core, ls_ns)}"
        warnings = [
            f"{e.involved_object.kind}/{e.involved_object.name} {e.reason}: {e.message}"
            for ns in (ls_ns, op_ns)
            for e in core.list_namespaced_event(ns).items
            if e.type == "Warning"
        ]
        print("Warning Events:\n  " + "\n  ".join(warnings))
        # The operator's Events reach the user (its RBAC allows creating them).
        assert any(w.startswith("Livestream/show IngestStopped") for w in warnings), warnings

        logs = pod_logs(core, op_ns, selector)
        assert not re.search(r"Forbidden|Traceback|\(403\)", logs), (
            f"the operator hit missing RBAC or crashed in a handler:\n{logs}"
        )

        # Deleting the Livestream removes everything the operator made for it but the recordings.
        custom.delete_namespaced_custom_object("onair.dev", "v1alpha1", ls_ns, "livestreams", "show")
        wait_for(
            lambda: not custom.list_namespaced_custom_object("onair.dev", "v1alpha1", ls_ns, "livestreams")["items"],
            timeout=60,
            what="Livestream deleted (finalizer released by the operator pod)",
        )
        apps = client.AppsV1Api(node_cluster.api)
        owned = "app.kubernetes.io/instance=show"
        wait_for(
            lambda: (
                not apps.list_namespaced_deployment(ls_ns, label_selector=owned).items
                and not core.list_namespaced_service(ls_ns, label_selector=owned).items
                and not core.list_namespaced_pod(ls_ns, label_selector=owned).items
            ),
            timeout=60,
            what="the Livestream's Deployments, Services and pods gone",
        )
        left = sorted(c.metadata.name for c in core.list_namespaced_persistent_volume_claim(ls_ns).items)
        assert left == ["show-recordings"], left

        # A Livestream whose recorder cannot start (its recordings volume names a StorageClass the
        # cluster does not have): the Ready condition says why, as `kubectl describe pod` would.
        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ls_ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": "stuck"},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp"]},
                        "broadcasting": {"mode": "disabled"},
                        "recording": {"mode": "available", "storage": {"storageClassName": "no-such-class"}},
                    },
                },
            },
        )

        def ready_message() -> Optional[str]:
            conds = {c["type"]: c for c in livestream_status(custom, ls_ns, "stuck").get("conditions") or ()}
            msg = (conds.get("Ready") or {}).get("message") or ""
            return msg if "recorder (pod stuck-recorder-" in msg else None

        try:
            message = wait_for(ready_message, timeout=90, interval=0.5, what="Ready naming the recorder pod's problem")
        except BaseException:
            print(json.dumps(livestream_status(custom, ls_ns, "stuck").get("conditions"), indent=1))
            raise
        assert "cannot be scheduled" in message and "PersistentVolumeClaim" in message, message
        custom.delete_namespaced_custom_object("onair.dev", "v1alpha1", ls_ns, "livestreams", "stuck")
        wait_for(
            lambda: not custom.list_namespaced_custom_object("onair.dev", "v1alpha1", ls_ns, "livestreams")["items"],
            timeout=60,
            what="Livestream stuck deleted",
        )
    finally:
        print("\n" + "\n".join(f"  {k}: {v:.1f}s" for k, v in timings.items()))
        uninstall_in_user_order(
            core,
            custom,
            livestream_ns=ls_ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )
