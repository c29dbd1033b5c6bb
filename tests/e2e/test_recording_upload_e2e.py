"""A recording uploaded to S3 as the product runs it in onair dev's fallback runtime.

The operator renders the recorder's Deployment with the user's S3 Secret as an optional volume; the
pod runner (onair dev's stand-in for a kubelet) starts it as a real process with that volume and the
rewritten config. The Secret does not exist yet when recording starts: the recording still runs,
the Livestream says which Secret to create, and once the user creates it (the runner syncs Secret
volumes as the kubelet does) every part lands in a real SeaweedFS bucket.
"""

from __future__ import annotations

import base64
import secrets

import pytest
from kubernetes import client as k8s

from onair.api.conditions import RECORDING_UPLOAD_FAILING, RECORDINGS_UPLOADED
from tests.fixtures.media import wait_for
from tests.fixtures.podrunner import operator_with_podrunner, podrunner  # noqa: F401
from tests.fixtures.s3 import RECORDER_KEY, RECORDER_SECRET

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(400)]

LS = "taped"
BUCKET = "recordings"
SECRET = "recordings-s3"


def uploaded(status: dict) -> dict:
    return next((c for c in status.get("conditions") or () if c["type"] == RECORDINGS_UPLOADED), {})


def test_a_recording_reaches_the_bucket_once_the_users_secret_exists(
    operator_with_podrunner, podrunner, kube, namespace, publishers, seaweedfs
):  # noqa: F811
    seaweedfs.create_bucket(BUCKET)
    calltype = f"e2e-{secrets.token_hex(3)}"
    kube.create_calltype(
        calltype,
        settings={
            "ingest": {"protocols": ["rtmp"]},
            "broadcasting": {"mode": "disabled"},
            "recording": {
                "mode": "available",
                "storage": {
                    "s3": {
                        "endpoint": seaweedfs.endpoint,
                        "bucket": BUCKET,
                        "prefix": "dev",
                        "forcePathStyle": True,
                        "credentialsSecret": SECRET,
                    }
                },
            },
        },
    )

    def status() -> dict:
        return kube.livestream(namespace, LS).get("status") or {}

    def until_status(predicate, timeout: float, what: str) -> dict:
        try:
            return wait_for(lambda: (lambda s: s if predicate(s) else None)(status()), timeout, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nstatus: {status()}\nlogs:\n{podrunner.logs(namespace, LS, 30)}") from None

    try:
        kube.create_livestream(namespace, LS, {"callType": calltype, "phase": "live", "recording": True})
        until_status(
            lambda s: any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or ()),
            120,
            "Ready: every agent runs (the recorder without its S3 Secret)",
        )
        key = base64.b64decode(kube.core.read_namespaced_secret(f"{LS}-credentials", namespace).data["streamKey"])
        rtmp = wait_for(
            lambda: (podrunner.endpoints(namespace, LS) or {}).get("ingest", {}).get("rtmp"),
            30,
            what="the local RTMP push URL",
        )
        publishers.rtmp(f"{rtmp}/{key.decode()}", width=320, height=180, fps=15)
        until_status(lambda s: (s.get("recordingDurationSeconds") or 0) >= 4, 90, "4 s recorded")
        kube.patch_livestream(namespace, LS, {"spec": {"recording": False}})

        failing = until_status(
            lambda s: uploaded(s).get("reason") == RECORDING_UPLOAD_FAILING and s.get("recordings"),
            60,
            "uploads failing for want of the Secret",
        )
        message = uploaded(failing)["message"]
        assert "no S3 access key id" in message and f"Secret {namespace}/{SECRET}" in message, message

        kube.core.create_namespaced_secret(
            namespace,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name=SECRET, namespace=namespace),
                data={
                    "accessKeyId": base64.b64encode(RECORDER_KEY.encode()).decode(),
                    "secretAccessKey": base64.b64encode(RECORDER_SECRET.encode()).decode(),
                },
            ),
        )
        done = until_status(
            lambda s: uploaded(s).get("status") == "True", 120, "every recording file uploaded once the Secret exists"
        )
        [session] = done["recordings"]
        keys = set(seaweedfs.objects(BUCKET, f"dev/{namespace}/{LS}/"))
        assert keys == {
            p["object"][field][len(f"s3://{BUCKET}/") :] for p in session["parts"] for field in ("url", "playlist")
        } | {f"dev/{namespace}/{LS}/{session['session']}/{session['session']}.json"}, (
            "each part, its VOD playlist, the sidecar"
        )
        assert all(
            p["bytes"]
            == seaweedfs.objects(BUCKET, p["object"]["url"][len(f"s3://{BUCKET}/") :])[
                p["object"]["url"][len(f"s3://{BUCKET}/") :]
            ]["Size"]
            for p in session["parts"]
        )
    finally:
        kube.delete_calltype(calltype)
