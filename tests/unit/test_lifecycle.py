from datetime import datetime, timedelta, timezone

import pytest

from onair.api.agent import Desired
from onair.api.livestream import LivestreamSpec
from onair.api.settings import CallSettings
from onair.render.effective import effective_settings
from onair.render.lifecycle import Lifecycle, desired_lifecycle, recording_without_outputs, to_agent_desired

NOW = datetime(2025, 7, 1, 12, 0, 0, tzinfo=timezone.utc)


def spec(**fields) -> LivestreamSpec:
    return LivestreamSpec.model_validate({"callType": "livestream", **fields})


def settings(**fields) -> CallSettings:
    return effective_settings(CallSettings.model_validate(fields), None)


def lc(spec_fields=None, settings_fields=None, now=NOW) -> Lifecycle:
    return desired_lifecycle(spec(**(spec_fields or {})), settings(**(settings_fields or {})), now)


# ----------------------------------------------------------------------------- phase
def test_phase_defaults_to_backstage_when_backstage_is_enabled():
    assert lc().phase == "backstage"


def test_phase_defaults_to_live_without_backstage():
    assert lc(settings_fields={"backstage": {"enabled": False}}).phase == "live"


def test_explicit_phase_wins_over_the_default():
    assert lc({"phase": "live"}).phase == "live"
    assert lc({"phase": "backstage"}, {"backstage": {"enabled": False}}).phase == "backstage"


# ----------------------------------------------------------------------------- broadcasting
# (mode, phase, goLive.startHls, stopLive.continueHls) -> broadcasting
BROADCASTING = [
    ("auto-on", "live", None, None, True),
    ("auto-on", "backstage", None, None, False),
    ("auto-on", "backstage", None, True, True),
    ("auto-on", "backstage", None, False, False),
    ("available", "live", None, None, False),
    ("available", "live", True, None, True),
    ("available", "live", False, None, False),
    ("available", "backstage", True, None, False),
    ("available", "backstage", True, True, True),
    ("available", "backstage", None, True, False),
    ("disabled", "live", True, True, False),
    ("auto-on", "ended", True, True, False),
    ("available", "ended", True, True, False),
]


@pytest.mark.parametrize("mode,phase,start_hls,continue_hls,expected", BROADCASTING)
def test_broadcasting_truth_table(mode, phase, start_hls, continue_hls, expected):
    fields = {"phase": phase}
    if start_hls is not None:
        fields["goLive"] = {"startHls": start_hls}
    if continue_hls is not None:
        fields["stopLive"] = {"continueHls": continue_hls}
    assert lc(fields, {"broadcasting": {"mode": mode}}).broadcasting is expected


@pytest.mark.parametrize(
    "mode,phase,explicit,expected",
    [
        ("available", "backstage", True, True),  # startHLSBroadcasting in backstage
        ("auto-on", "live", False, False),  # stopHLSBroadcasting while live
        ("available", "live", True, True),
        ("disabled", "live", True, False),  # disabled is never overridden
        ("auto-on", "ended", True, False),  # ended is final
    ],
)
def test_explicit_broadcasting_switch(mode, phase, explicit, expected):
    assert lc({"phase": phase, "broadcasting": explicit}, {"broadcasting": {"mode": mode}}).broadcasting is expected


# ----------------------------------------------------------------------------- outputs
# (mode, phase, spec.broadcasting, recording type or None for no recording) -> (public broadcasting, outputs)
OUTPUTS = [
    # The backstage preview: the built-in livestream CallType (auto-on) produces outputs in backstage
    # for members with join-backstage, without anyone writing spec.broadcasting; viewers see none of it.
    ("auto-on", "backstage", None, None, False, True),
    ("available", "backstage", None, None, False, True),
    ("auto-on", "backstage", False, None, False, False),  # stopHLSBroadcasting stops the preview too
    ("auto-on", "backstage", True, None, True, True),  # startHLSBroadcasting: public in backstage
    ("disabled", "backstage", None, None, False, False),  # disabled is never overridden
    ("auto-on", "live", None, None, True, True),
    ("available", "live", None, None, False, False),  # nothing asked for HLS once live
    ("auto-on", "live", False, None, False, False),
    # A transcoded recording reads the origin: outputs for it even with public broadcasting off.
    ("available", "live", None, "transcoded", False, True),
    ("auto-on", "live", False, "transcoded", False, True),
    ("auto-on", "backstage", False, "transcoded", False, True),
    ("available", "live", None, "origin", False, False),  # an origin recording reads the ingest
    ("disabled", "live", None, "transcoded", False, False),  # nothing to transcode: reported in status
    ("auto-on", "ended", True, "transcoded", False, False),
]


@pytest.mark.parametrize("mode,phase,explicit,record_type,public,outputs", OUTPUTS)
def test_outputs_truth_table(mode, phase, explicit, record_type, public, outputs):
    fields = {"phase": phase}
    if explicit is not None:
        fields["broadcasting"] = explicit
    recording = {"mode": "disabled"}
    if record_type is not None:
        fields["recording"] = True
        recording = {"mode": "available", "type": record_type}
    got = lc(fields, {"broadcasting": {"mode": mode}, "recording": recording})
    assert (got.broadcasting, got.outputs) == (public, outputs)


def test_inactive_stream_produces_no_outputs():
    assert lc({"phase": "backstage", "active": False}).outputs is False
    assert (
        lc(
            {"phase": "live", "active": False, "recording": True},
            {"recording": {"mode": "available", "type": "transcoded"}},
        ).outputs
        is False
    )


def test_recording_without_outputs_only_for_a_transcoded_recording_with_broadcasting_disabled():
    def check(broadcasting_mode, record_type, recording=True):
        effective = settings(
            broadcasting={"mode": broadcasting_mode}, recording={"mode": "available", "type": record_type}
        )
        lifecycle = desired_lifecycle(spec(phase="live", recording=recording), effective, NOW)
        return recording_without_outputs(lifecycle, effective)

    assert check("disabled", "transcoded") is True
    assert check("disabled", "transcoded", recording=False) is False
    assert check("disabled", "origin") is False
    assert check("available", "transcoded") is False


def test_the_transcoder_gets_outputs_and_the_origin_public_broadcasting():
    preview = to_agent_desired(lc({"phase": "backstage"}), generation=1)
    assert (preview.broadcasting, preview.public_broadcasting, preview.viewers_allowed) == (True, False, False)
    live = to_agent_desired(lc({"phase": "live"}), generation=2)
    assert (live.broadcasting, live.public_broadcasting, live.viewers_allowed) == (True, True, True)
    recording_only = to_agent_desired(
        lc({"phase": "live", "broadcasting": False, "recording": True}, {"recording": {"type": "transcoded"}}),
        generation=3,
    )
    assert (recording_only.broadcasting, recording_only.public_broadcasting) == (True, False)


def test_inactive_stream_neither_broadcasts_nor_records():
    got = lc(
        {"phase": "live", "active": False, "broadcasting": True, "recording": True}, {"recording": {"mode": "auto-on"}}
    )
    assert (got.active, got.broadcasting, got.recording) == (False, False, False)
    # The switch does not hide the stream: viewers still get the (idle) URLs.
    assert got.viewers_allowed is True


def test_active_defaults_to_true():
    assert lc().active is True and lc({"active": True}).active is True


# ----------------------------------------------------------------------------- recording
# (mode, phase, goLive.startRecording, stopLive.continueRecording) -> recording
RECORDING = [
    ("auto-on", "backstage", None, None, True),  # "recording starts in backstage mode"
    ("auto-on", "live", None, None, True),
    ("auto-on", "ended", None, None, False),
    ("available", "backstage", None, None, False),
    ("available", "live", None, None, False),
    ("available", "live", True, None, True),
    ("available", "backstage", True, None, False),  # stopLive stops recording...
    ("available", "backstage", True, True, True),  # ...unless continueRecording
    ("available", "backstage", None, True, False),  # nothing to continue
    ("disabled", "live", True, True, False),
    ("available", "ended", True, True, False),
]


@pytest.mark.parametrize("mode,phase,start,cont,expected", RECORDING)
def test_recording_truth_table(mode, phase, start, cont, expected):
    fields = {"phase": phase}
    if start is not None:
        fields["goLive"] = {"startRecording": start}
    if cont is not None:
        fields["stopLive"] = {"continueRecording": cont}
    assert lc(fields, {"recording": {"mode": mode}}).recording is expected


@pytest.mark.parametrize(
    "mode,phase,explicit,expected",
    [
        ("available", "backstage", True, True),
        ("auto-on", "backstage", False, False),
        ("auto-on", "live", False, False),
        ("disabled", "live", True, False),
        ("available", "ended", True, False),
    ],
)
def test_explicit_recording_switch(mode, phase, explicit, expected):
    assert lc({"phase": phase, "recording": explicit}, {"recording": {"mode": mode}}).recording is expected


def test_defaults_backstage_auto_on_broadcast_available_recording():
    got = lc()
    assert (got.phase, got.broadcasting, got.recording, got.viewers_allowed) == ("backstage", False, False, False)
    assert got.outputs is True  # the preview for members with join-backstage
    got = lc({"phase": "live"})
    assert (got.broadcasting, got.recording, got.viewers_allowed) == (True, False, True)


# ----------------------------------------------------------------------------- viewers & join-ahead
def test_viewers_allowed_by_phase():
    assert lc({"phase": "backstage"}).viewers_allowed is False
    assert lc({"phase": "live"}).viewers_allowed is True
    assert lc({"phase": "ended"}).viewers_allowed is True  # the DVR stays playable
    assert lc({"phase": "backstage"}, {"backstage": {"enabled": False}}).viewers_allowed is True


def join_ahead(now, starts_in: timedelta, ahead: int, **spec_fields) -> Lifecycle:
    return lc(
        {"startsAt": (NOW + starts_in).isoformat(), **spec_fields},
        {"backstage": {"enabled": True, "joinAheadTimeSeconds": ahead}},
        now,
    )


def test_join_ahead_window_opens_exactly_at_starts_at_minus_join_ahead():
    opens = NOW + timedelta(minutes=10) - timedelta(seconds=300)
    before = join_ahead(opens - timedelta(microseconds=1), timedelta(minutes=10), 300)
    at = join_ahead(opens, timedelta(minutes=10), 300)
    assert before.viewers_allowed is False and before.next_change_at == opens
    assert at.viewers_allowed is True and at.next_change_at is None
    assert at.phase == "backstage" and at.broadcasting is False


def test_join_ahead_stays_open_after_starts_at_while_in_backstage():
    got = join_ahead(NOW + timedelta(hours=2), timedelta(minutes=10), 300)
    assert got.viewers_allowed is True and got.next_change_at is None


def test_zero_join_ahead_opens_nothing_early():
    got = join_ahead(NOW + timedelta(hours=1), timedelta(minutes=10), 0)
    assert got.viewers_allowed is False and got.next_change_at is None


def test_no_timer_without_starts_at_or_once_live():
    assert lc({}, {"backstage": {"joinAheadTimeSeconds": 300}}).next_change_at is None
    live = join_ahead(NOW, timedelta(minutes=10), 300, phase="live")
    assert live.viewers_allowed is True and live.next_change_at is None
    no_backstage = lc(
        {"startsAt": (NOW + timedelta(minutes=10)).isoformat()},
        {"backstage": {"enabled": False, "joinAheadTimeSeconds": 300}},
    )
    assert no_backstage.next_change_at is None


def test_naive_times_are_utc():
    naive_now = NOW.replace(tzinfo=None)
    got = lc({"startsAt": "2025-07-01T12:05:00"}, {"backstage": {"joinAheadTimeSeconds": 600}}, naive_now)
    assert got.viewers_allowed is True
    other_zone = lc({"startsAt": "2025-07-01T14:30:00+02:00"}, {"backstage": {"joinAheadTimeSeconds": 60}})
    assert other_zone.viewers_allowed is False
    assert other_zone.next_change_at == datetime(2025, 7, 1, 12, 29, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- agent desired
def test_to_agent_desired_carries_the_lifecycle_and_generation():
    got = to_agent_desired(lc({"phase": "live", "active": False}), generation=7)
    assert got == Desired(
        phase="live",
        broadcasting=False,
        public_broadcasting=False,
        recording=False,
        active=False,
        viewers_allowed=True,
        generation=7,
    )
    assert Desired.model_validate(got.model_dump(by_alias=True, mode="json")) == got
    # Join-ahead reaches the origin as viewersAllowed, so it can open backstage playback early.
    backstage = to_agent_desired(lc({"phase": "backstage"}), generation=1)
    assert backstage.phase == "backstage" and backstage.viewers_allowed is False


def test_an_ended_stream_switches_the_agents_off_but_stays_playable():
    # "ended: pushes are refused, the DVR stays playable": the ingest refuses on active=false.
    ended = to_agent_desired(lc({"phase": "ended"}), generation=3)
    assert ended.active is False and ended.phase == "ended" and ended.viewers_allowed is True
    assert to_agent_desired(lc({"phase": "live"}), generation=3).active is True
