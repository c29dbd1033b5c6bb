"""Recordings in onair dev's process runtime: every agent a real process started by the pod runner
from the operator's objects, and the one-shot pod that deletes a Recording's files once its
Livestream is gone run by the same runner on the same local volume (the runner's part is its own;
the kubelet's is tested on the node in tests/kube/test_recordings_on_node.py)."""

from __future__ import annotations

import base64
import secrets

import httpx
import pytest

from onair.localcluster import loopback
from tests.fixtures.media import wait_for
from tests.fixtures.podrunner import operator_with_podrunner, podrunner  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(600)]

LS = "show"
GROUP, VERSION = "onair.dev", "v1alpha1"
SOURCE = dict(width=320, height=180, fps=15)


def recording(kube, namespace: str, name: str):
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_recording_outlives_its_livestream_and_its_deletion_deletes_the_files(
    operator_with_podrunner, podrunner, kube, namespace, publishers
):
    calltype = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(
        calltype,
        settings={
            "ingest": {"protocols": ["rtmp"]},
            "broadcasting": {"mode": "disabled"},
            "recording": {"mode": "available"},
        },
    )
    try:
        kube.create_livestream(namespace, LS, {"callType": calltype, "phase": "live"})

        def diagnostics() -> str:
            return f"\n{podrunner.logs(namespace)}\nstatus: {kube.livestream(namespace, LS).get('status')}"

        try:
            ingest = wait_for(
                lambda: (podrunner.endpoints(namespace, LS) or {}).get("ingest", {}).get("rtmp"),
                90,
                what="a local ingest URL",
            )
            key = base64.b64decode(kube.core.read_namespaced_secret(f"{LS}-credentials", namespace).data["streamKey"])
            encoder = publishers.rtmp(f"{ingest}/{key.decode()}", **SOURCE)
            kube.wait_status(namespace, LS, lambda s: s.get("live") is True, timeout=60, what="live")
            kube.patch_livestream(namespace, LS, {"spec": {"recording": True}})
            kube.wait_status(
                namespace,
                LS,
                lambda s: (s.get("recordingDurationSeconds") or 0) >= 3 and s["recording"],
                timeout=60,
                what="3 s recorded",
            )
            kube.patch_livestream(namespace, LS, {"spec": {"recording": False}})
            status = kube.wait_status(
                namespace, LS, lambda s: s.get("recordings"), timeout=60, what="the finished session"
            )["status"]
            encoder.stop()
        except BaseException:
            print(diagnostics())
            raise
        [session] = status["recordings"]
        name = session["name"]
        wait_for(lambda: recording(kube, namespace, name), 30, what=f"Recording {name}")
        [volume] = (podrunner.root / "namespaces" / namespace / "volumes").glob(f"{LS}-recordings-*")
        assert sorted(p.name for p in volume.glob(f"{session['session']}*")), "files on the local volume"

        # No object storage: the Livestream's origin serves it from the volume (its recorder, through
        # the recorder's Service), at the URL the Recording names; live, so without a token.
        playback = wait_for(
            lambda: (recording(kube, namespace, name).get("status") or {}).get("playback"), 30, what="status.playback"
        )
        assert playback["reason"] == "ServedFromVolume", playback
        first = playback["parts"][0]["url"]
        assert "/recordings/" in first and first.endswith(".m3u8"), first
        # The origin Service's address in the URL, as the runner maps Services to local ports.
        services = podrunner._ports.ready_services()
        local = loopback.local_endpoints({"playback": {"part": first}}, services, namespace)["playback"]["part"]
        listing = httpx.get(local, timeout=10)
        assert listing.status_code == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in listing.text, (local, listing.text[:300])
        part = playback["parts"][0]["file"]
        media = httpx.get(local.rsplit("/", 1)[0] + "/" + part, headers={"Range": "bytes=0-99"}, timeout=10)
        assert media.status_code == 206 and media.content == (volume / part).read_bytes()[:100]

        kube.delete_livestream(namespace, LS)
        wait_for(lambda: not kube.livestream_exists(namespace, LS), 60, what="the Livestream gone")
        wait_for(lambda: not podrunner.pods(namespace, LS), 120, what="its agents stopped")
        assert recording(kube, namespace, name)["metadata"].get("deletionTimestamp") is None

        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", name)
        try:
            wait_for(lambda: recording(kube, namespace, name) is None, 60, what="the Recording gone")
        except BaseException:
            print(diagnostics(), recording(kube, namespace, name))
            raise
        assert not list(volume.glob(f"{session['session']}*")), "its files are deleted"
        events = kube.events(namespace, name)
        assert any(e["reason"] == "MediaDeleted" and f"{name}-delete-media" in e["message"] for e in events), events
    finally:
        kube.delete_calltype(calltype)
