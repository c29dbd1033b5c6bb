"""Recording objects from finished sessions (onair.render.recordings): names, manifests, columns,
updates, the Livestream's status entries and the media-deletion pod. Pure."""

from __future__ import annotations

import pytest

from onair.api.agent import Recording as FinishedSession
from onair.api.recording import Recording
from onair.render import recordings as r

SESSION = {
    "session": "events_keynote_20260714T090005Z",
    "startedAt": "2026-07-14T09:00:07.123Z",
    "endedAt": "2026-07-14T11:05:00.456Z",
    "durationSeconds": 7492.9,
    "endReason": "recording stopped",
    "recordType": "origin",
    "parts": [
        {"file": "events_keynote_20260714T090005Z_part0001.mp4", "bytes": 3_000_000_000, "durationSeconds": 7200.0},
        {"file": "events_keynote_20260714T090005Z_part0002.mp4", "bytes": 120_000_000, "durationSeconds": 292.9},
    ],
}


def session(**changes) -> FinishedSession:
    return FinishedSession.model_validate({**SESSION, **changes})


def test_the_name_is_the_livestream_and_the_session_start_a_dns_label():
    assert r.recording_name("keynote", SESSION["session"]) == "keynote-20260714t090005z"
    longest = "a" * 45  # the Livestream CRD caps names at 45 characters
    name = r.recording_name(longest, f"ns_{longest}_20260714T090005Z")
    assert len(name) <= 63 and name == name.lower()


@pytest.mark.parametrize(
    "bad",
    ["events_keynote", "events_keynote_latest", "events_keynote_20260714T0900Z", "events_keynote_2026071XT090005Z"],
)
def test_a_name_that_is_no_session_is_refused(bad):
    with pytest.raises(r.NotASession):
        r.recording_name("keynote", bad)


def test_the_manifest_carries_what_was_recorded_and_is_owned_by_nothing():
    manifest = r.recording_manifest(
        "events", "keynote", "uid-1", session(), "keynote-recordings", "onair.dev/finalizer"
    )
    Recording.model_validate(manifest)  # what the CRD is generated from accepts it
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["name"] == "keynote-20260714t090005z" and meta["namespace"] == "events"
    assert meta["labels"]["onair.dev/livestream"] == "keynote"
    assert meta["labels"]["onair.dev/recording-source"] == "origin"
    assert "ownerReferences" not in meta and meta["finalizers"] == ["onair.dev/finalizer"]
    assert spec["livestream"] == {"name": "keynote", "uid": "uid-1"}
    assert spec["session"] == SESSION["session"] and spec["source"] == "origin"
    assert spec["sizeBytes"] == 3_120_000_000 and spec["durationSeconds"] == 7492.9
    assert spec["startedAt"].startswith("2026-07-14T09:00:07.123") and spec["endReason"] == "recording stopped"
    assert spec["persistentVolumeClaim"] == "keynote-recordings" and "recovered" not in spec
    assert spec["parts"][1] == {
        "file": SESSION["parts"][1]["file"],
        "bytes": 120_000_000,
        "durationSeconds": 292.9,
        "volume": {"persistentVolumeClaim": "keynote-recordings", "path": SESSION["parts"][1]["file"]},
    }


def test_uploads_and_upload_errors_are_in_the_parts_and_the_storage_column():
    stored = {
        "url": "s3://media/a.mp4",
        "endpoint": "https://s3.example.org",
        "etag": '"e"',
        "uploadedAt": "2026-07-14T11:06:00Z",
    }
    parts = [{**SESSION["parts"][0], "object": stored}, {**SESSION["parts"][1], "uploadError": "HTTP 503"}]
    spec = r.recording_spec("keynote", None, session(parts=parts, recovered=True), "keynote-recordings")
    assert spec["parts"][0]["object"] == stored and spec["parts"][1]["uploadError"] == "HTTP 503"
    assert spec["recovered"] is True and spec["livestream"] == {"name": "keynote"}
    assert r.recording_status(spec)["storage"] == "pvc", "one part is only on the volume"
    parts[1] = {**SESSION["parts"][1], "object": stored}
    uploaded = r.recording_spec("keynote", None, session(parts=parts), "keynote-recordings")
    assert r.recording_status(uploaded)["storage"] == "pvc+s3"


def test_columns_for_people_and_conditions_kept():
    spec = r.recording_spec("keynote", "u", session(), "c")
    previous = {"conditions": [{"type": "MediaDeleted", "status": "False"}]}
    status = r.recording_status(spec, previous, generation=3)
    assert status.pop("playback")["reason"] == "VolumeOnly"
    assert status == {
        "duration": "2h04m53s",
        "size": "2.9GiB",
        "storage": "pvc",
        "observedGeneration": 3,
        "conditions": previous["conditions"],
    }
    assert r.human_duration(59.6) == "1m00s" and r.human_duration(4) == "4s"
    assert r.human_size(512) == "512B" and r.human_size(5 * 1024**4) == "5.0TiB"


def test_only_what_can_change_after_the_end_is_updated():
    stored = r.recording_spec("keynote", "old-uid", session(), "c")
    assert r.spec_update(stored, r.recording_spec("keynote", "new-uid", session(), "c")) is None, (
        "a Livestream re-created under the same name does not rewrite who recorded it"
    )
    stored_object = {"url": "s3://m/a", "endpoint": "e", "etag": "t", "uploadedAt": "2026-07-14T11:06:00Z"}
    parts = [{**SESSION["parts"][0], "object": stored_object}, SESSION["parts"][1]]
    wanted = r.recording_spec("keynote", "old-uid", session(parts=parts), "c")
    assert r.spec_update(stored, wanted) == {"parts": wanted["parts"]}


def test_the_livestream_status_names_the_recording_of_each_session():
    entries = r.livestream_recording_entries("keynote", [session()])
    assert entries[0]["name"] == "keynote-20260714t090005z" and entries[0]["session"] == SESSION["session"]
    assert entries[0]["recordType"] == "origin"


def test_the_deletion_pod_mounts_the_volume_and_runs_the_recorders_delete_command():
    manifest = r.recording_manifest("events", "keynote", "u", session(), "keynote-recordings", "f")
    manifest["metadata"]["uid"] = "rec-uid"
    pod = r.deletion_pod(manifest, "registry/onair:1", "IfNotPresent", ["pull"])
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "keynote-20260714t090005z-delete-media" and meta["namespace"] == "events"
    assert meta["ownerReferences"][0]["uid"] == "rec-uid" and meta["ownerReferences"][0]["kind"] == "Recording"
    assert "onair.dev/livestream" not in meta["labels"], "not an agent pod of the Livestream"
    [container] = spec["containers"]
    assert container["image"] == "registry/onair:1" and container["command"] == ["onair"]
    assert container["args"] == [
        "agent",
        "recorder",
        "--delete-session",
        SESSION["session"],
        "--livestream",
        "events/keynote",
        "--output-dir",
        "/recordings",
    ]
    assert container["volumeMounts"] == [{"name": "recordings", "mountPath": "/recordings"}]
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "keynote-recordings"}
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] > 0
    assert spec["automountServiceAccountToken"] is False and spec["imagePullSecrets"] == [{"name": "pull"}]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


STORED = {
    "url": "s3://media/shows/events/keynote/events_keynote_20260714T090005Z/"
    "events_keynote_20260714T090005Z_part0001.mp4",
    "endpoint": "https://s3.example.org",
    "etag": "abc-1",
    "uploadedAt": "2026-07-14T11:06:00Z",
}
LOCATION = {
    "endpoint": "https://s3.example.org",
    "bucket": "media",
    "prefix": "shows",
    "forcePathStyle": True,
    "credentialsSecret": "s3-keys",
}


def uploaded_session() -> FinishedSession:
    parts = [dict(SESSION["parts"][0], object=STORED), SESSION["parts"][1]]
    return session(parts=parts)


def test_the_object_storage_is_kept_once_a_part_is_in_that_bucket():
    spec = r.recording_spec("keynote", None, uploaded_session(), "c", LOCATION)
    assert spec["objectStorage"] == LOCATION
    assert "objectStorage" not in r.recording_spec("keynote", None, session(), "c", LOCATION), (
        "nothing uploaded yet: nothing to name"
    )
    elsewhere = dict(LOCATION, bucket="other")
    assert "objectStorage" not in r.recording_spec("keynote", None, uploaded_session(), "c", elsewhere), (
        "settings changed since the upload name another bucket: never the wrong one"
    )
    Recording.model_validate({"spec": spec})


def test_the_object_storage_is_set_once_never_moved_by_later_settings():
    before = r.recording_spec("keynote", None, session(), "c", LOCATION)
    after = r.recording_spec("keynote", None, uploaded_session(), "c", LOCATION)
    assert r.spec_update(before, after)["objectStorage"] == LOCATION
    moved = dict(after, objectStorage=dict(LOCATION, prefix="new"))
    assert r.spec_update(after, moved) is None


def test_the_deletion_pod_deletes_the_objects_with_the_mounted_credentials_secret():
    from onair.api.agent import S3UploadConfig

    manifest = r.recording_manifest("events", "keynote", "u", uploaded_session(), "keynote-recordings", "f", LOCATION)
    manifest["metadata"]["uid"] = "rec-uid"
    pod = r.deletion_pod(manifest, "registry/onair:1", "IfNotPresent", [])
    [container] = pod["spec"]["containers"]
    assert container["args"][:8] == [
        "agent",
        "recorder",
        "--delete-session",
        SESSION["session"],
        "--livestream",
        "events/keynote",
        "--output-dir",
        "/recordings",
    ]
    assert container["args"][8] == "--s3-config"
    config = S3UploadConfig.model_validate_json(container["args"][9])
    assert (config.endpoint, config.bucket, config.prefix, config.force_path_style) == (
        "https://s3.example.org",
        "media",
        "shows",
        True,
    )
    assert config.access_key_id_file == "/etc/onair/s3/accessKeyId"
    assert "s3-keys" not in container["args"][9], "only the Secret's name is in the pod spec, never a key"
    secret = [v for v in pod["spec"]["volumes"] if v["name"] == "s3-credentials"]
    assert secret and secret[0]["secret"]["secretName"] == "s3-keys"
    assert {"name": "s3-credentials", "mountPath": "/etc/onair/s3", "readOnly": True} in container["volumeMounts"]
    # Without spec.objectStorage the pod deletes the files only (the operator reports the objects).
    del manifest["spec"]["objectStorage"]
    plain = r.deletion_pod(manifest, "registry/onair:1", "IfNotPresent", [])
    assert "--s3-config" not in plain["spec"]["containers"][0]["args"]


def _stored(part: dict, playlist: bool = True) -> dict:
    key = f"shows/events/keynote/{SESSION['session']}/{part['file']}"
    return {
        **part,
        "object": {
            "url": f"s3://media/{key}",
            "endpoint": "https://s3.example.org",
            "etag": '"e"',
            "uploadedAt": "2026-07-14T11:06:00Z",
            **({"playlist": f"s3://media/{key[: -len('.mp4')]}.m3u8"} if playlist else {}),
        },
    }


def test_playback_urls_come_from_the_public_base_url_of_the_bucket():
    public = dict(LOCATION, publicBaseUrl="https://cdn.example.org/vod/")
    one = r.recording_spec("keynote", None, session(parts=[_stored(SESSION["parts"][0])]), "c", public)
    playback = r.recording_status(one)["playback"]
    url = f"https://cdn.example.org/vod/shows/events/keynote/{SESSION['session']}/{SESSION['session']}_part0001.m3u8"
    assert playback == {"url": url, "parts": [{"file": SESSION["parts"][0]["file"], "url": url}]}
    both = r.recording_spec("keynote", None, session(parts=[_stored(p) for p in SESSION["parts"]]), "c", public)
    playback = r.recording_status(both)["playback"]
    assert "url" not in playback, "several parts: no single playlist, each part in order"
    assert [p["url"].rsplit("_", 1)[1] for p in playback["parts"]] == ["part0001.m3u8", "part0002.m3u8"]
    Recording.model_validate({"spec": both, "status": r.recording_status(both)})


@pytest.mark.parametrize(
    "parts, location, reason, words",
    [
        ([_stored(SESSION["parts"][0])], LOCATION, "NoPublicBaseUrl", "set recording.storage.s3.publicBaseUrl"),
        ([_stored(SESSION["parts"][0]), SESSION["parts"][1]], LOCATION, "NotUploadedYet", "1 of 2 part(s) uploaded"),
        (
            [_stored(SESSION["parts"][0], playlist=False)],
            dict(LOCATION, publicBaseUrl="https://cdn.example.org"),
            "NoPlaylist",
            "not a fragmented MP4",
        ),
        (SESSION["parts"], None, "VolumeOnly", "PersistentVolumeClaim c"),
    ],
)
def test_no_playback_url_says_why(parts, location, reason, words):
    spec = r.recording_spec("keynote", None, session(parts=parts), "c", location)
    playback = r.recording_status(spec)["playback"]
    assert set(playback) == {"reason", "message"} and playback["reason"] == reason and words in playback["message"]


def test_the_public_base_url_follows_the_settings_for_the_same_bucket_only():
    parts = [_stored(SESSION["parts"][0])]
    stored = r.recording_spec("keynote", None, session(parts=parts), "c", LOCATION)
    cdn = dict(LOCATION, publicBaseUrl="https://cdn.example.org")
    assert r.spec_update(stored, r.recording_spec("keynote", None, session(parts=parts), "c", cdn)) == {
        "objectStorage": {"publicBaseUrl": "https://cdn.example.org"}
    }
    other_bucket = dict(cdn, bucket="elsewhere", endpoint="https://s3.example.org")
    spec = r.recording_spec("keynote", None, session(parts=parts), "c", other_bucket)
    assert r.spec_update(stored, dict(spec, objectStorage=other_bucket)) is None


def test_recordings_on_the_volume_are_served_by_the_livestreams_origin_while_it_exists():
    spec = r.recording_spec("keynote", None, session(), "keynote-recordings")
    playback = r.recording_status(spec, volume_url="https://live.example.org/events/keynote/recordings/")["playback"]
    assert playback["reason"] == "ServedFromVolume" and "url" not in playback, "two parts: each in order"
    assert [p["url"] for p in playback["parts"]] == [
        f"https://live.example.org/events/keynote/recordings/{p['file'][: -len('.mp4')]}.m3u8" for p in SESSION["parts"]
    ]
    assert "stop working when the Livestream is deleted" in playback["message"]
    assert "keynote-recordings" in playback["message"]
    one = r.recording_spec("keynote", None, session(parts=SESSION["parts"][:1]), "c")
    assert r.recording_status(one, volume_url="https://x/recordings")["playback"]["url"].endswith("_part0001.m3u8")
    # Uploading to object storage: the bucket's URLs (or why not), never the origin's.
    uploading = r.recording_spec(
        "keynote", None, session(parts=[_stored(SESSION["parts"][0]), SESSION["parts"][1]]), "c", LOCATION
    )
    assert r.recording_status(uploading, volume_url="https://x/recordings")["playback"]["reason"] == "NotUploadedYet"
