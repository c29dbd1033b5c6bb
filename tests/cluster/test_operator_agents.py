"""Status driven by real ingest agents on loopback: publish -> live, stop -> not live, backup, active switch.

The operator polls the agents (GET /status) and pushes the desired lifecycle (PUT /desired)
exactly as in a cluster; only the address of each agent comes from the test's routes instead
of pod IPs.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

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
    routes.route(namespace, "tv", "ingest", main)
    routes.route(namespace, "tv", "ingest-backup", backup)
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


def test_active_false_reaches_the_agent_and_drops_the_publisher(
    routes, kube, calltype, namespace, ingest_agent, publishers
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/onoff")
    routes.route(namespace, "onoff", "ingest", main)
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


def test_recording_switch_reaches_a_real_recorder(
    routes, kube, calltype, namespace, ingest_agent, recorder_agent, publishers, tmp_path
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/rec")
    recorder = recorder_agent.start(
        source_url=main.read_url, output_dir=tmp_path / "recordings", livestream=f"{namespace}/rec"
    )
    routes.route(namespace, "rec", "ingest", main)
    routes.route(namespace, "rec", "recorder", recorder)
    # recording.mode available: nothing records until asked (GetStream's startRecording).
    kube.create_livestream(namespace, "rec", {"callType": calltype, "phase": "live"})
    publishers.rtmp(main.rtmp_url, **SMALL)
    st = kube.wait_status(
        namespace,
        "rec",
        lambda s: s.get("live") is True and "recording" in s,
        timeout=30,
        what="live, recorder reporting",
    )["status"]
    assert st["recording"] is False

    kube.patch_livestream(namespace, "rec", {"spec": {"recording": True}})
    # The operator's part: the start request reaches the recorder through PUT /desired...
    recorder.wait_log("recording start requested", 15)
    # ...and the recorder's report comes back as status.
    try:
        kube.wait_status(
            namespace,
            "rec",
            lambda s: s.get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 1,
            timeout=30,
            what="recording with duration",
        )
    except BaseException:
        print("recorder status:", recorder.status(), "\nrecorder log:\n", recorder.log_text()[-3000:])
        raise
    kube.patch_livestream(namespace, "rec", {"spec": {"recording": False}})
    recorder.wait_log("recording stop requested", 15)
    kube.wait_status(namespace, "rec", lambda s: s.get("recording") is False, timeout=30, what="recording stopped")
    wait_for(
        lambda: {"RecordingStarted", "RecordingStopped"} <= set(kube.event_reasons(namespace, "rec")),
        15,
        what="recording Events",
    )
    recorder.wait_status(lambda s: s["files"], 20, "a finished recording file")


def test_the_operator_calls_agents_with_the_livestreams_agent_token(
    routes, kube, calltype, namespace, ingest_agent, publishers
):
    """The agent refuses every other token: live status and the desired state reach it only because
    the operator sends the agentToken of the Livestream's Secret, as the agent's pod mounts it.
    The operator's side only: the agent is a local process whose token file the test writes."""
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/cred")
    own_token = main.agent_token
    routes.route(namespace, "cred", "ingest", main)
    kube.create_livestream(namespace, "cred", {"callType": calltype, "phase": "live"})
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(namespace, "cred", lambda s: s.get("live") is True, timeout=30, what="live")
    secret = kube.core.read_namespaced_secret("cred-credentials", namespace)
    assert base64.b64decode(secret.data["agentToken"]).decode() == main.agent_token != own_token
    assert "AgentRefusedCredential" not in kube.event_reasons(namespace, "cred")

    # A pod left with another token (a stale mount): refused, reported, not live.
    routes.mounts.unmount((namespace, "cred", "ingest"))
    Path(main.config.agent_token_file).write_text("a-stale-token-0123456789")
    kube.wait_status(namespace, "cred", lambda s: s.get("live") is False, timeout=30, what="not live while refused")
    wait_for(
        lambda: "AgentRefusedCredential" in kube.event_reasons(namespace, "cred"),
        15,
        what="AgentRefusedCredential Event",
    )
    event = next(e for e in kube.events(namespace, "cred") if e["reason"] == "AgentRefusedCredential")
    assert event["type"] == "Warning" and "HTTP 403: wrong agent token" in event["message"]
    assert "agentToken of Secret cred-credentials" in event["message"]
    assert main.status()["receiving"] is True  # the stream itself never stopped
    assert "refused agent API call PUT /desired" in main.log_text()

    # The token file is right again (here SecretMounts writes it, standing in for the kubelet's
    # Secret volume sync; the real kubelet's is tested on the node, in
    # tests/kube/test_pods_as_kubernetes_runs_them.py): live again, without another Warning.
    routes.mount(namespace, "cred", "ingest", main)
    kube.wait_status(namespace, "cred", lambda s: s.get("live") is True, timeout=30, what="live again")
    assert kube.event_reasons(namespace, "cred").count("AgentRefusedCredential") == 1


def test_broadcasting_is_what_the_transcoder_produces_and_a_failing_one_is_not_ready(
    routes, kube, namespace, ingest_agent, transcoder_agent, origins, publishers, tmp_path
):
    """status.broadcasting follows the outputs, not the wish (broadcastingDesired); an encoder that
    keeps failing makes the Livestream Ready=False with what failed, until it works again."""
    name = "onair-tx"
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct, settings={"recording": {"mode": "disabled"}})
    try:
        ingest = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/{name}")
        token_file = tmp_path / "readToken"
        token_file.write_text(ingest.read_token)
        tx = transcoder_agent.start(
            main_url=ingest.anonymous_read_url,
            read_token_file=str(token_file),
            livestream=f"{namespace}/{name}",
            tracks=["180p"],
            source_size=(320, 180),
            hls_mpegts=False,
            dash=False,
            screenshot_interval_seconds=1,
        )
        # A real, lasting encoder failure: ffmpeg cannot rename its screenshot onto a directory.
        blocker = Path(tx.config.work_dir) / "out" / "screenshot.jpg"
        assert blocker.parent.is_dir()
        blocker.mkdir()
        origin = origins.start()
        for key, agent in (("ingest", ingest), ("transcoder", tx), ("origin", origin)):
            routes.route(namespace, name, key, agent)
        kube.create_livestream(namespace, name, {"callType": ct, "phase": "live"})
        publishers.rtmp(ingest.rtmp_url, **SMALL)

        def failed(s):
            ready = next((c for c in s.get("conditions") or () if c["type"] == "Ready"), {})
            return ready.get("reason") == "BroadcastingFailed" and ready

        st = kube.wait_status(namespace, name, failed, timeout=60, what="Ready=False BroadcastingFailed")["status"]
        ready = failed(st)
        assert ready["status"] == "False" and "Is a directory" in ready["message"], ready
        assert f"kubectl logs -n {namespace} deploy/{name}-transcoder" in ready["message"]
        assert st["live"] is True and st["broadcastingDesired"] is True and st["broadcasting"] is False
        assert "BroadcastingFailed" in kube.event_reasons(namespace, name)

        blocker.rmdir()
        st = kube.wait_status(
            namespace,
            name,
            lambda s: s.get("broadcasting") is True,
            timeout=60,
            what="broadcasting once the encoder works",
        )["status"]
        kube.wait_status(
            namespace,
            name,
            lambda s: any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or ()),
            timeout=20,
            what="Ready",
        )
        wait_for(
            lambda: {"BroadcastingRecovered", "BroadcastingStarted"} <= set(kube.event_reasons(namespace, name)),
            15,
            what="BroadcastingRecovered and BroadcastingStarted Events",
        )

        kube.patch_livestream(namespace, name, {"spec": {"broadcasting": False}})
        st = kube.wait_status(
            namespace,
            name,
            lambda s: s.get("broadcastingDesired") is False and s.get("broadcasting") is False,
            timeout=30,
            what="stopped",
        )["status"]
        wait_for(lambda: "BroadcastingStopped" in kube.event_reasons(namespace, name), 15, what="BroadcastingStopped")
    finally:
        kube.delete_calltype(ct)


def test_turning_the_backup_on_reaches_the_running_transcoder_without_a_rollout(
    routes, kube, namespace, transcoder_agent, rtmp_server
):
    """ingest.backup on a live stream: the backup ingest's objects appear, the transcoder's and
    recorder's Deployments stay as they are, and the running transcoder hears of it (Desired.backup)."""
    name = "tog"
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct, settings={"ingest": {"backup": False}})
    try:
        tx = transcoder_agent.start(
            main_url=rtmp_server.url("main"),
            backup_url=rtmp_server.url("backup"),
            livestream=f"{namespace}/{name}",
            tracks=["180p"],
            source_size=(320, 180),
            screenshot_interval_seconds=0,
        )
        routes.route(namespace, name, "transcoder", tx)
        kube.create_livestream(namespace, name, {"callType": ct, "phase": "live"})
        kube.wait_reconciled(namespace, name)
        gone, there = (
            "source backup: reader stopped (the backup ingest is gone)",
            "source backup: reading again (the backup ingest exists)",
        )
        wait_for(lambda: gone in tx.log_text(), 15, what="Desired.backup false at the transcoder")

        def templates():
            return {
                key: (d.metadata.generation, d.spec.template.metadata.annotations)
                for key in ("transcoder", "recorder")
                for d in [kube.apps.read_namespaced_deployment(f"{name}-{key}", namespace)]
            }

        before = templates()
        kube.patch_livestream(namespace, name, {"spec": {"settingsOverride": {"ingest": {"backup": True}}}})
        kube.wait_reconciled(namespace, name)
        wait_for(
            lambda: ("Deployment", f"{name}-ingest-backup") in kube.children(namespace, name),
            20,
            what="the backup ingest Deployment",
        )
        wait_for(lambda: there in tx.log_text(), 15, what="Desired.backup true at the transcoder")
        assert templates() == before, "neither the transcoder nor the recorder is rolled out again"
    finally:
        kube.delete_calltype(ct)


def recording_condition(status: dict) -> dict:
    return next((c for c in status.get("conditions") or () if c["type"] == "Recording"), {})


def test_what_was_recorded_stays_in_the_status_after_the_end_and_the_recorder(
    routes, kube, calltype, namespace, ingest_agent, recorder_agent, publishers, tmp_path
):
    main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/kept")
    recordings = tmp_path / "recordings"
    recorder = recorder_agent.start(source_url=main.read_url, output_dir=recordings, livestream=f"{namespace}/kept")
    routes.route(namespace, "kept", "ingest", main)
    routes.route(namespace, "kept", "recorder", recorder)
    kube.create_livestream(namespace, "kept", {"callType": calltype, "phase": "live", "recording": True})
    publishers.rtmp(main.rtmp_url, **SMALL)
    kube.wait_status(
        namespace,
        "kept",
        lambda s: (
            s.get("recording") is True
            and (s.get("recordingDurationSeconds") or 0) >= 4
            and recording_condition(s).get("reason") == "RecordingInProgress"
        ),
        timeout=60,
        what="recording for 4 s",
    )

    kube.patch_livestream(namespace, "kept", {"spec": {"phase": "ended"}})
    st = kube.wait_status(
        namespace,
        "kept",
        lambda s: s.get("phase") == "ended" and s.get("recordings"),
        timeout=60,
        what="the finished recording listed",
    )["status"]
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
    later = kube.wait_status(
        namespace, "kept", lambda s: "recording" not in s, timeout=30, what="the recorder no longer reporting"
    )["status"]
    assert later["recordings"] == st["recordings"]
    assert later["recordingDurationSeconds"] == st["recordingDurationSeconds"]


def test_a_wanted_recording_that_cannot_read_its_source_says_why(
    routes, kube, namespace, ingest_agent, recorder_agent, origins, publishers, tmp_path
):
    # A transcoded recording reads the origin; here no transcoder feeds it, so the playlist is missing.
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"recording": {"mode": "auto-on", "type": "transcoded"}})
    try:
        main = ingest_agent.start(slot="main", protocols=("rtmp",), livestream=f"{namespace}/why")
        origin = origins.start(livestream=f"{namespace}/why")
        recorder = recorder_agent.start(
            source_url=origin.url("hls/cmaf/master.m3u8"),
            record_type="transcoded",
            output_dir=tmp_path / "recordings",
            livestream=f"{namespace}/why",
            read_token_file=origin.config.read_token_file,
        )
        routes.route(namespace, "why", "ingest", main)
        routes.route(namespace, "why", "recorder", recorder)
        kube.create_livestream(namespace, "why", {"callType": name, "phase": "live"})
        kube.wait_status(
            namespace,
            "why",
            lambda s: recording_condition(s).get("reason") == "WaitingForInput",
            timeout=30,
            what="a recording waiting for its input",
        )
        publishers.rtmp(main.rtmp_url, **SMALL)
        kube.wait_status(
            namespace,
            "why",
            lambda s: recording_condition(s).get("reason") == "RecordingStarting",
            timeout=30,
            what="the recording starting once the input is live",
        )
        st = kube.wait_status(
            namespace,
            "why",
            lambda s: recording_condition(s).get("reason") == "RecordingSourceUnavailable",
            timeout=90,
            what="the recording reported as unable to start",
        )["status"]
        condition = recording_condition(st)
        assert condition["status"] == "False" and st["recording"] is False
        assert "playlist answered HTTP 404" in condition["message"], condition
        assert "transcoder produces segments" in condition["message"], "the message says what to check"
        # Events are posted after the status patch, one by one: wait for it rather than race it.
        warnings = wait_for(
            lambda: [e for e in kube.events(namespace, "why") if e["reason"] == "RecordingSourceUnavailable"],
            15,
            what="a RecordingSourceUnavailable Event",
        )
        assert [e["type"] for e in warnings] == ["Warning"] and "HTTP 404" in warnings[0]["message"]
    finally:
        kube.delete_calltype(name)


def test_a_transcoded_recording_with_broadcasting_disabled_is_reported(routes, kube, namespace):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(
        name, settings={"broadcasting": {"mode": "disabled"}, "recording": {"mode": "auto-on", "type": "transcoded"}}
    )
    try:
        kube.create_livestream(namespace, "nothing", {"callType": name, "phase": "live"})
        st = kube.wait_status(
            namespace,
            "nothing",
            lambda s: recording_condition(s).get("status") == "False",
            timeout=30,
            what="a Recording condition",
        )["status"]
        condition = recording_condition(st)
        assert condition["reason"] == "NothingTranscodedToRecord", condition
        assert "recording.type: origin" in condition["message"] and "broadcasting.mode" in condition["message"]
        wait_for(
            lambda: "NothingTranscodedToRecord" in kube.event_reasons(namespace, "nothing"),
            15,
            what="a NothingTranscodedToRecord Warning Event",
        )
        # Fixed by the user: the condition follows.
        kube.patch_livestream(namespace, "nothing", {"spec": {"settingsOverride": {"recording": {"type": "origin"}}}})
        kube.wait_status(
            namespace,
            "nothing",
            lambda s: recording_condition(s).get("reason") not in (None, "NothingTranscodedToRecord"),
            timeout=30,
            what="the condition to follow the fix",
        )
    finally:
        kube.delete_calltype(name)
