"""Main and backup ingest, recordType origin: the recording is of the show, not of one encoder."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tests.fixtures.media import ffprobe_json, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]

SMALL = dict(width=320, height=180, fps=15)


def main_backup_and_recorder(ingest_agent, recorder_agent):
    """Main and backup ingests sharing one read token, as the operator mounts it, and a recorder
    wired to them as the operator renders it, with the production timeouts (finalize 10 s,
    stall 8 s)."""
    token = secrets.token_urlsafe(24)
    main = ingest_agent.start(slot="main", protocols=("rtmp",), read_token=token)
    backup = ingest_agent.start(slot="backup", protocols=("rtmp",), read_token=token)
    recorder = recorder_agent.start(
        main.anonymous_read_url,
        fallback_source_urls=[backup.anonymous_read_url],
        read_token_file=main.config.read_token_file,
        finalize_after_seconds=10,
        stall_timeout_seconds=8,
    )
    return main, backup, recorder


def test_main_drops_the_session_goes_on_from_the_backup_and_stays_there(ingest_agent, recorder_agent, publishers):
    main, backup, recorder = main_backup_and_recorder(ingest_agent, recorder_agent)
    main_encoder = publishers.rtmp(main.rtmp_url, **SMALL)
    publishers.rtmp(backup.rtmp_url, **SMALL)
    main.wait_receiving()
    backup.wait_receiving()

    recorder.put_desired(recording=True)
    first = recorder.wait_status(lambda s: s["recording"] and s["durationSeconds"] >= 4, 40, "4 s recorded from main")
    began = time.monotonic() - first["durationSeconds"]
    assert len(first["files"]) == 1

    main_encoder.kill()
    main.wait_receiving(False)
    resumed = recorder.wait_status(
        lambda s: s["recording"] and len(s["files"]) == 2, 30, "the recording to go on from the backup"
    )
    assert resumed["startedAt"] == first["startedAt"], "the failover must not start a new session"
    assert not recorder.sidecars(), "the failover must not finalize the session"
    recorder.wait_log(f"continues from {backup.anonymous_read_url}", 5)

    # Main is back: the recorder stays on the backup, which delivers (a switch would only cut).
    publishers.rtmp(main.rtmp_url, **SMALL)
    main.wait_receiving()
    since = recorder.status()["durationSeconds"]
    back = recorder.wait_status(lambda s: s["durationSeconds"] >= since + 5, 30, "5 more seconds with main back")
    assert back["recording"] and len(back["files"]) == 2, back

    recorder.put_desired(recording=False)
    stopped = time.monotonic()
    sidecar = wait_for(lambda: recorder.sidecars(), 30, what="the session to be finalized")[0]
    assert sidecar["endReason"] == "recording stopped"
    assert [p["file"] for p in sidecar["parts"]] == back["files"]
    for part in sidecar["parts"]:
        info = ffprobe_json(str(recorder.output_dir / part["file"]))
        assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
        assert part["durationSeconds"] >= 3, part
    # What was published from the first media to the stop, less the switch: the gap is what the
    # failover cost, and it must stay within the finalize window that kept the session open.
    published = stopped - began
    gap = published - sidecar["durationSeconds"]
    print(f"published {published:.1f}s, recorded {sidecar['durationSeconds']:.1f}s, failover gap {gap:.1f}s")
    assert -1.5 <= gap < 10, (published, sidecar)
    log = recorder.log_text()
    assert Path(main.config.read_token_file).read_text().strip() not in log  # the read token
    assert "accepted play" in backup.log_text() and "refused play" not in backup.log_text()


def test_with_the_backup_silent_a_returning_main_still_continues_the_session(ingest_agent, recorder_agent, publishers):
    # Nobody publishes to the backup: a play there is accepted and stays silent. The recorder must
    # not sit on it for the whole finalize window while main comes back.
    main, backup, recorder = main_backup_and_recorder(ingest_agent, recorder_agent)
    main_encoder = publishers.rtmp(main.rtmp_url, **SMALL)
    main.wait_receiving()
    recorder.put_desired(recording=True)
    first = recorder.wait_status(lambda s: s["recording"] and s["durationSeconds"] >= 3, 40, "3 s recorded from main")

    main_encoder.kill()
    wait_for(lambda: "accepted play" in backup.log_text(), 15, what="the recorder to try the (silent) backup")
    publishers.rtmp(main.rtmp_url, **SMALL)
    resumed = recorder.wait_status(
        lambda s: s["recording"] and len(s["files"]) == 2, 30, "the recording to go on from main"
    )
    assert resumed["startedAt"] == first["startedAt"] and not recorder.sidecars()
    recorder.wait_log(f"continues from {main.anonymous_read_url}", 5)


def test_a_backup_turned_on_during_a_recording_is_used_without_a_cut(ingest_agent, recorder_agent, publishers):
    """``ingest.backup`` switched on while recording reaches the recorder as Desired.backup: no
    restart, no new part; main dropping later continues the session from the backup."""
    token = secrets.token_urlsafe(24)
    main = ingest_agent.start(slot="main", protocols=("rtmp",), read_token=token)
    backup = ingest_agent.start(slot="backup", protocols=("rtmp",), read_token=token)
    recorder = recorder_agent.start(
        main.anonymous_read_url,
        backup_source_url=backup.anonymous_read_url,
        read_token_file=main.config.read_token_file,
        finalize_after_seconds=10,
        stall_timeout_seconds=8,
    )
    main_encoder = publishers.rtmp(main.rtmp_url, **SMALL)
    publishers.rtmp(backup.rtmp_url, **SMALL)
    main.wait_receiving()
    backup.wait_receiving()

    recorder.put_desired(recording=True, backup=False)  # what the operator sends without ingest.backup
    first = recorder.wait_status(lambda s: s["recording"] and s["durationSeconds"] >= 3, 40, "3 s recorded from main")
    recorder.put_desired(backup=True)
    recorder.wait_log(f"sources now {main.anonymous_read_url}, {backup.anonymous_read_url}", 5)
    on = recorder.wait_status(lambda s: s["durationSeconds"] >= first["durationSeconds"] + 3, 30, "3 s more")
    assert on["recording"] and on["files"] == first["files"] and on["startedAt"] == first["startedAt"], on

    main_encoder.kill()
    main.wait_receiving(False)
    resumed = recorder.wait_status(
        lambda s: s["recording"] and len(s["files"]) == 2, 30, "the recording to go on from the backup"
    )
    assert resumed["startedAt"] == first["startedAt"], "the failover must not start a new session"
    recorder.wait_log(f"continues from {backup.anonymous_read_url}", 5)
