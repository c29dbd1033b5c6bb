"""Events are the differences between stored and new status: each transition once, none on repeats."""

from __future__ import annotations

from onair.api.agent import IngestStatus, TranscoderStatus
from onair.controller.events import NORMAL, WARNING, transition_events


def reasons(old, new):
    return [e.reason for e in transition_events(old, new)]


def stalled(reason: str, message: str = "m") -> dict:
    return {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": reason},
            {"type": "Stalled", "status": "True", "reason": reason, "message": message},
        ]
    }


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
    assert reasons({"phase": "backstage", "viewersAllowed": False}, {"phase": "backstage", "viewersAllowed": True}) == [
        "JoinAheadOpened"
    ]
    # Going live opens playback too, but that is WentLive, not join-ahead.
    assert reasons({"phase": "backstage", "viewersAllowed": False}, {"phase": "live", "viewersAllowed": True}) == [
        "WentLive"
    ]
    assert reasons({}, {"dvrClearedAt": "2026-01-01T00:00:00Z"}) == ["DvrCleared"]
    assert reasons({"dvrClearedAt": "2026-01-01T00:00:00Z"}, {"dvrClearedAt": "2026-01-01T00:00:00Z"}) == []


def test_stalled_and_recovered():
    ev = transition_events({}, stalled("CallTypeNotFound", "CallType 'x' does not exist"))
    assert [(e.type, e.reason, e.message) for e in ev] == [(WARNING, "CallTypeMissing", "CallType 'x' does not exist")]
    # Still stalled for the same reason: no repeat.
    assert reasons(stalled("CallTypeNotFound"), stalled("CallTypeNotFound")) == []
    assert reasons(stalled("CallTypeNotFound"), stalled("ApplyFailed")) == ["ApplyFailed"]
    ev = transition_events(
        stalled("CallTypeNotFound"), {"conditions": [{"type": "Ready", "status": "True", "reason": "x"}]}
    )
    assert [(e.type, e.reason) for e in ev] == [(NORMAL, "CallTypeFound")]
    assert reasons(stalled("ApplyFailed"), {"conditions": []}) == ["Recovered"]


def test_failover_through_a_poll_that_finds_no_source_on_air():
    # Stored statuses as the operator writes them (render.status keeps lastActiveSource).
    on_main = {"activeSource": "main", "lastActiveSource": "main"}
    between = {"lastActiveSource": "main"}
    on_backup = {"activeSource": "backup", "lastActiveSource": "backup"}
    assert reasons(on_main, between) == []
    assert reasons(between, on_backup) == ["FailedOverToBackup"]
    assert reasons(on_backup, {"lastActiveSource": "backup"}) == []
    assert reasons({"lastActiveSource": "backup"}, on_main) == ["ReturnedToMain"]
    # The first source of a Livestream is no failover, whichever it is.
    assert reasons({}, on_backup) == [] and reasons({}, on_main) == []
    # Statuses stored before lastActiveSource existed.
    assert reasons({"activeSource": "main"}, on_backup) == ["FailedOverToBackup"]


def test_a_failover_and_return_between_two_polls_is_told_by_the_switch_counts():
    before = {"activeSource": "main", "lastActiveSource": "main", "sourceSwitches": {"backup": 1, "main": 1}}
    after = {"activeSource": "main", "lastActiveSource": "main", "sourceSwitches": {"backup": 2, "main": 2}}
    assert reasons(before, after) == ["FailedOverToBackup", "ReturnedToMain"]
    assert reasons(after, after) == []  # nothing new: nothing again
    # The other way round: on backup before and after, main was on air in between.
    on_backup = {"activeSource": "backup", "lastActiveSource": "backup", "sourceSwitches": {"backup": 1}}
    flipped = {"activeSource": "backup", "lastActiveSource": "backup", "sourceSwitches": {"backup": 2, "main": 1}}
    assert reasons(on_backup, flipped) == ["ReturnedToMain", "FailedOverToBackup"]
    # Counts that went down come from a new transcoder process; counts first seen compare with nothing.
    restarted = {"activeSource": "main", "lastActiveSource": "main", "sourceSwitches": {"backup": 1, "main": 1}}
    assert reasons(after, restarted) == []
    assert reasons({"activeSource": "main", "lastActiveSource": "main"}, after) == []
    # A switch that the source comparison already reports is not reported twice.
    to_backup = {"activeSource": "backup", "lastActiveSource": "backup", "sourceSwitches": {"backup": 2, "main": 1}}
    assert reasons(before, to_backup) == ["FailedOverToBackup"]


def test_the_status_carries_the_transcoders_switch_counts():
    from tests.unit.test_render_status import healthy, status

    agents = healthy()
    agents["transcoder"] = TranscoderStatus(active_source="main", source_switches={"backup": 3, "main": 3})
    assert status({"phase": "live"}, agents=agents)["sourceSwitches"] == {"backup": 3, "main": 3}
    assert "sourceSwitches" not in status({"phase": "live"}, agents=healthy())


def test_events_follow_the_transcoder_across_polls_including_a_gap():
    from tests.unit.test_render_status import healthy, status

    def poll(previous, active, backup_receiving=True):
        agents = healthy(**{"ingest-backup": IngestStatus(slot="backup", receiving=backup_receiving)})
        agents["transcoder"] = TranscoderStatus(active_source=active)
        return status({"phase": "live"}, {"ingest": {"backup": True}}, agents=agents, previous=previous)

    seen, stored = [], None
    for active in ("main", "main", None, None, "backup", "backup", None, "backup", None, "main"):
        new = poll(stored, active)
        seen += reasons(stored or {}, new)
        stored = new
    assert [r for r in seen if r in ("FailedOverToBackup", "ReturnedToMain")] == [
        "FailedOverToBackup",
        "ReturnedToMain",
    ]
    assert "activeSource" not in poll(stored, None) and poll(stored, None)["lastActiveSource"] == "main"


def recording_condition(status: str, reason: str, message: str = "why and the fix") -> dict:
    return {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AgentsReady"},
            {"type": "Recording", "status": status, "reason": reason, "message": message},
        ]
    }


def test_a_recording_that_cannot_start_is_a_warning_once_per_reason():
    starting = recording_condition("Unknown", "RecordingStarting")
    stuck = recording_condition(
        "False", "RecordingSourceUnavailable", "playlist answered HTTP 404; check the transcoder"
    )
    ev = transition_events(starting, stuck)
    assert [(e.type, e.reason, e.message) for e in ev] == [
        (WARNING, "RecordingSourceUnavailable", "playlist answered HTTP 404; check the transcoder")
    ]
    assert reasons(stuck, recording_condition("False", "RecordingSourceUnavailable", "other words")) == []
    assert reasons(stuck, recording_condition("False", "RecordingFailed")) == ["RecordingFailed"]
    assert reasons({}, recording_condition("False", "NothingTranscodedToRecord")) == ["NothingTranscodedToRecord"]
    # The normal states of a recording are no warnings.
    for normal in ("WaitingForInput", "RecordingStarting", "RecordingInProgress", "RecorderNotReporting"):
        assert reasons({}, recording_condition("False", normal)) == []
