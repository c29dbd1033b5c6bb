"""Status driven by real ingest agents on loopback: publish -> live, stop -> not live, backup, active switch.

The operator polls the agents (GET /status) and pushes the desired lifecycle (PUT /desired)
exactly as in a cluster; only the address of each agent comes from the test's routes instead
of pod IPs.
"""
from __future__ import annotations

import secrets

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.origin import origins  # noqa: F401  (fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.media]

SMALL = dict(width=320, height=180, fps=15)


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"ingest": {"backup": True}})
    yield name
    kube.delete_calltype(name)


def test_status_follows_real_ingest_agents(routes, kube, calltype, namespace, ingest_agent, publishers):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/tv")
    backup = ingest_agent.start(slot="backup", protocols=("rtmp",), livestream=f"{namespace}/tv")
    routes.route(namespace, "tv", "ingest", main.agent_url)
    routes.route(namespace, "tv", "ingest-backup", backup.agent_url)
    kube.create_livestream(namespace, "tv", {"callType": calltype, "phase": "live"})
    st = kube.wait_reconciled(namespace, "tv")["status"]
    assert st["live"] is False and st["backupLive"] is False

    pub = publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(namespace, "tv", lambda s: s.get("live") is True, timeout=30, what="live from the main ingest")
    # Live input, broadcasting wanted (auto-on), but no transcoder answers: announced once.
    wait_for(lambda: "BroadcastingFailed" in kube.event_reasons(namespace, "tv"), 20, what="BroadcastingFailed Event")
    failed = [e for e in kube.events(namespace, "tv") if e["reason"] == "BroadcastingFailed"]
    assert failed[0]["type"] == "Warning" and "transcoder agent is unreachable" in failed[0]["message"]

    pub_backup = publishers.rtmp(backup.rtmp_url, **SMALL)
    kube.wait_status(namespace, "tv", lambda s: s.get("backupLive") is True, timeout=30, what="backup live")
    pub_backup.stop()
    kube.wait_status(namespace, "tv", lambda s: s.get("backupLive") is False, timeout=30, what="backup lost")

    pub.stop()
    kube.wait_status(namespace, "tv", lambda s: s.get("live") is False, timeout=30, what="main stopped")

    def reasons():
        got = kube.event_reasons(namespace, "tv")
        return got if {"IngestStarted", "BackupLive", "BackupLost", "IngestStopped"} <= set(got) else None
    wait_for(reasons, 15, what="ingest Events")


def test_active_false_reaches_the_agent_and_drops_the_publisher(routes, kube, calltype, namespace, ingest_agent,
                                                               publishers):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/onoff")
    routes.route(namespace, "onoff", "ingest", main.agent_url)
    kube.create_livestream(namespace, "onoff", {"callType": calltype, "phase": "live"})
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(namespace, "onoff", lambda s: s.get("live") is True, timeout=30, what="live")

    # Gcore's on/off switch: the operator PUTs active=false on its next poll, the agent drops the
    # publisher and refuses it, and status follows.
    kube.patch_livestream(namespace, "onoff", {"spec": {"active": False}})
    kube.wait_status(namespace, "onoff", lambda s: s.get("live") is False, timeout=30, what="not live once inactive")
    main.wait_log("deactivated", timeout=10)
    assert main.status()["receiving"] is False


def test_unreachable_agents_mean_not_live_and_never_crash(routes, kube, calltype, namespace):
    # A route to a port nobody listens on, and one to something that is not an agent at all.
    routes.route(namespace, "dark", "ingest", "http://127.0.0.1:9")
    routes.route(namespace, "dark", "origin", "http://127.0.0.1:9/not-an-agent")
    kube.create_livestream(namespace, "dark", {"callType": calltype, "phase": "live"})
    st = kube.wait_reconciled(namespace, "dark")["status"]
    assert st["live"] is False
    ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "False" and "waiting for agents" in ready["message"]
    routes.check()


def test_recording_switch_reaches_a_real_recorder(routes, kube, calltype, namespace, ingest_agent, recorder_agent,
                                                  publishers, tmp_path):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/rec")
    recorder = recorder_agent.start(source_url=main.read_url, output_dir=tmp_path / "recordings",
                                    livestream=f"{namespace}/rec")
    routes.route(namespace, "rec", "ingest", main.agent_url)
    routes.route(namespace, "rec", "recorder", recorder.url)
    # recording.mode available: nothing records until asked (GetStream's startRecording).
    kube.create_livestream(namespace, "rec", {"callType": calltype, "phase": "live"})
    publishers.rtmp(main.rtmp_url, **SMALL)
    st = kube.wait_status(namespace, "rec", lambda s: s.get("live") is True and "recording" in s, timeout=30,
                          what="live, recorder reporting")["status"]
    assert st["recording"] is False

    kube.patch_livestream(namespace, "rec", {"spec": {"recording": True}})
    # The operator's part: the start request reaches the recorder through PUT /desired...
    recorder.wait_log("recording start requested", 15)
    # ...and the recorder's report comes back as status.
    try:
        kube.wait_status(namespace, "rec", lambda s: s.get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 1,
                         timeout=30, what="recording with duration")
    except BaseException:
        print("recorder status:", recorder.status(), "\nrecorder log:\n", recorder.log_text()[-3000:])
        raise
    kube.patch_livestream(namespace, "rec", {"spec": {"recording": False}})
    recorder.wait_log("recording stop requested", 15)
    kube.wait_status(namespace, "rec", lambda s: s.get("recording") is False, timeout=30, what="recording stopped")
    wait_for(lambda: {"RecordingStarted", "RecordingStopped"} <= set(kube.event_reasons(namespace, "rec")), 15,
             what="recording Events")
    recorder.wait_status(lambda s: s["files"], 20, "a finished recording file")


def recording_condition(status: dict) -> dict:
    return next((c for c in status.get("conditions") or () if c["type"] == "Recording"), {})


def test_what_was_recorded_stays_in_the_status_after_the_end_and_the_recorder(routes, kube, calltype, namespace,
                                                                              ingest_agent, recorder_agent,
                                                                              publishers, tmp_path):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/kept")
    recordings = tmp_path / "recordings"
    recorder = recorder_agent.start(source_url=main.read_url, output_dir=recordings, livestream=f"{namespace}/kept")
    routes.route(namespace, "kept", "ingest", main.agent_url)
    routes.route(namespace, "kept", "recorder", recorder.url)
    kube.create_livestream(namespace, "kept", {"callType": calltype, "phase": "live", "recording": True})
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(namespace, "kept", lambda s: s.get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 4
                     and recording_condition(s).get("reason") == "RecordingInProgress", timeout=60,
                     what="recording for 4 s")

    kube.patch_livestream(namespace, "kept", {"spec": {"phase": "ended"}})
    st = kube.wait_status(namespace, "kept", lambda s: s.get("phase") == "ended" and s.get("recordings"), timeout=60,
                          what="the finished recording listed")["status"]
    # The final duration, not 0; and what was recorded: the files on the volume, their sizes and durations.
    [session] = st["recordings"]
    assert st["recording"] is False and st["recordingDurationSeconds"] >= 4
    assert st["recordingDurationSeconds"] == round(session["durationSeconds"])
    assert session["endReason"] == "recording stopped"
    assert [p["file"] for p in session["parts"]] == sorted(p.name for p in recordings.glob("*.mp4"))
    for part in session["parts"]:
        assert part["bytes"] == (recordings / part["file"]).stat().st_size and part["durationSeconds"] > 0
    assert recording_condition(st) == {}, "nothing is wanted any more: no Recording condition"

    # The recorder pod goes away (scaled down, evicted, the node lost): the status remembers.
    recorder.stop()
    later = kube.wait_status(namespace, "kept", lambda s: "recording" not in s, timeout=30,
                             what="the recorder no longer reporting")["status"]
    assert later["recordings"] == st["recordings"]
    assert later["recordingDurationSeconds"] == st["recordingDurationSeconds"]


def test_a_wanted_recording_that_cannot_read_its_source_says_why(routes, kube, namespace, ingest_agent, recorder_agent,
                                                                 origins, publishers, tmp_path):
    # A transcoded recording reads the origin; here no transcoder feeds it, so the playlist is missing.
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"recording": {"mode": "auto-on", "type": "transcoded"}})
    try:
        main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/why")
        origin = origins.start(livestream=f"{namespace}/why")
        recorder = recorder_agent.start(source_url=origin.url("hls/cmaf/master.m3u8"), record_type="transcoded",
                                        output_dir=tmp_path / "recordings", livestream=f"{namespace}/why",
                                        read_token_file=origin.config.read_token_file)
        routes.route(namespace, "why", "ingest", main.agent_url)
        routes.route(namespace, "why", "recorder", recorder.url)
        kube.create_livestream(namespace, "why", {"callType": name, "phase": "live"})
        kube.wait_status(namespace, "why", lambda s: recording_condition(s).get("reason") == "WaitingForInput",
                         timeout=30, what="a recording waiting for its input")
        publishers.rtmp(main.rtmp_url, **SMALL)
        kube.wait_status(namespace, "why", lambda s: recording_condition(s).get("reason") == "RecordingStarting",
                         timeout=30, what="the recording starting once the input is live")
        st = kube.wait_status(namespace, "why",
                              lambda s: recording_condition(s).get("reason") == "RecordingSourceUnavailable",
                              timeout=90, what="the recording reported as unable to start")["status"]
        condition = recording_condition(st)
        assert condition["status"] == "False" and st["recording"] is False
        assert "playlist answered HTTP 404" in condition["message"], condition
        assert "transcoder produces segments" in condition["message"], "the message says what to check"
        warnings = [e for e in kube.events(namespace, "why") if e["reason"] == "RecordingSourceUnavailable"]
        assert [e["type"] for e in warnings] == ["Warning"] and "HTTP 404" in warnings[0]["message"]
    finally:
        kube.delete_calltype(name)


def test_a_transcoded_recording_with_broadcasting_disabled_is_reported(routes, kube, namespace):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"broadcasting": {"mode": "disabled"},
                                         "recording": {"mode": "auto-on", "type": "transcoded"}})
    try:
        kube.create_livestream(namespace, "nothing", {"callType": name, "phase": "live"})
        st = kube.wait_status(namespace, "nothing", lambda s: recording_condition(s).get("status") == "False",
                              timeout=30, what="a Recording condition")["status"]
        condition = recording_condition(st)
        assert condition["reason"] == "NothingTranscodedToRecord", condition
        assert "recording.type: origin" in condition["message"] and "broadcasting.mode" in condition["message"]
        wait_for(lambda: "NothingTranscodedToRecord" in kube.event_reasons(namespace, "nothing"), 15,
                 what="a NothingTranscodedToRecord Warning Event")
        # Fixed by the user: the condition follows.
        kube.patch_livestream(namespace, "nothing", {"spec": {"settingsOverride": {"recording": {"type": "origin"}}}})
        kube.wait_status(namespace, "nothing",
                         lambda s: recording_condition(s).get("reason") not in (None, "NothingTranscodedToRecord"),
                         timeout=30, what="the condition to follow the fix")
    finally:
        kube.delete_calltype(name)
