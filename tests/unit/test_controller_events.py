"""Events are the differences between stored and new status: each transition once, none on repeats."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from onair.api.agent import TranscoderStatus
from onair.controller.events import NORMAL, WARNING, broadcast_problem, transition_events


def reasons(old, new):
    return [e.reason for e in transition_events(old, new)]


def stalled(reason: str, message: str = "m") -> dict:
    return {"conditions": [{"type": "Ready", "status": "False", "reason": reason},
                           {"type": "Stalled", "status": "True", "reason": reason, "message": message}]}


def test_phase_transitions():
    assert reasons({}, {"phase": "backstage"}) == ["Backstage"]
    assert reasons({"phase": "backstage"}, {"phase": "live"}) == ["WentLive"]
    assert reasons({"phase": "live"}, {"phase": "backstage"}) == ["ReturnedToBackstage"]
    assert reasons({"phase": "live"}, {"phase": "ended"}) == ["Ended"]
    assert reasons({"phase": "live"}, {"phase": "live"}) == []


def test_ingest_and_backup():
    assert reasons({"live": False}, {"live": True}) == ["IngestStarted"]
    ev = transition_events({"live": True}, {"live": False})
    assert [(e.type, e.reason) for e in ev] == [(WARNING, "IngestStopped")]
    # The first status ever says "not live": nothing stopped, so nothing to announce.
    assert reasons({}, {"live": False, "backupLive": False}) == []
    assert reasons({"backupLive": False}, {"backupLive": True}) == ["BackupLive"]
    assert reasons({"backupLive": True}, {"backupLive": False}) == ["BackupLost"]
    assert reasons({"activeSource": "main"}, {"activeSource": "backup"}) == ["FailedOverToBackup"]
    assert reasons({"activeSource": "backup"}, {"activeSource": "main"}) == ["ReturnedToMain"]


def test_broadcasting_recording_viewers_dvr():
    assert reasons({"broadcasting": False}, {"broadcasting": True}) == ["BroadcastingStarted"]
    assert reasons({"broadcasting": True}, {"broadcasting": False}) == ["BroadcastingStopped"]
    assert reasons({}, {"broadcasting": False, "recording": False}) == []
    assert reasons({"recording": False}, {"recording": True}) == ["RecordingStarted"]
    assert reasons({"recording": True}, {"recording": False}) == ["RecordingStopped"]
    assert reasons({"phase": "backstage", "viewersAllowed": False},
                   {"phase": "backstage", "viewersAllowed": True}) == ["JoinAheadOpened"]
    # Going live opens playback too, but that is WentLive, not join-ahead.
    assert reasons({"phase": "backstage", "viewersAllowed": False}, {"phase": "live", "viewersAllowed": True}) == ["WentLive"]
    assert reasons({}, {"dvrClearedAt": "2026-01-01T00:00:00Z"}) == ["DvrCleared"]
    assert reasons({"dvrClearedAt": "2026-01-01T00:00:00Z"}, {"dvrClearedAt": "2026-01-01T00:00:00Z"}) == []


def test_stalled_and_recovered():
    ev = transition_events({}, stalled("CallTypeNotFound", "CallType 'x' does not exist"))
    assert [(e.type, e.reason, e.message) for e in ev] == [(WARNING, "CallTypeMissing", "CallType 'x' does not exist")]
    # Still stalled for the same reason: no repeat.
    assert reasons(stalled("CallTypeNotFound"), stalled("CallTypeNotFound")) == []
    assert reasons(stalled("CallTypeNotFound"), stalled("ApplyFailed")) == ["ApplyFailed"]
    ev = transition_events(stalled("CallTypeNotFound"), {"conditions": [{"type": "Ready", "status": "True", "reason": "x"}]})
    assert [(e.type, e.reason) for e in ev] == [(NORMAL, "CallTypeFound")]
    assert reasons(stalled("ApplyFailed"), {"conditions": []}) == ["Recovered"]


def test_broadcast_problem_only_when_it_matters():
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    fresh = TranscoderStatus(last_segment_at=now - timedelta(seconds=2), qualities=["720p"])
    stale = TranscoderStatus(last_segment_at=now - timedelta(seconds=60))
    assert broadcast_problem(False, True, None, now, 2) is None  # not wanted
    assert broadcast_problem(True, False, None, now, 2) is None  # nothing to transcode
    assert broadcast_problem(True, True, fresh, now, 2) is None
    assert broadcast_problem(True, True, None, now, 2) == "the transcoder agent is unreachable"
    assert broadcast_problem(True, True, TranscoderStatus(), now, 2) == "the transcoder has not written any segment"
    assert broadcast_problem(True, True, stale, now, 2) == "the transcoder wrote no segment for 60 s"
    # Long segments get proportionally more slack.
    assert broadcast_problem(True, True, TranscoderStatus(last_segment_at=now - timedelta(seconds=25)), now, 10) is None
