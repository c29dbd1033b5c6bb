"""Recording objects on a real node, with the operator as a pod under the chart's RBAC: a finished
session becomes a Recording, deleting it deletes its files through the running recorder, the
Recording outlives its Livestream, and once the recorder is gone the kubelet runs the one-shot
pod that deletes the files from the recordings volume.

Timings are printed (run with -s).
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

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
GROUP, VERSION = "onair.dev", "v1alpha1"


class Node:
    def __init__(self, node_cluster, ns: str, op_ns: str, image: str) -> None:
        from kubernetes import client

        self.node_cluster = node_cluster
        self.core = node_cluster.core()
        self.custom = client.CustomObjectsApi(node_cluster.api)
        self.ns, self.op_ns, self.image = ns, op_ns, image
        self.encoder: Optional[subprocess.Popen] = None

    def status(self) -> dict:
        return livestream_status(self.custom, self.ns, LS)

    def recording(self, name: str) -> Optional[dict]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "recordings", name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, name: str) -> list:
        return self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items

    def diagnostics(self) -> str:
        operator = pod_logs(self.core, self.op_ns, "app.kubernetes.io/component=operator")
        return (
            f"{pod_problems(self.core, self.ns)}\n{pod_logs(self.core, self.ns, '')}\n--- operator\n{operator[-6000:]}"
        )

    def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=0.5, what=what)
        except BaseException:
            print(self.diagnostics())
            raise

    def push(self) -> None:
        if self.encoder is None or self.encoder.poll() is not None:
            data = self.core.read_namespaced_secret(f"{LS}-credentials", self.ns).data
            url = base64.b64decode(data["rtmpPublishUrl"]).decode()
            self.encoder = subprocess.Popen(
                ffmpeg_push("flv", url), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def stop_pushing(self) -> None:
        if self.encoder is not None and self.encoder.poll() is None:
            self.encoder.terminate()
            self.encoder.wait(10)

    def record(self, seconds: float) -> dict:
        """One session of about ``seconds``: the finished session as status.recordings lists it."""
        before = len(self.status().get("recordings") or [])
        patch_spec(self.custom, self.ns, {"recording": True})
        self.until(
            lambda: (
                self.push()
                or (
                    (s := self.status()).get("recording") is True
                    and (s.get("recordingDurationSeconds") or 0) >= seconds
                )
            ),
            120,
            f"{seconds} s recorded",
        )
        patch_spec(self.custom, self.ns, {"recording": False})
        status = self.until(
            lambda: len((s := self.status()).get("recordings") or []) == before + 1 and s, 60, "the session finished"
        )
        return status["recordings"][-1]

    def volume_dir(self, claim: str) -> Path:
        """Where local-path-provisioner keeps the claim's volume on this machine (the node's disk)."""
        pv = self.core.read_persistent_volume(
            self.core.read_namespaced_persistent_volume_claim(claim, self.ns).spec.volume_name
        )
        source = pv.spec.host_path or pv.spec.local
        return Path(source.path)

    def files_on_volume(self, claim: str) -> list[str]:
        """``ls`` of the recordings volume, from a pod that mounts it."""
        name = f"ls-{int(time.monotonic() * 1000) % 100000}"
        pod = restricted_pod(name, self.image, ["ls", "-1", "/recordings"])
        pod["spec"]["restartPolicy"] = "Never"
        pod["spec"]["volumes"] = [{"name": "r", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "r", "mountPath": "/recordings", "readOnly": True}]
        self.core.create_namespaced_pod(self.ns, pod)
        self.until(
            lambda: self.core.read_namespaced_pod(name, self.ns).status.phase in ("Succeeded", "Failed"),
            60,
            f"pod {name} listing the volume",
        )
        out = self.core.read_namespaced_pod_log(name, self.ns)
        self.core.delete_namespaced_pod(name, self.ns, grace_period_seconds=0)
        return [line for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def node(node_cluster, onair_image):
    core = node_cluster.core()
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ns = restricted_namespace(core, f"recordings-{suffix}")
    n = Node(node_cluster, ns, op_ns, onair_image.name)
    installed = False
    try:
        install_onair(node_cluster, onair_image, RELEASE, op_ns)
        installed = True
        n.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "livestreams",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Livestream",
                "metadata": {"name": LS},
                "spec": {
                    "callType": "development",
                    "phase": "live",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp"], "backup": False},
                        "broadcasting": {"mode": "disabled"},
                        "recording": {"mode": "available", "type": "origin"},
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        wait_pods_ready(core, ns, f"app.kubernetes.io/instance={LS}", 4, 240, "the Livestream's media pods")
        n.until(
            lambda: (
                node_cluster.node.node_ip
                in base64.b64decode(
                    core.read_namespaced_secret(f"{LS}-credentials", ns).data.get("rtmpPublishUrl", "")
                ).decode()
            ),
            60,
            "the publish URL on the node's NodePort",
        )
        yield n
    finally:
        n.stop_pushing()
        try:
            for rec in n.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "recordings")["items"]:
                n.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, "recordings", rec["metadata"]["name"], {"metadata": {"finalizers": None}}
                )
        except Exception as e:  # noqa: BLE001 - reported, teardown continues
            print(f"teardown: {e}")
        uninstall_in_user_order(
            core,
            n.custom,
            livestream_ns=ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )


def test_recordings_are_objects_whose_deletion_deletes_the_files_with_or_without_a_recorder(node):
    t0 = time.monotonic()
    first = node.record(3)
    second = node.record(3)
    node.stop_pushing()
    print(f"\n  two sessions recorded: {time.monotonic() - t0:.1f}s")
    for session in (first, second):
        rec = node.until(lambda: node.recording(session["name"]), 30, f"Recording {session['name']}")
        assert rec["spec"]["session"] == session["session"] and not rec["metadata"].get("ownerReferences")
        assert rec["spec"]["persistentVolumeClaim"] == f"{LS}-recordings"
    # A viewer in the cluster plays the first from the volume at the URL its Recording names: the
    # origin reads it from the recorder through the recorder's Service (live: no token needed).
    rec = node.until(
        lambda: (r := node.recording(first["name"])) and (r.get("status") or {}).get("playback", {}).get("parts") and r,
        30,
        "the first Recording's playback URLs",
    )
    assert rec["status"]["playback"]["reason"] == "ServedFromVolume", rec["status"]["playback"]
    url = rec["status"]["playback"]["parts"][0]["url"]
    fetch = (
        "import sys, urllib.request as u\n"
        "p = u.urlopen(sys.argv[1], timeout=20).read().decode()\n"
        "part = u.urlopen(u.Request(sys.argv[1].rsplit('/', 1)[0] + '/' + sys.argv[2], "
        "headers={'Range': 'bytes=0-99'}), timeout=20)\n"
        "print(p.splitlines()[0], 'VOD' in p, part.status, len(part.read()))\n"
    )
    viewer = restricted_pod(
        "vod-viewer", node.image, ["python3", "-c", fetch, url, rec["status"]["playback"]["parts"][0]["file"]]
    )
    viewer["spec"]["restartPolicy"] = "Never"
    node.core.create_namespaced_pod(node.ns, viewer)
    node.until(
        lambda: node.core.read_namespaced_pod("vod-viewer", node.ns).status.phase in ("Succeeded", "Failed"),
        60,
        "the viewer pod fetching the recording",
    )
    log = node.core.read_namespaced_pod_log("vod-viewer", node.ns)
    assert log.split() == ["#EXTM3U", "True", "206", "100"], log
    node.core.delete_namespaced_pod("vod-viewer", node.ns, grace_period_seconds=0)

    listed = node.custom.list_namespaced_custom_object(
        GROUP, VERSION, node.ns, "recordings", label_selector=f"onair.dev/livestream={LS}"
    )["items"]
    assert sorted(r["metadata"]["name"] for r in listed) == sorted([first["name"], second["name"]])
    files = node.files_on_volume(f"{LS}-recordings")
    assert f"{first['session']}.json" in files and f"{second['session']}.json" in files

    # Through the running recorder (the operator pod calls its agent API).
    t1 = time.monotonic()
    node.custom.delete_namespaced_custom_object(GROUP, VERSION, node.ns, "recordings", first["name"])
    node.until(lambda: node.recording(first["name"]) is None, 60, "the first Recording gone")
    print(f"  deleted through the recorder: {time.monotonic() - t1:.1f}s")
    node.until(
        lambda: [r["name"] for r in node.status().get("recordings") or ()] == [second["name"]],
        30,
        "the status without it",
    )
    files = node.files_on_volume(f"{LS}-recordings")
    assert not [f for f in files if f.startswith(first["session"])], files
    assert f"{second['session']}.json" in files

    # The Livestream goes; its Recording and the files stay.
    node.custom.delete_namespaced_custom_object(GROUP, VERSION, node.ns, "livestreams", LS)
    node.until(
        lambda: (
            not node.custom.list_namespaced_custom_object(GROUP, VERSION, node.ns, "livestreams")["items"]
            and not node.core.list_namespaced_pod(node.ns, label_selector=f"app.kubernetes.io/instance={LS}").items
        ),
        120,
        "the Livestream and its pods gone",
    )
    assert node.recording(second["name"])["metadata"].get("deletionTimestamp") is None
    assert f"{second['session']}.json" in node.files_on_volume(f"{LS}-recordings")

    # No recorder any more: the kubelet runs the operator's one-shot pod on the volume. First on a
    # volume directory the pod's user may not write to: the pod fails for real, the Recording says
    # why (condition and Warning Event), keeps its files, and a new pod retries.
    volume_dir = node.volume_dir(f"{LS}-recordings")
    mode = volume_dir.stat().st_mode & 0o7777
    volume_dir.chmod(0o555)
    try:
        t2 = time.monotonic()
        node.custom.delete_namespaced_custom_object(GROUP, VERSION, node.ns, "recordings", second["name"])
        cond = node.until(
            lambda: next(
                (
                    c
                    for c in (node.recording(second["name"]).get("status") or {}).get("conditions") or ()
                    if c["type"] == "MediaDeleted" and c["reason"] == "MediaDeletionFailed"
                ),
                None,
            ),
            120,
            "MediaDeletionFailed from the failed pod",
        )
        assert cond["status"] == "False" and "ermission denied" in cond["message"], cond
        # The Event is written apart from the condition: it may come a moment later.
        node.until(
            lambda: any(e.reason == "MediaDeletionFailed" and e.type == "Warning" for e in node.events(second["name"])),
            30,
            "a MediaDeletionFailed Warning Event",
        )
        print(f"  failed deletion pod reported: {time.monotonic() - t2:.1f}s")
    finally:
        volume_dir.chmod(mode)
    assert f"{second['session']}.json" in node.files_on_volume(f"{LS}-recordings")
    node.until(lambda: node.recording(second["name"]) is None, 180, "the second Recording gone after a retry")
    print(f"  deleted by the one-shot pod: {time.monotonic() - t2:.1f}s")
    deleted = [e for e in node.events(second["name"]) if e.reason == "MediaDeleted"]
    assert deleted and second["session"] in deleted[0].message and "-delete-media" in deleted[0].message, [
        (e.reason, e.message) for e in node.events(second["name"])
    ]
    files = node.files_on_volume(f"{LS}-recordings")
    assert not [f for f in files if f.startswith(second["session"])], files
    node.until(
        lambda: (
            not node.core.list_namespaced_pod(
                node.ns, label_selector="app.kubernetes.io/component=recording-deletion"
            ).items
        ),
        30,
        "the deletion pod gone",
    )
