from datetime import datetime, timedelta, timezone

from onair.api.agent import IngestStatus, OriginStatus, RecordedPart, RecorderStatus, Recording, TranscoderStatus
from onair.api.calltype import CallType
from onair.api.livestream import LivestreamSpec, LivestreamStatus
from onair.api.operator_config import OperatorConfig
from onair.render.children import render_children
from onair.render.conditions import find_condition
from onair.render.credentials import Credentials
from onair.render.lifecycle import desired_lifecycle
from onair.render.resolve import CALLTYPE_NOT_FOUND, INVALID_SPEC, Problem, resolve
from onair.render.status import BROADCASTING_FAILED, broadcast_problem, livestream_status, status_patch

T0 = datetime(2025, 7, 1, 12, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=5)
CREDS = Credentials(
    stream_key="streamkey0123",
    srt_passphrase="srtpassphrase0123",
    whip_token="whiptoken0123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)


def ls(**spec):
    return {
        "metadata": {"name": "show", "namespace": "media", "uid": "uid-1", "generation": 4},
        "spec": {"callType": "livestream", **spec},
    }


def calltype(**settings):
    return CallType.model_validate({"spec": {"settings": settings}})


def status(spec_fields=None, settings=None, agents=None, previous=None, now=T0, **kw):
    obj = ls(**(spec_fields or {}))
    rendered = render_children(obj, calltype(**(settings or {})), OperatorConfig(), CREDS)
    lifecycle = desired_lifecycle(LivestreamSpec.model_validate(obj["spec"]), rendered.effective, now)
    out = livestream_status(
        lifecycle=lifecycle, rendered=rendered, agents=agents or {}, previous=previous, generation=4, now=now, **kw
    )
    LivestreamStatus.model_validate(out)  # every key is a real status field, camelCase
    return out


def healthy(receiving=True, **extra):
    return {
        "ingest": IngestStatus(slot="main", receiving=receiving, protocol="rtmp"),
        "transcoder": TranscoderStatus(
            active_source="main" if receiving else None,
            speed=1.0123,
            qualities=["720p", "360p"],
            broadcasting=receiving,
            last_segment_at=T0 - timedelta(seconds=1) if receiving else None,
        ),
        "origin": OriginStatus(dvr_window_seconds=3600),
        "recorder": RecorderStatus(recording=False),
        **extra,
    }


def types(conds):
    return {c["type"]: c["status"] for c in conds}


def test_full_status_of_a_live_stream():
    out = status({"phase": "live"}, agents=healthy())
    assert out["observedGeneration"] == 4 and out["phase"] == "live"
    assert out["live"] is True and "backupLive" not in out and out["activeSource"] == "main"
    assert out["viewersAllowed"] is True and out["recording"] is False
    assert out["broadcasting"] is True and out["broadcastingDesired"] is True
    assert out["transcodingSpeed"] == 1.0 and out["transcodedQualities"] == ["720p", "360p"]
    assert out["ingest"]["rtmp"] == "rtmp://show-ingest.media.svc:1935/live"
    assert out["playback"]["hlsCmaf"] == "http://show-origin.media.svc:8081/hls/cmaf/master.m3u8"
    assert out["credentialsSecret"] == "show-credentials"
    assert out["liveSince"] == "2025-07-01T12:00:00Z"
    assert out["effectiveSettings"]["dvr"] == {"enabled": True, "durationSeconds": 3600}
    assert types(out["conditions"]) == {"Ready": "True"}
    assert "streamkey0123" not in repr(out)


def test_unreachable_agents_mean_reconciling_and_not_live():
    agents = healthy()
    agents["ingest"] = None
    del agents["recorder"]
    out = status({"phase": "live"}, agents=agents)
    assert out["live"] is False and "recording" not in out
    assert types(out["conditions"]) == {"Ready": "False", "Reconciling": "True"}
    assert find_condition(out["conditions"], "Reconciling")["message"] == "waiting for agents: ingest, recorder"


def test_unreachable_agents_say_why_their_pods_do_not_run():
    agents = healthy()
    agents["ingest"] = None
    del agents["recorder"]
    why = "pod show-recorder-1 cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu."
    out = status({"phase": "live"}, agents=agents, pod_problems={"recorder": why, "origin": "not missing"})
    assert find_condition(out["conditions"], "Ready")["message"] == f"waiting for agents: ingest, recorder ({why})"


def test_backup_and_pull_sources():
    agents = healthy(receiving=False, **{"ingest-backup": IngestStatus(slot="backup", receiving=True)})
    agents["transcoder"] = TranscoderStatus(active_source="backup")
    out = status({"phase": "live"}, {"ingest": {"backup": True}}, agents=agents)
    assert (out["live"], out["backupLive"], out["activeSource"]) == (False, True, "backup")
    assert out["ingest"]["backupRtmp"] == "rtmp://show-ingest-backup.media.svc:1935/live"

    pull = {"source": {"mode": "pull", "uris": ["rtmp://example.org/live/x"]}, "phase": "live"}
    agents = {
        "transcoder": TranscoderStatus(active_source="pull"),
        "origin": OriginStatus(dvr_window_seconds=60),
        "recorder": RecorderStatus(recording=True, duration_seconds=12.6),
    }
    out = status(pull, agents=agents)
    assert out["live"] is True and "ingest" not in out and out["activeSource"] == "pull"
    assert out["recording"] is True and out["recordingDurationSeconds"] == 13.0
    assert types(out["conditions"]) == {"Ready": "True"}


def test_recording_is_false_without_a_recorder():
    out = status(
        {"phase": "live"},
        {"recording": {"mode": "disabled"}},
        agents={k: v for k, v in healthy().items() if k != "recorder"},
    )
    assert out["recording"] is False and types(out["conditions"]) == {"Ready": "True"}


def test_a_failing_recorder_is_not_ready_while_recording_is_wanted():
    agents = healthy(recorder=RecorderStatus(recording=False, state="disk_full", error="0 bytes free on /recordings"))
    out = status({"phase": "live", "recording": True}, agents=agents)
    ready = find_condition(out["conditions"], "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RecordingFailed"
    assert "0 bytes free" in ready["message"] and types(out["conditions"]) == {"Ready": "False", "Recording": "False"}
    recording = find_condition(out["conditions"], "Recording")
    assert recording["reason"] == "RecordingFailed" and "0 bytes free" in recording["message"]
    # Not wanted: the recorder's state does not matter.
    assert types(status({"phase": "live"}, agents=agents)["conditions"]) == {"Ready": "True"}


def test_live_since_is_kept_while_live_and_cleared_in_backstage():
    first = status({"phase": "live"}, agents=healthy())
    later = status({"phase": "live"}, agents=healthy(), previous=first, now=T1 + timedelta(hours=1))
    assert later["liveSince"] == first["liveSince"]
    back = status({"phase": "backstage"}, agents=healthy(), previous=later, now=T1 + timedelta(hours=2))
    assert "liveSince" not in back and back["viewersAllowed"] is False and back["broadcastingDesired"] is False
    again = status({"phase": "live"}, agents=healthy(), previous=back, now=T1 + timedelta(hours=3))
    assert again["liveSince"] == "2025-07-01T15:00:05Z"


def test_dvr_cleared_at_is_recorded_once_and_kept():
    first = status(
        {"phase": "live"}, agents=healthy(), dvr_cleared_at=datetime(2025, 7, 1, 11, 59, 30, 999, timezone.utc)
    )
    assert first["dvrClearedAt"] == "2025-07-01T11:59:30Z"
    assert status({"phase": "live"}, agents=healthy(), previous=first, now=T1)["dvrClearedAt"] == first["dvrClearedAt"]


def test_problem_keeps_previous_fields_and_reports_stalled():
    previous = status({"phase": "live"}, agents=healthy())
    out = livestream_status(
        lifecycle=None,
        rendered=None,
        agents={},
        previous=previous,
        generation=5,
        now=T1,
        problem=Problem(CALLTYPE_NOT_FOUND, "CallType 'x' does not exist"),
    )
    assert out["observedGeneration"] == 5 and out["playback"] == previous["playback"] and out["live"] is True
    assert types(out["conditions"]) == {"Ready": "False", "Stalled": "True"}
    assert find_condition(out["conditions"], "Stalled")["reason"] == CALLTYPE_NOT_FOUND
    fresh = livestream_status(
        lifecycle=None,
        rendered=None,
        agents={},
        previous=None,
        generation=1,
        now=T0,
        problem=Problem(INVALID_SPEC, "bad"),
    )
    assert set(fresh) == {"observedGeneration", "conditions"}


# ----------------------------------------------------------------------------- status_patch
def test_no_patch_when_a_poll_changes_nothing():
    first = status({"phase": "live"}, agents=healthy())
    second = status({"phase": "live"}, agents=healthy(), previous=first, now=T1)
    assert second == first and status_patch(first, second) is None


def test_patch_carries_only_what_changed():
    first = status({"phase": "live"}, agents=healthy())
    back = status({"phase": "backstage"}, agents=healthy(receiving=False), previous=first, now=T1)
    patch = status_patch(first, back)
    assert patch["phase"] == "backstage" and patch["live"] is False
    assert patch["liveSince"] is None and patch["activeSource"] is None  # merge-patch deletes
    assert "playback" not in patch and "effectiveSettings" not in patch and "conditions" not in patch
    # Reading the patch back into the old status yields the new one.
    merged = {k: v for k, v in {**first, **patch}.items() if v is not None}
    assert merged == back


def test_patch_recurses_into_maps_and_replaces_lists():
    old = {"a": {"x": 1, "y": 2}, "l": [1, 2], "gone": 1}
    new = {"a": {"x": 1, "y": 3, "z": 4}, "l": [1]}
    assert status_patch(old, new) == {"a": {"y": 3, "z": 4}, "l": [1], "gone": None}
    assert status_patch(None, {"a": 1}) == {"a": 1}
    assert status_patch({}, {}) is None


# ----------------------------------------------------------------------------- resolve
def test_resolve_reports_missing_calltype_and_invalid_spec():
    missing = resolve(ls(), None)
    assert not missing.ok and missing.problem.reason == CALLTYPE_NOT_FOUND and "'livestream'" in missing.problem.message
    invalid = resolve({"spec": {"callType": "livestream", "phase": "paused"}}, calltype())
    assert invalid.problem.reason == INVALID_SPEC and "phase" in invalid.problem.message
    ok = resolve(ls(settingsOverride={"dvr": {"durationSeconds": 60}}), calltype(dvr={"enabled": False}))
    assert ok.ok and ok.effective.dvr.duration_seconds == 60 and ok.effective.dvr.enabled is False


def test_a_reconnecting_recorder_is_still_recording():
    """Main -> backup: the recorder reconnects within its finalize window; one recording, so no
    recording=false blip (and no RecordingStopped/RecordingStarted pair) in between."""
    agents = healthy(recorder=RecorderStatus(recording=False, state="reconnecting", duration_seconds=40))
    out = status({"phase": "live", "recording": True}, agents=agents)
    assert out["recording"] is True and out["recordingDurationSeconds"] == 40
    waiting = healthy(recorder=RecorderStatus(recording=False, state="waiting"))
    assert status({"phase": "live", "recording": True}, agents=waiting)["recording"] is False


# ----------------------------------------------------------------------------- broadcasting
def test_broadcasting_is_what_the_transcoder_produces_next_to_what_is_desired():
    stopped = healthy()
    stopped["transcoder"] = TranscoderStatus(active_source="main", run_id="r1", error="the encoder exited with code 1")
    out = status({"phase": "live"}, agents=stopped)
    assert (out["broadcasting"], out["broadcastingDesired"]) == (False, True)
    out = status({"phase": "live", "broadcasting": False}, agents=healthy())
    # Still producing (stopping, say), but what it makes now is no broadcast: viewers never get it.
    assert (out["broadcasting"], out["broadcastingDesired"], out["outputsProduced"]) == (False, False, True)
    preview = status({"phase": "backstage"}, agents=healthy())
    assert (preview["broadcasting"], preview["broadcastingDesired"], preview["outputsProduced"]) == (False, False, True)
    unreachable = healthy()
    unreachable["transcoder"] = None
    assert status({"phase": "live"}, agents=unreachable)["broadcasting"] is False


def test_broadcast_problem_only_when_it_matters_and_worded_the_same_every_poll():
    producing = TranscoderStatus(broadcasting=True, last_segment_at=T0)
    assert broadcast_problem(False, True, None) is None  # not wanted
    assert broadcast_problem(True, False, None) is None  # nothing to transcode
    assert broadcast_problem(True, True, producing) is None
    assert broadcast_problem(True, True, None) == "the transcoder agent is unreachable"
    assert broadcast_problem(True, True, TranscoderStatus()) == "the transcoder has not published any segment"
    stale = TranscoderStatus(last_segment_at=T0 - timedelta(seconds=60))
    assert broadcast_problem(True, True, stale) == "the transcoder has published no segment since 2025-07-01T11:59:00Z"
    failing = TranscoderStatus(last_segment_at=T0, error="the encoder exited with code 1 (File 'x' already exists)")
    assert broadcast_problem(True, True, failing) == (
        "the transcoder's encoder keeps failing: the encoder exited with code 1 (File 'x' already exists)"
    )


def test_a_broadcast_failure_makes_the_livestream_not_ready_until_it_is_gone():
    message = "HLS/DASH broadcasting should be on and the input is live, but the transcoder agent is unreachable."
    failing = status({"phase": "live"}, agents=healthy(), broadcast_failure=message)
    ready = find_condition(failing["conditions"], "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", BROADCASTING_FAILED, message)
    assert types(failing["conditions"]) == {"Ready": "False"}, "not Stalled: the transcoder retries by itself"
    again = status({"phase": "live"}, agents=healthy(), broadcast_failure=message, previous=failing, now=T1)
    assert status_patch(failing, again) is None
    recovered = status({"phase": "live"}, agents=healthy(), previous=failing, now=T1)
    assert find_condition(recovered["conditions"], "Ready")["status"] == "True"


# ----------------------------------------------------------------------------- recording: why not, what was
TRANSCODED = {"recording": {"mode": "auto-on", "type": "transcoded"}}


def recording_of(out):
    cond = find_condition(out["conditions"], "Recording")
    return (cond["status"], cond["reason"]) if cond else None


def test_the_recording_condition_follows_a_wanted_recording_from_waiting_to_writing():
    waiting = RecorderStatus(
        recording=False, state="waiting", source_error="http://o/hls/cmaf/master.m3u8: playlist answered HTTP 404"
    )
    # Nothing pushed yet: waiting is normal, no problem.
    out = status({}, TRANSCODED, agents=healthy(receiving=False, recorder=waiting))
    assert recording_of(out) == ("False", "WaitingForInput")
    # The input is live: the recorder gets its grace.
    started = status({}, TRANSCODED, agents=healthy(recorder=waiting), previous=out, now=T1)
    assert recording_of(started) == ("Unknown", "RecordingStarting")
    still = status({}, TRANSCODED, agents=healthy(recorder=waiting), previous=started, now=T1 + timedelta(seconds=29))
    assert recording_of(still) == ("Unknown", "RecordingStarting")
    # Past it: why (the recorder's words) and how to fix it.
    stuck = status({}, TRANSCODED, agents=healthy(recorder=waiting), previous=still, now=T1 + timedelta(seconds=30))
    assert recording_of(stuck) == ("False", "RecordingSourceUnavailable")
    message = find_condition(stuck["conditions"], "Recording")["message"]
    assert "playlist answered HTTP 404" in message and "transcoder produces segments" in message
    assert "recording.type: origin" in message
    again = status({}, TRANSCODED, agents=healthy(recorder=waiting), previous=stuck, now=T1 + timedelta(seconds=31))
    assert recording_of(again) == ("False", "RecordingSourceUnavailable")
    # Writing: True; a reconnect is still the same recording.
    writing = RecorderStatus(recording=True, state="recording", duration_seconds=3.0, started_at=T1)
    ok = status({}, TRANSCODED, agents=healthy(recorder=writing), previous=again, now=T1 + timedelta(seconds=32))
    assert recording_of(ok) == ("True", "RecordingInProgress")
    assert types(ok["conditions"])["Ready"] == "True"
    reconnecting = RecorderStatus(recording=False, state="reconnecting", duration_seconds=9.0, started_at=T1)
    assert recording_of(status({}, TRANSCODED, agents=healthy(recorder=reconnecting), previous=ok)) == (
        "True",
        "RecordingInProgress",
    )
    # Not wanted any more: the condition goes away.
    assert recording_of(status({"recording": False}, TRANSCODED, agents=healthy(), previous=ok)) is None


def test_an_unreachable_recorder_never_starts_the_grace_clock():
    unreachable = status({}, TRANSCODED, agents=healthy(recorder=None))
    assert recording_of(unreachable) == ("False", "RecorderNotReporting")
    waiting = RecorderStatus(recording=False, state="waiting")
    later = status({}, TRANSCODED, agents=healthy(recorder=waiting), previous=unreachable, now=T1 + timedelta(hours=1))
    assert recording_of(later) == ("Unknown", "RecordingStarting")


def test_a_transcoded_recording_with_broadcasting_disabled_says_there_is_nothing_to_record():
    settings = {"broadcasting": {"mode": "disabled"}, **TRANSCODED}
    out = status({"phase": "live"}, settings, agents=healthy(recorder=RecorderStatus(recording=False, state="waiting")))
    assert recording_of(out) == ("False", "NothingTranscodedToRecord")
    message = find_condition(out["conditions"], "Recording")["message"]
    assert "broadcasting.mode is disabled" in message and "recording.type: origin" in message


def finished(seconds: float, session: str = "media_show_20250701T120000Z") -> Recording:
    return Recording(
        session=session,
        started_at=T0,
        ended_at=T1,
        duration_seconds=seconds,
        end_reason="recording stopped",
        parts=[RecordedPart(file=f"{session}_part0001.mp4", bytes=123456, duration_seconds=seconds)],
    )


def test_what_was_recorded_stays_in_the_status_after_the_session_the_stream_and_the_recorder():
    recording = status(
        {"phase": "live"},
        TRANSCODED,
        agents=healthy(
            recorder=RecorderStatus(recording=True, state="recording", duration_seconds=41.6, started_at=T0)
        ),
    )
    assert recording["recordingDurationSeconds"] == 42 and "recordings" not in recording
    # Ended: the session is over, its duration and parts stay.
    done = RecorderStatus(recording=False, state="idle", recordings=[finished(42.4)])
    ended = status({"phase": "ended"}, TRANSCODED, agents=healthy(recorder=done), previous=recording)
    assert ended["recordingDurationSeconds"] == 42
    assert ended["recordings"] == [
        {
            "session": "media_show_20250701T120000Z",
            "startedAt": "2025-07-01T12:00:00Z",
            "endedAt": "2025-07-01T12:00:05Z",
            "durationSeconds": 42.4,
            "endReason": "recording stopped",
            "recovered": False,
            "parts": [{"file": "media_show_20250701T120000Z_part0001.mp4", "bytes": 123456, "durationSeconds": 42.4}],
        }
    ]
    # The recorder pod is gone: nothing is forgotten.
    gone = status({"phase": "ended"}, TRANSCODED, agents=healthy(recorder=None), previous=ended)
    assert gone["recordingDurationSeconds"] == 42 and gone["recordings"] == ended["recordings"]
    patch = status_patch(ended, gone) or {}
    assert "recordings" not in patch and "recordingDurationSeconds" not in patch
    # A new session counts from 0; the finished ones are still listed.
    again = status(
        {"phase": "live"},
        TRANSCODED,
        agents=healthy(
            recorder=RecorderStatus(
                recording=True, state="recording", duration_seconds=2.0, started_at=T1, recordings=[finished(42.4)]
            )
        ),
        previous=gone,
    )
    assert again["recordingDurationSeconds"] == 2 and len(again["recordings"]) == 1


def test_each_finished_recording_names_its_recording_object():
    # Gcore's StopRecording answers with the video: after the stop, the status names the object.
    done = RecorderStatus(recording=False, state="idle", recordings=[finished(42.4)])
    out = status({"phase": "live", "recording": False}, TRANSCODED, agents=healthy(recorder=done), name="show")
    assert [r["name"] for r in out["recordings"]] == ["show-20250701t120000z"]
    assert out["recordings"][0]["session"] == "media_show_20250701T120000Z"
