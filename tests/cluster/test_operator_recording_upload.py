"""Recording uploads as the user sees them: the RecordingsUploaded condition and its Events.

A real recorder (real ffmpeg) uploads to a real S3 store (SeaweedFS) with a key the store refuses;
the operator, polling it as in a cluster, says so on the Livestream, naming the user's Secret, and
once the Secret is corrected (the kubelet rewrites the mounted files; here the test does) the
uploads go through and the condition clears, with nothing lost.
"""

from __future__ import annotations

import base64
import secrets

import pytest
from kubernetes import client as k8s

from onair.api.agent import S3UploadConfig
from onair.api.conditions import RECORDING_UPLOAD_FAILING, RECORDING_UPLOAD_RECOVERED, RECORDINGS_UPLOADED
from tests.cluster.test_operator_webhooks import Receiver
from tests.fixtures.cluster import wait_for
from tests.fixtures.s3 import RECORDER_KEY, RECORDER_SECRET, write_credentials

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.timeout(240)]

SMALL = dict(width=320, height=180, fps=15)
BUCKET = "recordings"
SECRET = "recordings-s3"


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name)
    yield name
    kube.delete_calltype(name)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def uploaded(status: dict) -> dict:
    return next((c for c in status.get("conditions") or () if c["type"] == RECORDINGS_UPLOADED), {})


def user_secret(namespace: str, secret_key: str) -> k8s.V1Secret:
    data = {"accessKeyId": RECORDER_KEY, "secretAccessKey": secret_key}
    return k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=SECRET, namespace=namespace),
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    )


def test_refused_credentials_are_a_condition_and_a_warning_until_the_secret_is_fixed(
    routes, kube, calltype, namespace, ingest_agent, recorder_agent, publishers, seaweedfs, receiver, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    kube.core.create_namespaced_secret(namespace, user_secret(namespace, "not-the-secret"))
    kube.core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="hook-signing"), string_data={"secret": "s3cret-for-signing"}),
    )
    mounted = tmp_path / "s3-secret"  # what the kubelet mounts from the Secret
    write_credentials(mounted, secret_key="not-the-secret")
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/up")
    recorder = recorder_agent.start(
        source_url=main.read_url,
        output_dir=tmp_path / "recordings",
        livestream=f"{namespace}/up",
        s3=S3UploadConfig(
            endpoint=seaweedfs.endpoint,
            bucket=BUCKET,
            prefix="shows",
            force_path_style=True,
            access_key_id_file=str(mounted / "accessKeyId"),
            secret_access_key_file=str(mounted / "secretAccessKey"),
            request_timeout_seconds=5,
            retry_max_seconds=2,
        ),
    )
    routes.route(namespace, "up", "ingest", main)
    routes.route(namespace, "up", "recorder", recorder)
    s3 = {
        "endpoint": seaweedfs.endpoint,
        "bucket": BUCKET,
        "prefix": "shows",
        "forcePathStyle": True,
        "credentialsSecret": SECRET,
    }
    hooks = [
        {
            "name": "backend",
            "url": receiver.url,
            "signingSecret": {"name": "hook-signing"},
            "events": ["recording_failed", "recording_ready"],
        }
    ]
    kube.create_livestream(
        namespace,
        "up",
        {
            "callType": calltype,
            "phase": "live",
            "recording": True,
            "settingsOverride": {"recording": {"storage": {"s3": s3}}, "webhooks": hooks},
        },
    )
    # The operator renders what this test's recorder runs with: the Secret's files, the same target.
    config = wait_for(lambda: kube.configmap_json(namespace, "up-recorder"), 30, what="the recorder's config")
    assert config["s3"]["accessKeyIdFile"] == "/etc/onair/s3/accessKeyId" and "not-the-secret" not in str(config)
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(
        namespace, "up", lambda s: (s.get("recordingDurationSeconds") or 0) >= 4, timeout=60, what="4 s recorded"
    )
    kube.patch_livestream(namespace, "up", {"spec": {"recording": False}})

    failing = kube.wait_status(
        namespace,
        "up",
        lambda s: uploaded(s).get("reason") == RECORDING_UPLOAD_FAILING,
        timeout=60,
        what="uploads failing",
    )["status"]
    message = uploaded(failing)["message"]
    assert uploaded(failing)["status"] == "False"
    assert "refused the credentials" in message and "SignatureDoesNotMatch" in message, message
    assert f"Secret {namespace}/{SECRET}" in message and "Nothing is lost" in message
    assert "not-the-secret" not in message
    warning = wait_for(
        lambda: next((e for e in kube.events(namespace, "up") if e["reason"] == RECORDING_UPLOAD_FAILING), None),
        30,
        what="the RecordingUploadFailing Event",
    )
    assert warning["type"] == "Warning" and f"Secret {namespace}/{SECRET}" in warning["message"]
    # The backend hears it too: the recording failed (for now), with the same words as the Event.
    [failed] = wait_for(
        lambda: [e["data"] for e in receiver.delivered() if e["data"]["event"] == "recording_failed"] or None,
        30,
        what="the recording_failed webhook",
    )
    assert failed["reason"] == RECORDING_UPLOAD_FAILING and failed["getstreamType"] == "call.recording_failed"
    assert "refused the credentials" in failed["message"] and f"Secret {namespace}/{SECRET}" in failed["message"]
    assert all(f.name.endswith(".mp4") for f in (tmp_path / "recordings").glob("*.mp4")) and list(
        (tmp_path / "recordings").glob("*.mp4")
    ), "the parts wait on the volume"

    # The user corrects the Secret; the kubelet rewrites the mounted files; no restart.
    kube.core.replace_namespaced_secret(SECRET, namespace, user_secret(namespace, RECORDER_SECRET))
    write_credentials(mounted)
    done = kube.wait_status(
        namespace,
        "up",
        lambda s: uploaded(s).get("status") == "True" and s.get("recordings"),
        timeout=90,
        what="every recording file uploaded",
    )["status"]
    assert uploaded(done)["reason"] == RECORDINGS_UPLOADED and f"s3://{BUCKET}/shows/" in uploaded(done)["message"]
    wait_for(
        lambda: RECORDING_UPLOAD_RECOVERED in kube.event_reasons(namespace, "up"),
        30,
        what="the RecordingUploadRecovered Event",
    )
    [session] = done["recordings"]
    keys = set(seaweedfs.objects(BUCKET, "shows/"))
    for part in session["parts"]:
        assert part["object"]["url"].startswith(f"s3://{BUCKET}/shows/{namespace}/up/{session['session']}/")
        assert part["object"]["url"][len(f"s3://{BUCKET}/") :] in keys
        assert part["object"]["playlist"][len(f"s3://{BUCKET}/") :] in keys  # its VOD playlist
    assert len(keys) == 2 * len(session["parts"]) + 1, keys  # each part, its playlist, and the sidecar
    assert kube.event_reasons(namespace, "up").count(RECORDING_UPLOAD_FAILING) == 1
    wait_for(
        lambda: any(e["data"]["event"] == "recording_ready" for e in receiver.delivered()),
        30,
        what="the recording_ready webhook",
    )
    assert [e["data"]["event"] for e in receiver.delivered()].count("recording_failed") == 1


def test_an_incomplete_s3_target_stalls_the_livestream_with_what_is_missing(routes, kube, namespace):
    name = f"ct-{secrets.token_hex(3)}"
    # The CallType names the store; the Livestream forgets the bucket.
    kube.create_calltype(
        name,
        settings={
            "recording": {"storage": {"s3": {"endpoint": "https://s3.example.org", "credentialsSecret": SECRET}}}
        },
    )
    try:
        kube.create_livestream(
            namespace,
            "nobucket",
            {"callType": name, "settingsOverride": {"recording": {"storage": {"s3": {"prefix": "shows"}}}}},
        )
        stalled = kube.wait_status(
            namespace,
            "nobucket",
            lambda s: any(
                c["type"] == "Stalled" and c["reason"] == "InvalidRecordingStorage" for c in s.get("conditions") or ()
            ),
            timeout=30,
            what="stalled on the incomplete storage",
        )["status"]
        message = next(c for c in stalled["conditions"] if c["type"] == "Stalled")["message"]
        assert "recording.storage.s3 needs bucket" in message and "settingsOverride" in message, message
        wait_for(
            lambda: "InvalidRecordingStorage" in kube.event_reasons(namespace, "nobucket"),
            30,
            what="the InvalidRecordingStorage Event",
        )
        kube.patch_livestream(
            namespace,
            "nobucket",
            {"spec": {"settingsOverride": {"recording": {"storage": {"s3": {"bucket": BUCKET}}}}}},
        )
        done = kube.wait_status(
            namespace,
            "nobucket",
            lambda s: not any(c["type"] == "Stalled" for c in s.get("conditions") or ()),
            timeout=30,
            what="no longer stalled",
        )["status"]
        assert done["effectiveSettings"]["recording"]["storage"]["s3"]["bucket"] == BUCKET
        config = wait_for(lambda: kube.configmap_json(namespace, "nobucket-recorder"), 30, what="the recorder's config")
        assert config["s3"]["bucket"] == BUCKET and config["s3"]["endpoint"] == "https://s3.example.org"
    finally:
        kube.delete_calltype(name)
