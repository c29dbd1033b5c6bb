from onair.api.settings import DEFAULT_SETTINGS, CallSettings
from onair.render.effective import effective_settings


def test_defaults_when_nothing_is_set():
    assert effective_settings(None, None) == DEFAULT_SETTINGS


def test_override_wins_over_calltype_which_wins_over_defaults():
    calltype = CallSettings.model_validate({"dvr": {"durationSeconds": 600}, "backstage": {"enabled": False}})
    override = CallSettings.model_validate(
        {"dvr": {"enabled": False}, "broadcasting": {"hls": {"qualityTracks": ["480p"]}}}
    )
    eff = effective_settings(calltype, override)
    assert eff.dvr.duration_seconds == 600 and eff.dvr.enabled is False
    assert eff.backstage.enabled is False and eff.backstage.join_ahead_time_seconds == 0
    # Lists replace rather than merge: the override is the whole ladder.
    assert eff.broadcasting.hls.quality_tracks == ["480p"]
    assert eff.broadcasting.outputs.dash is True


def test_override_of_a_nested_field_keeps_its_siblings():
    override = CallSettings.model_validate({"recording": {"mode": "auto-on"}})
    eff = effective_settings(None, override)
    assert eff.recording.mode == "auto-on"
    assert eff.recording.type == "origin" and eff.recording.split_seconds == 14400
