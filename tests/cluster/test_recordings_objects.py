"""Recording objects on a real kube-apiserver, from a real recorder agent: one per finished session,
named in the Livestream's status, updated when a part is uploaded, outliving the Livestream, and
deleting one deletes its media (through the recorder, or a one-shot pod once the recorder is gone),
with a condition and an Event whenever that cannot happen.

The operator runs in-process (the session's), the recorder is a real agent process routed to the
Livestream; this tier has no kubelet, so it checks the deletion pod the operator creates and the
condition while it waits (the pod runs, fails and succeeds on the real node: tests/kube).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import condition

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.timeout(240)]

GROUP, VERSION = "onair.dev", "v1alpha1"
SMALL = dict(width=320, height=180, fps=15)
FINALIZER = "onair.dev/finalizer"


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"recording": {"mode": "available"}})
    yield name
    kube.delete_calltype(name)


def recordings(kube, namespace: str, selector: str = "") -> list[dict]:
    return kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", label_selector=selector)[
        "items"
    ]


def recording(kube, namespace: str, name: str):
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete_recording(kube, namespace: str, name: str) -> None:
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", name)


def delete_without_finalizer(kube, namespace: str, name: str) -> None:
    """Remove the finalizer, then delete, as a user forcing a deletion does. The operator puts its
    finalizer back as soon as it sees the object without it; the delete is conditional on the
    version this patch made, so it only ever deletes the object without the finalizer (409: again)."""
    for _ in range(20):
        patched = kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "recordings", name, {"metadata": {"finalizers": None}}
        )
        try:
            kube.custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "recordings",
                name,
                body={"preconditions": {"resourceVersion": patched["metadata"]["resourceVersion"]}},
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError(f"recording {name}: the finalizer came back before every one of 20 deletes")


def start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path, name="show"):
    out = tmp_path / f"{name}-recordings"
    recorder = recorder_agent.start(source_url=rtmp_source.read_url, output_dir=out, livestream=f"{namespace}/{name}")
    routes.route(namespace, name, "recorder", recorder)
    kube.create_livestream(namespace, name, {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, name)
    return recorder


def record_session(kube, namespace, name, recorder, publishers, rtmp_source, seconds: float = 2) -> dict:
    """Record about ``seconds`` through spec.recording true/false: the finished session as the
    Livestream's status lists it."""
    before = len((kube.livestream(namespace, name).get("status") or {}).get("recordings") or [])
    publisher = publishers.rtmp(rtmp_source.publish_url, **SMALL)
    kube.patch_livestream(namespace, name, {"spec": {"recording": True}})
    recorder.wait_status(lambda s: s["durationSeconds"] >= seconds, 40, f"{seconds} s recorded")
    kube.patch_livestream(namespace, name, {"spec": {"recording": False}})
    status = kube.wait_status(
        namespace,
        name,
        lambda s: len(s.get("recordings") or []) == before + 1,
        timeout=30,
        what="the finished session listed",
    )["status"]
    publisher.stop()
    return status["recordings"][-1]


def upload(recorder, session: dict, etag: str) -> dict:
    """What the S3 uploader records once a part's upload is confirmed: its object, in the sidecar."""
    sidecar = recorder.output_dir / f"{session['session']}.json"
    document = json.loads(sidecar.read_text())
    stored = {
        "url": f"s3://media/{session['parts'][0]['file']}",
        "endpoint": "https://s3.example.org",
        "etag": etag,
        "uploadedAt": "2026-01-02T03:04:05Z",
    }
    document["parts"][0]["object"] = stored
    sidecar.write_text(json.dumps(document))
    return stored


def files_of(directory: Path, session: str) -> list[str]:
    return sorted(p.name for p in directory.glob(f"{session}*"))


def table(kube, namespace: str) -> dict:
    """What `kubectl get recordings` prints: the API server's Table of the CRD's printer columns."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/recordings"
    _, url, headers, body, _ = kube.api.param_serialize(
        "GET",
        path,
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = kube.api.call_api("GET", url, header_params=headers, body=body)
    return json.loads(response.read())


def test_every_finished_session_becomes_a_recording_named_in_the_livestream_status(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, tmp_path
):
    recorder = start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path)
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    stamp = session["session"].rsplit("_", 1)[1]
    name = f"show-{stamp.lower()}"
    assert session["name"] == name, "Gcore's StopRecording answers with the video: the status names the object"

    obj = wait_for(lambda: recording(kube, namespace, name), 20, what=f"Recording {name}")
    ls = kube.livestream(namespace, "show")
    spec = obj["spec"]
    assert spec["livestream"] == {"name": "show", "uid": ls["metadata"]["uid"]}
    assert spec["session"] == session["session"] and spec["source"] == "origin"
    assert (spec["startedAt"], spec["endedAt"], spec["endReason"]) == (
        session["startedAt"],
        session["endedAt"],
        "recording stopped",
    )
    assert spec["durationSeconds"] == pytest.approx(session["durationSeconds"]) and spec["durationSeconds"] >= 2
    assert spec["persistentVolumeClaim"] == "show-recordings"
    assert [p["file"] for p in spec["parts"]] == [p["file"] for p in session["parts"]]
    for part in spec["parts"]:
        on_disk = recorder.output_dir / part["file"]
        assert part["bytes"] == on_disk.stat().st_size and part["durationSeconds"] > 0
        assert part["volume"] == {"persistentVolumeClaim": "show-recordings", "path": part["file"]}
        assert "object" not in part
    assert spec["sizeBytes"] == sum(p["bytes"] for p in spec["parts"])
    meta = obj["metadata"]
    assert meta["labels"]["onair.dev/livestream"] == "show"
    assert not meta.get("ownerReferences"), "nothing owns a Recording: it outlives its Livestream"
    assert FINALIZER in meta["finalizers"], "deleting it deletes its media"
    status = wait_for(
        lambda: (
            (recording(kube, namespace, name) or {}).get("status", {}).get("size")
            and recording(kube, namespace, name)["status"]
        ),
        20,
        what="the Recording's columns",
    )
    assert status["storage"] == "pvc" and status["duration"].endswith("s")
    # Playable on the volume through the Livestream's origin, for as long as that exists (the message says so).
    base = kube.livestream(namespace, "show")["status"]["playback"]["hlsCmaf"].removesuffix("hls/cmaf/master.m3u8")
    playback = status["playback"]
    assert (
        playback["reason"] == "ServedFromVolume"
        and "stop working when the Livestream is deleted" in playback["message"]
    )
    assert [p["url"] for p in playback["parts"]] == [
        f"{base}recordings/{p['file'][: -len('.mp4')]}.m3u8" for p in spec["parts"]
    ]
    assert [r["metadata"]["name"] for r in recordings(kube, namespace, "onair.dev/livestream=show")] == [name]
    assert recordings(kube, namespace, "onair.dev/livestream=other") == []

    # `kubectl get recordings -n <ns>`: what was recorded, from which Livestream, when, how long, how big, where.
    printed = table(kube, namespace)
    columns = [c["name"] for c in printed["columnDefinitions"] if c.get("priority", 0) == 0]
    assert columns == ["Name", "Livestream", "Started", "Duration", "Size", "Storage", "Age"]
    [row] = printed["rows"]
    assert row["cells"][:6] == [name, "show", spec["startedAt"], status["duration"], status["size"], "pvc"]
    assert any(e["reason"] == "RecordingCreated" and name in e["message"] for e in kube.events(namespace, "show"))

    # A part uploaded (the recorder reports its object): the same Recording, updated.
    stored = upload(recorder, session, etag='"abc"')
    updated = wait_for(
        lambda: (r := recording(kube, namespace, name)) and r["spec"]["parts"][0].get("object") and r,
        20,
        what="the upload in the Recording",
    )
    assert updated["spec"]["parts"][0]["object"] == stored
    assert updated["metadata"]["uid"] == meta["uid"]
    wait_for(lambda: recording(kube, namespace, name)["status"].get("storage") == "pvc+s3", 20, what="storage pvc+s3")

    # A second session is a second Recording; the first is untouched.
    second = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    wait_for(lambda: len(recordings(kube, namespace, "onair.dev/livestream=show")) == 2, 20, what="two Recordings")
    assert second["name"] != name and recording(kube, namespace, second["name"]) is not None
    # The status names both, the first with its upload.
    listed = kube.livestream(namespace, "show")["status"]["recordings"]
    assert [r["name"] for r in listed] == [name, second["name"]]
    for obj in recordings(kube, namespace):  # leave no finalizer behind for the namespace's deletion
        kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "recordings", obj["metadata"]["name"], {"metadata": {"finalizers": None}}
        )


def test_deleting_a_recording_deletes_its_files_through_the_recorder(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, tmp_path
):
    recorder = start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path)
    first = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    second = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    wait_for(lambda: recording(kube, namespace, second["name"]), 20, what="the second Recording")
    out = recorder.output_dir
    assert files_of(out, first["session"]) and files_of(out, second["session"])

    delete_recording(kube, namespace, first["name"])
    wait_for(lambda: recording(kube, namespace, first["name"]) is None, 30, what="the Recording gone")
    assert files_of(out, first["session"]) == [], "its parts and sidecar are deleted"
    assert files_of(out, second["session"]), "the other recording stays"
    kube.wait_status(
        namespace,
        "show",
        lambda s: [r["name"] for r in s.get("recordings") or ()] == [second["name"]],
        timeout=20,
        what="the status without the deleted recording",
    )
    events = kube.events(namespace, first["name"])
    assert any(e["reason"] == "MediaDeleted" and first["session"] in e["message"] for e in events), events
    # Polls go on: the deleted recording never comes back.
    recorder.wait_log(f"deleted recording {first['session']}", 5)
    for _ in range(3):
        kube.wait_status(namespace, "show", lambda s: True, what="a poll")
        wait_for(lambda: True, 1)
    assert recording(kube, namespace, first["name"]) is None
    assert recording(kube, namespace, second["name"]) is not None

    # Deleted without its finalizer (removed by hand first): the files stay, so the Recording comes back.
    kept = recording(kube, namespace, second["name"])
    delete_without_finalizer(kube, namespace, second["name"])
    back = wait_for(
        lambda: (
            (r := recording(kube, namespace, second["name"])) and r["metadata"]["uid"] != kept["metadata"]["uid"] and r
        ),
        30,
        what="the Recording back",
    )
    assert back["spec"] == kept["spec"] and FINALIZER in back["metadata"]["finalizers"]
    assert files_of(out, second["session"])

    # Deleting the Livestream deletes neither the Recording nor its files.
    kube.delete_livestream(namespace, "show")
    wait_for(lambda: not kube.livestream_exists(namespace, "show"), 30, what="the Livestream gone")
    assert recording(kube, namespace, second["name"])["metadata"].get("deletionTimestamp") is None
    assert files_of(out, second["session"])
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", second["name"], {"metadata": {"finalizers": None}}
    )


def test_uploaded_objects_without_object_storage_deletion_say_so_and_keep_the_finalizer(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, tmp_path
):
    recorder = start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path)
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    name = session["name"]
    stored = upload(recorder, session, etag='"e1"')
    wait_for(
        lambda: (r := recording(kube, namespace, name)) and r["spec"]["parts"][0].get("object"),
        20,
        what="the upload in the Recording",
    )

    delete_recording(kube, namespace, name)

    def stuck():
        obj = recording(kube, namespace, name)
        cond = condition((obj or {}).get("status") or {}, "MediaDeleted")
        return cond if cond and cond["reason"] == "ObjectStorageDeletionNotConfigured" else None

    cond = wait_for(stuck, 30, what="MediaDeleted=False ObjectStorageDeletionNotConfigured")
    assert cond["status"] == "False"
    assert "object storage deletion not configured" in cond["message"] and stored["url"] in cond["message"]
    assert "kubectl patch recording" in cond["message"], "says how to let it go"
    warning = wait_for(
        lambda: [e for e in kube.events(namespace, name) if e["reason"] == "ObjectStorageDeletionNotConfigured"],
        20,
        what="the Warning Event",
    )
    assert warning[0]["type"] == "Warning"
    assert files_of(recorder.output_dir, session["session"]) == [], "the files on the volume went first"
    obj = recording(kube, namespace, name)
    assert obj["metadata"]["deletionTimestamp"] and FINALIZER in obj["metadata"]["finalizers"]

    # The user deletes the objects by hand and removes the finalizer, as the message says.
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", name, {"metadata": {"finalizers": None}}
    )
    wait_for(lambda: recording(kube, namespace, name) is None, 20, what="the Recording gone")
    for _ in range(3):
        wait_for(lambda: True, 1)
    assert recording(kube, namespace, name) is None, "no sidecar lists it: it never comes back"


def deletion_pod(kube, namespace: str, name: str, other_than: str = ""):
    from kubernetes.client.exceptions import ApiException

    try:
        pod = kube.api.sanitize_for_serialization(kube.core.read_namespaced_pod(f"{name}-delete-media", namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return pod if pod["metadata"]["uid"] != other_than and not pod["metadata"].get("deletionTimestamp") else None


def test_a_recording_outlives_its_livestream_and_its_deletion_then_runs_a_pod(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, tmp_path
):
    recorder = start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path)
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    name = session["name"]
    wait_for(
        lambda: (
            (recording(kube, namespace, name) or {}).get("status", {}).get("playback", {}).get("reason")
            == "ServedFromVolume"
        ),
        20,
        what="the Recording, served from the volume by the Livestream's origin",
    )
    kube.delete_livestream(namespace, "show")
    wait_for(lambda: not kube.livestream_exists(namespace, "show"), 30, what="the Livestream gone")
    # Its origin went with it: the Recording stops offering URLs that answer nothing, and says why.
    playback = wait_for(
        lambda: (p := recording(kube, namespace, name)["status"]["playback"])["reason"] == "VolumeOnly" and p,
        30,
        what="status.playback VolumeOnly once the Livestream is gone",
    )
    assert set(playback) == {"reason", "message"} and "Livestream show" in playback["message"], playback
    recorder.stop()
    routes.unroute(namespace, "show", "recorder")
    assert recording(kube, namespace, name)["metadata"].get("deletionTimestamp") is None
    out = recorder.output_dir
    assert files_of(out, session["session"])

    delete_recording(kube, namespace, name)
    pod = wait_for(lambda: deletion_pod(kube, namespace, name), 30, what="the deletion pod")
    spec = pod["spec"]
    [container] = spec["containers"]
    assert (
        container["args"][:3] == ["agent", "recorder", "--delete-session"] and session["session"] in container["args"]
    )
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "show-recordings"}
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["metadata"]["ownerReferences"][0]["name"] == name

    # This tier has no kubelet: the pod stays Pending, and the Recording says the deletion waits for
    # it (tests/kube/test_recordings_on_node.py runs it on a real node, failing and then succeeding).
    cond = wait_for(
        lambda: (
            (c := condition(recording(kube, namespace, name).get("status") or {}, "MediaDeleted"))
            and c["reason"] == "MediaDeletionPending"
            and c
        ),
        30,
        what="MediaDeletionPending",
    )
    assert cond["status"] == "False" and f"{name}-delete-media" in cond["message"], cond
    assert files_of(out, session["session"])
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", name, {"metadata": {"finalizers": None}}
    )
    wait_for(lambda: recording(kube, namespace, name) is None, 20, what="the Recording gone")


def test_deleting_the_namespace_is_not_held_up_by_its_recordings(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, tmp_path
):
    """No pod can run in a namespace being deleted: the files go with its recordings claim, and the
    Recordings' finalizer lets the namespace go instead of keeping it Terminating for ever."""
    from kubernetes.client.exceptions import ApiException

    recorder = start_show(kube, routes, recorder_agent, rtmp_source, namespace, calltype, tmp_path)
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source)
    wait_for(lambda: recording(kube, namespace, session["name"]), 20, what="the Recording")
    recorder.stop()
    routes.unroute(namespace, "show", "recorder")
    kube.core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            kube.core.read_namespace(namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    try:
        wait_for(gone, 90, what="the namespace deleted")
    except TimeoutError:
        left = recording(kube, namespace, session["name"])
        raise AssertionError(f"the namespace is stuck; its Recording: {left}") from None


# ----------------------------------------------------------------------------- uploaded objects
S3_BUCKET, S3_PREFIX, S3_SECRET = "recordings", "shows", "recordings-s3"


def start_uploading_show(
    kube, routes, recorder_agent, rtmp_source, seaweedfs, namespace, calltype, tmp_path, bucket: str = S3_BUCKET
):
    """A Livestream whose recorder (a real agent) uploads to SeaweedFS with the files of the Secret
    ``S3_SECRET``, mounted at ``<tmp>/s3-secret`` (the test plays the kubelet when it changes)."""
    import base64

    from kubernetes import client as k8s

    from onair.api.agent import S3UploadConfig
    from tests.fixtures.s3 import RECORDER_KEY, RECORDER_SECRET, write_credentials

    seaweedfs.create_bucket(bucket)
    data = {"accessKeyId": RECORDER_KEY, "secretAccessKey": RECORDER_SECRET}
    kube.core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=S3_SECRET, namespace=namespace),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        ),
    )
    mounted = tmp_path / "s3-secret"
    write_credentials(mounted)
    out = tmp_path / "show-recordings"
    recorder = recorder_agent.start(
        source_url=rtmp_source.read_url,
        output_dir=out,
        livestream=f"{namespace}/show",
        split_seconds=2,
        s3=S3UploadConfig(
            endpoint=seaweedfs.endpoint,
            bucket=bucket,
            prefix=S3_PREFIX,
            force_path_style=True,
            access_key_id_file=str(mounted / "accessKeyId"),
            secret_access_key_file=str(mounted / "secretAccessKey"),
            request_timeout_seconds=5,
            retry_max_seconds=2,
        ),
    )
    routes.route(namespace, "show", "recorder", recorder)
    s3 = {
        "endpoint": seaweedfs.endpoint,
        "bucket": bucket,
        "prefix": S3_PREFIX,
        "forcePathStyle": True,
        "credentialsSecret": S3_SECRET,
    }
    kube.create_livestream(
        namespace,
        "show",
        {"callType": calltype, "phase": "live", "settingsOverride": {"recording": {"storage": {"s3": s3}}}},
    )
    kube.wait_reconciled(namespace, "show")
    return recorder, mounted


def uploaded_recording(kube, namespace: str, name: str) -> dict:
    """The Recording once every part's upload is confirmed and it names its object storage."""

    def ready():
        obj = recording(kube, namespace, name)
        spec = (obj or {}).get("spec") or {}
        return (
            obj
            if spec.get("parts") and all(p.get("object") for p in spec["parts"]) and spec.get("objectStorage")
            else None
        )

    return wait_for(ready, 60, what=f"Recording {name} with every part uploaded")


def session_objects(seaweedfs, namespace: str, session: str) -> set[str]:
    return set(seaweedfs.objects(S3_BUCKET, f"{S3_PREFIX}/{namespace}/show/{session}/"))


def media_condition(kube, namespace: str, name: str, reason: str):
    cond = condition((recording(kube, namespace, name) or {}).get("status") or {}, "MediaDeleted")
    return cond if cond and cond["reason"] == reason else None


def test_deleting_an_uploaded_recording_deletes_its_objects_through_the_recorder(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, seaweedfs, tmp_path
):
    from tests.fixtures.s3 import write_credentials

    recorder, mounted = start_uploading_show(
        kube, routes, recorder_agent, rtmp_source, seaweedfs, namespace, calltype, tmp_path
    )
    first = record_session(kube, namespace, "show", recorder, publishers, rtmp_source, seconds=3)
    second = record_session(kube, namespace, "show", recorder, publishers, rtmp_source, seconds=3)
    obj = uploaded_recording(kube, namespace, first["name"])
    uploaded_recording(kube, namespace, second["name"])
    assert obj["spec"]["objectStorage"] == {
        "endpoint": seaweedfs.endpoint,
        "bucket": S3_BUCKET,
        "prefix": S3_PREFIX,
        "forcePathStyle": True,
        "credentialsSecret": S3_SECRET,
    }
    objects = session_objects(seaweedfs, namespace, first["session"])
    assert {f"s3://{S3_BUCKET}/{k}" for k in objects} >= {p["object"]["url"] for p in obj["spec"]["parts"]}
    assert any(k.endswith(".json") for k in objects), "the sidecar is uploaded too"
    wait_for(lambda: recorder.status()["upload"]["pending"] == 0, 30, what="nothing left to upload")

    # The store refuses the key (the Secret was rotated wrongly): said on the Recording, retried.
    write_credentials(mounted, secret_key="not-the-secret")
    delete_recording(kube, namespace, first["name"])
    cond = wait_for(
        lambda: media_condition(kube, namespace, first["name"], "MediaDeletionFailed"),
        30,
        what="MediaDeleted=False MediaDeletionFailed",
    )
    assert cond["status"] == "False"
    assert "refused the credentials" in cond["message"] and "accessKeyId and secretAccessKey" in cond["message"], cond
    assert "not-the-secret" not in cond["message"]
    warning = wait_for(
        lambda: [e for e in kube.events(namespace, first["name"]) if e["reason"] == "MediaDeletionFailed"],
        20,
        what="the Warning Event",
    )
    assert warning[0]["type"] == "Warning" and "refused the credentials" in warning[0]["message"]
    assert session_objects(seaweedfs, namespace, first["session"]) == objects, "nothing deleted meanwhile"
    assert (recorder.output_dir / f"{first['session']}.json").exists()
    assert FINALIZER in recording(kube, namespace, first["name"])["metadata"]["finalizers"]

    # Fixed (the kubelet rewrites the mounted Secret): the retry deletes everything, and the Recording goes.
    write_credentials(mounted)
    wait_for(lambda: recording(kube, namespace, first["name"]) is None, 60, what="the Recording gone")
    assert session_objects(seaweedfs, namespace, first["session"]) == set()
    assert sorted(p.name for p in recorder.output_dir.glob(f"*{first['session']}*")) == []
    assert session_objects(seaweedfs, namespace, second["session"]), "the other recording's objects stay"
    events = kube.events(namespace, first["name"])
    assert any(e["reason"] == "MediaDeleted" and f"s3://{S3_BUCKET}/" in e["message"] for e in events), events
    for _ in range(3):  # polls go on: it never comes back
        kube.wait_status(namespace, "show", lambda s: True, what="a poll")
    assert recording(kube, namespace, first["name"]) is None
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", second["name"], {"metadata": {"finalizers": None}}
    )


def test_an_uploaded_recording_gets_playback_urls_once_the_bucket_has_a_public_address(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, seaweedfs, tmp_path
):
    import httpx

    from tests.fixtures.s3 import PUBLIC_BUCKET

    recorder, _ = start_uploading_show(
        kube, routes, recorder_agent, rtmp_source, seaweedfs, namespace, calltype, tmp_path, bucket=PUBLIC_BUCKET
    )
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source, seconds=3)
    name = session["name"]
    uploaded_recording(kube, namespace, name)
    # Uploaded, but nobody told onair where players read the bucket: said, not guessed.
    playback = wait_for(
        lambda: (recording(kube, namespace, name).get("status") or {}).get("playback"), 30, what="status.playback"
    )
    assert playback["reason"] == "NoPublicBaseUrl" and "publicBaseUrl" in playback["message"], playback
    assert set(playback) == {"reason", "message"}, playback
    assert f"s3://{PUBLIC_BUCKET}/{S3_PREFIX}/{namespace}/show/" in playback["message"]

    # The address is added to the settings later: the Recording takes it at the next poll.
    public = f"{seaweedfs.endpoint}/{PUBLIC_BUCKET}"
    kube.patch_livestream(
        namespace, "show", {"spec": {"settingsOverride": {"recording": {"storage": {"s3": {"publicBaseUrl": public}}}}}}
    )
    playback = wait_for(
        lambda: ((recording(kube, namespace, name).get("status") or {}).get("playback") or {}).get("parts"),
        30,
        what="status.playback with the parts' URLs",
    )
    obj = recording(kube, namespace, name)
    assert obj["spec"]["objectStorage"]["publicBaseUrl"] == public
    parts = obj["spec"]["parts"]
    assert [p["file"] for p in playback] == [p["file"] for p in parts]
    whole = obj["status"]["playback"].get("url")
    assert whole == (playback[0]["url"] if len(parts) == 1 else None)
    # What a viewer's player does, without any credentials: the playlist, then a byte range of the part.
    for entry in playback:
        assert entry["url"].startswith(f"{public}/{S3_PREFIX}/{namespace}/show/{session['session']}/")
        listing = httpx.get(entry["url"], timeout=10)
        assert listing.status_code == 200 and "#EXT-X-PLAYLIST-TYPE:VOD" in listing.text, listing.text[:300]
        assert f'URI="{entry["file"]}"' in listing.text
        media = httpx.get(
            entry["url"].rsplit("/", 1)[0] + "/" + entry["file"], headers={"Range": "bytes=0-99"}, timeout=10
        )
        assert media.status_code == 206 and len(media.content) == 100
    # Taken away again (the CDN dropped): back to saying why, with no URL left over from before.
    kube.patch_livestream(
        namespace, "show", {"spec": {"settingsOverride": {"recording": {"storage": {"s3": {"publicBaseUrl": None}}}}}}
    )
    playback = wait_for(
        lambda: (p := recording(kube, namespace, name)["status"]["playback"]).get("reason") and p,
        30,
        what="status.playback without URLs",
    )
    assert set(playback) == {"reason", "message"} and playback["reason"] == "NoPublicBaseUrl", playback
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", name, {"metadata": {"finalizers": None}}
    )


def test_a_recording_whose_livestream_is_gone_gets_a_deletion_pod_with_the_s3_secret(
    routes, kube, calltype, namespace, recorder_agent, rtmp_source, publishers, seaweedfs, tmp_path
):
    recorder, mounted = start_uploading_show(
        kube, routes, recorder_agent, rtmp_source, seaweedfs, namespace, calltype, tmp_path
    )
    session = record_session(kube, namespace, "show", recorder, publishers, rtmp_source, seconds=3)
    name = session["name"]
    uploaded_recording(kube, namespace, name)
    wait_for(lambda: recorder.status()["upload"]["pending"] == 0, 30, what="nothing left to upload")
    assert session_objects(seaweedfs, namespace, session["session"])
    kube.delete_livestream(namespace, "show")
    wait_for(lambda: not kube.livestream_exists(namespace, "show"), 30, what="the Livestream gone")
    recorder.stop()
    routes.unroute(namespace, "show", "recorder")

    delete_recording(kube, namespace, name)
    pod = wait_for(lambda: deletion_pod(kube, namespace, name), 30, what="the deletion pod")
    [container] = pod["spec"]["containers"]
    assert "--s3-config" in container["args"]
    secret = {v["name"]: v for v in pod["spec"]["volumes"]}["s3-credentials"]["secret"]
    assert secret["secretName"] == S3_SECRET, "the pod mounts the user's Secret; the operator reads no key"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"{mounts['s3-credentials']}" in " ".join(container["args"]), container["args"]
    # No kubelet in this tier: the pod waits, and so does the Recording (what the pod's command does
    # with these arguments is tests/media/test_recorder_s3.py's).
    cond = wait_for(
        lambda: (
            (c := condition(recording(kube, namespace, name).get("status") or {}, "MediaDeleted"))
            and c["reason"] == "MediaDeletionPending"
            and c
        ),
        30,
        what="MediaDeletionPending",
    )
    assert cond["status"] == "False", cond
    assert session_objects(seaweedfs, namespace, session["session"]), "nothing deleted before the pod ran"
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "recordings", name, {"metadata": {"finalizers": None}}
    )
    wait_for(lambda: recording(kube, namespace, name) is None, 20, what="the Recording gone")
