"""recording.storage.s3 from settings to the recorder's config and pod, and back as a condition and Events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from onair.api.agent import RecordedPart, RecorderConfig, RecorderStatus, Recording, UploadStatus
from onair.api.calltype import CallType
from onair.api.conditions import (
    RECORDER_NOT_REPORTING,
    RECORDING_UPLOAD_FAILING,
    RECORDING_UPLOAD_PENDING,
    RECORDING_UPLOAD_RECOVERED,
    RECORDINGS_UPLOADED,
)
from onair.api.livestream import LivestreamSpec, LivestreamStatus
from onair.api.settings import S3Storage
from onair.api.operator_config import OperatorConfig
from onair.controller.events import NORMAL, WARNING, transition_events
from onair.crdgen import crds
from onair.render.agent_configs import S3_SECRET_DIR
from onair.render.children import render_children
from onair.render.conditions import find_condition
from onair.render.credentials import Credentials
from onair.render.lifecycle import desired_lifecycle
from onair.render.resolve import INVALID_RECORDING_STORAGE, resolve
from onair.render.status import livestream_status

T0 = datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc)
CREDS = Credentials(
    stream_key="streamkey0123",
    srt_passphrase="srtpassphrase0123",
    whip_token="whiptoken0123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)
S3 = {
    "endpoint": "https://s3.eu-central-1.example.org",
    "bucket": "show-recordings",
    "credentialsSecret": "recordings-s3",
}


def livestream(**override) -> dict:
    spec = {"callType": "livestream", **({"settingsOverride": override} if override else {})}
    return {"metadata": {"name": "show", "namespace": "events", "uid": "uid-1", "generation": 2}, "spec": spec}


def calltype(**settings) -> CallType:
    return CallType.model_validate({"metadata": {"name": "livestream"}, "spec": {"settings": settings}})


def rendered(ct_s3=None, ls_s3=None):
    ct = calltype(recording={"storage": {"s3": ct_s3}}) if ct_s3 else calltype()
    obj = livestream(recording={"storage": {"s3": ls_s3}}) if ls_s3 else livestream()
    return obj, render_children(obj, ct, OperatorConfig(), CREDS)


def recorder_config(out) -> RecorderConfig:
    cm = next(o for o in out.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "show-recorder")
    return RecorderConfig.model_validate(json.loads(cm["data"]["config.json"]))


def recorder_pod(out) -> dict:
    deployment = next(o for o in out.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "show-recorder")
    return deployment["spec"]["template"]["spec"]


def test_calltype_names_the_store_the_livestream_its_prefix_and_the_recorder_gets_both():
    _, out = rendered(ct_s3=S3, ls_s3={"prefix": "/conference/2026/", "keepLocalCopy": True})
    s3 = recorder_config(out).s3
    assert (s3.endpoint, s3.bucket, s3.prefix, s3.region, s3.force_path_style, s3.keep_local_copy) == (
        S3["endpoint"],
        "show-recordings",
        "conference/2026",
        "us-east-1",
        False,
        True,
    )
    assert s3.access_key_id_file == f"{S3_SECRET_DIR}/accessKeyId"
    assert s3.secret_access_key_file == f"{S3_SECRET_DIR}/secretAccessKey"


def test_credentials_are_files_of_the_users_secret_mounted_optionally_never_config_values():
    _, out = rendered(ct_s3={**S3, "region": "eu-central-1", "forcePathStyle": True})
    pod = recorder_pod(out)
    volume = next(v for v in pod["volumes"] if v["name"] == "s3-credentials")
    assert volume["secret"] == {
        "secretName": "recordings-s3",
        "defaultMode": 0o440,
        "optional": True,
        "items": [{"key": "accessKeyId", "path": "accessKeyId"}, {"key": "secretAccessKey", "path": "secretAccessKey"}],
    }
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "s3-credentials")
    assert mount == {"name": "s3-credentials", "mountPath": S3_SECRET_DIR, "readOnly": True}
    config = recorder_config(out)
    assert config.s3.region == "eu-central-1" and config.s3.force_path_style
    # Only the other roles' pods are untouched by it.
    for o in out.objects:
        if o["kind"] == "Deployment" and o["metadata"]["name"] != "show-recorder":
            assert all(v["name"] != "s3-credentials" for v in o["spec"]["template"]["spec"]["volumes"])


def test_without_s3_the_recorder_keeps_recordings_on_the_volume_only():
    _, out = rendered()
    assert recorder_config(out).s3 is None
    assert all(v["name"] != "s3-credentials" for v in recorder_pod(out)["volumes"])


@pytest.mark.parametrize(
    "field,value",
    [
        ("bucket", "My_Bucket"),
        ("bucket", "ab"),
        ("endpoint", "s3.example.org"),
        ("endpoint", "ftp://x"),
        ("prefix", "a//b"),
        ("prefix", "with space"),
        ("credentialsSecret", "Not_A_Name"),
        ("region", "EU West"),
    ],
)
def test_malformed_fields_are_refused_by_the_schema(field, value):
    with pytest.raises(ValidationError):
        S3Storage.model_validate({**S3, field: value})


def test_the_crd_carries_the_s3_patterns_so_the_api_server_refuses_them_at_once():
    spec_schema = crds()["onair.dev_livestreams.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["spec"]
    s3 = spec_schema["properties"]["settingsOverride"]["properties"]["recording"]["properties"]["storage"][
        "properties"
    ]["s3"]["properties"]
    assert set(s3) == {
        "endpoint",
        "bucket",
        "prefix",
        "region",
        "forcePathStyle",
        "credentialsSecret",
        "keepLocalCopy",
        "publicBaseUrl",
    }
    for field in ("endpoint", "bucket", "prefix", "region", "credentialsSecret", "publicBaseUrl"):
        assert "pattern" in s3[field], field


def test_an_incomplete_s3_target_is_a_problem_that_says_what_is_missing_and_where():
    obj = livestream(recording={"storage": {"s3": {"prefix": "x"}}})
    result = resolve(obj, calltype(recording={"storage": {"s3": {"endpoint": S3["endpoint"]}}}))
    assert result.problem is not None and result.problem.reason == INVALID_RECORDING_STORAGE
    message = result.problem.message
    assert "needs bucket, credentialsSecret" in message and "endpoint" not in message.split(":")[0]
    assert "recording.storage.s3.bucket" in message and "settingsOverride" in message
    assert resolve(
        livestream(recording={"storage": {"s3": {"prefix": "x"}}}), calltype(recording={"storage": {"s3": S3}})
    ).ok
    # Recording disabled: nothing is uploaded, nothing to complain about.
    assert resolve(livestream(recording={"mode": "disabled", "storage": {"s3": {"prefix": "x"}}}), calltype()).ok


# ----------------------------------------------------------------------------- status and Events
def status(upload=None, previous=None, recorder=True, now=T0):
    obj, out = rendered(ct_s3=S3, ls_s3={"prefix": "rec"})
    lifecycle = desired_lifecycle(LivestreamSpec.model_validate(obj["spec"]), out.effective, now)
    agents = {"recorder": RecorderStatus(recording=False, upload=upload)} if recorder else {}
    result = livestream_status(
        lifecycle=lifecycle, rendered=out, agents=agents, previous=previous, generation=2, now=now
    )
    LivestreamStatus.model_validate(result)
    return result


def upload(**fields) -> UploadStatus:
    return UploadStatus(**{"target": "s3://show-recordings/rec/", "endpoint": S3["endpoint"], "pending": 0, **fields})


def uploaded_condition(result) -> dict:
    return find_condition(result["conditions"], RECORDINGS_UPLOADED)


def test_condition_true_when_everything_is_uploaded_false_while_files_wait():
    done = uploaded_condition(status(upload()))
    assert (done["status"], done["reason"]) == ("True", RECORDINGS_UPLOADED)
    assert "s3://show-recordings/rec/" in done["message"]
    waiting = uploaded_condition(status(upload(pending=2, uploading="x.mp4")))
    assert (waiting["status"], waiting["reason"]) == ("False", RECORDING_UPLOAD_PENDING)
    assert waiting["message"].startswith("2 finished recording file(s) waiting")


def test_failing_uploads_say_what_is_wrong_and_how_to_fix_it_naming_the_users_secret():
    error = (
        "https://s3.eu-central-1.example.org, bucket show-recordings refused the credentials "
        "(SignatureDoesNotMatch: ...)"
    )
    cond = uploaded_condition(
        status(
            upload(
                pending=3,
                error=error,
                error_kind="credentials",
                failing_since=T0,
                next_attempt_at=T0 + timedelta(seconds=8),
            )
        )
    )
    assert (cond["status"], cond["reason"]) == ("False", RECORDING_UPLOAD_FAILING)
    assert error in cond["message"]
    assert "Secret events/recordings-s3" in cond["message"] and "accessKeyId and secretAccessKey" in cond["message"]
    assert "Nothing is lost" in cond["message"]
    assert "3" not in cond["message"].replace("s3", ""), "no count: the message must stay the same while files pile up"
    missing = uploaded_condition(status(upload(error="bucket show-recordings does not exist", error_kind="bucket")))
    assert "Create bucket show-recordings at https://s3.eu-central-1.example.org" in missing["message"]
    down = uploaded_condition(status(upload(error="cannot connect to x; retrying", error_kind="unreachable")))
    assert "reachable from the recorder pod" in down["message"]


def test_a_recorder_that_does_not_report_keeps_the_last_known_condition():
    before = status(upload(pending=1, error="e", error_kind="unreachable"))
    kept = uploaded_condition(status(previous=before, recorder=False, now=T0 + timedelta(minutes=1)))
    assert kept == uploaded_condition(before)
    first = uploaded_condition(status(recorder=False))
    assert (first["status"], first["reason"]) == ("Unknown", RECORDER_NOT_REPORTING)


def test_no_condition_without_s3():
    obj, out = rendered()
    lifecycle = desired_lifecycle(LivestreamSpec.model_validate(obj["spec"]), out.effective, T0)
    result = livestream_status(
        lifecycle=lifecycle,
        rendered=out,
        agents={"recorder": RecorderStatus(recording=False)},
        previous=None,
        generation=2,
        now=T0,
    )
    assert find_condition(result["conditions"], RECORDINGS_UPLOADED) is None


def test_a_warning_when_uploads_start_failing_or_fail_for_another_cause_and_a_normal_event_when_they_work():
    ok = status(upload())
    pending = status(upload(pending=1), previous=ok)
    wrong_key = status(upload(pending=1, error="refused the credentials", error_kind="credentials"), previous=pending)
    still = status(upload(pending=4, error="refused the credentials", error_kind="credentials"), previous=wrong_key)
    no_bucket = status(upload(pending=4, error="bucket x does not exist", error_kind="bucket"), previous=still)
    fixed = status(upload(pending=2), previous=no_bucket)
    done = status(upload(), previous=fixed)

    def events(old, new):
        return [(e.type, e.reason) for e in transition_events(old, new)]

    assert events(ok, pending) == []
    assert events(pending, wrong_key) == [(WARNING, RECORDING_UPLOAD_FAILING)]
    assert events(wrong_key, still) == [], "the same cause is announced once"
    assert events(still, no_bucket) == [(WARNING, RECORDING_UPLOAD_FAILING)]
    assert events(no_bucket, fixed) == [(NORMAL, RECORDING_UPLOAD_RECOVERED)]
    assert events(fixed, done) == []
    warning = transition_events(pending, wrong_key)[0]
    assert "refused the credentials" in warning.message and "Secret events/recordings-s3" in warning.message


def test_recording_parts_with_objects_fit_the_livestream_status():
    part = RecordedPart(file="f.mp4", bytes=1, upload_error="refused")
    recording = Recording(
        session="events_show_20260701T120000Z",
        started_at=T0,
        ended_at=T0,
        duration_seconds=1,
        end_reason="recording stopped",
        parts=[part],
    )
    LivestreamStatus.model_validate({"recordings": [recording.wire()]})


def test_the_process_runner_mounts_the_optional_secret_and_rewrites_the_credential_paths():
    from onair.localcluster import loopback

    _, out = rendered(ct_s3=S3)
    deployment = next(o for o in out.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "show-recorder")
    plan = loopback.pod_plan(deployment)
    volume = plan.volumes["s3-credentials"]
    assert (volume.kind, volume.source, volume.optional) == ("secret", "recordings-s3", True)
    assert volume.items == (("accessKeyId", "accessKeyId"), ("secretAccessKey", "secretAccessKey"))
    mounts = loopback.local_mounts(plan, {name: f"/run/local/{name}" for name in plan.volumes})
    assert loopback.rewrite_path(f"{S3_SECRET_DIR}/accessKeyId", mounts) == "/run/local/s3-credentials/accessKeyId"
