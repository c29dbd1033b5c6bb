"""Deleting one finished recording through the recorder's API (DELETE /recordings/<session>) and
with `onair agent recorder --delete-session` (the operator's one-shot pod): its parts and sidecar
go, nothing else does, a retry is harmless, and an open session or another livestream's is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.media, pytest.mark.timeout(180)]


def record_one_session(recorder, publishers, rtmp_source, seconds: float) -> dict:
    """Record about ``seconds`` and stop: the finished session as /status lists it."""
    before = len(recorder.status()["recordings"])
    publisher = publishers.rtmp(rtmp_source.publish_url)
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= seconds, 40, f"{seconds} s recorded")
    recorder.put_desired(recording=False)
    status = recorder.wait_status(lambda s: len(s["recordings"]) == before + 1, 30, "the session finalized")
    publisher.stop()
    return status["recordings"][-1]


def test_delete_one_finished_session_through_the_agent_api(rtmp_source, recorder_agent, publishers):
    recorder = recorder_agent.start(rtmp_source.read_url, livestream="events/show")
    first = record_one_session(recorder, publishers, rtmp_source, 2)
    second = record_one_session(recorder, publishers, rtmp_source, 2)
    out = recorder.output_dir
    stranger = out / "events_other_20250102T030405Z_part0001.mp4"
    stranger.write_bytes(b"another livestream's recording")
    first_files = sorted([p["file"] for p in first["parts"]] + [f"{first['session']}.json"])
    assert all((out / name).exists() for name in first_files)

    path = f"/recordings/{first['session']}"
    assert recorder.request("DELETE", path, token=None)[0] == 401, "the agent token is required"
    assert recorder.request("DELETE", path, token="wrong")[0] == 403
    code, body = recorder.request("DELETE", path)
    assert code == 200, body
    assert sorted(json.loads(body)["deleted"]) == first_files
    assert not any((out / name).exists() for name in first_files)
    assert [r["session"] for r in recorder.status()["recordings"]] == [second["session"]]
    assert all((out / p["file"]).exists() for p in second["parts"]) and (out / f"{second['session']}.json").exists()
    assert stranger.exists()

    # Retried (the operator lost the answer): nothing left to delete, still a success.
    code, body = recorder.request("DELETE", path)
    assert (code, json.loads(body)["deleted"]) == (200, [])
    # Another livestream's session, or something that is no session at all: refused.
    for name in ("events_other_20250102T030405Z", "events_show_latest", "..%2Fetc"):
        code, body = recorder.request("DELETE", f"/recordings/{name}")
        assert code in (400, 404), (name, code, body)
    assert stranger.exists()
    assert "onair_recorder_sessions_deleted" in recorder.metrics()


def test_an_open_session_is_not_deleted(rtmp_source, recorder_agent, publishers):
    recorder = recorder_agent.start(rtmp_source.read_url, livestream="events/show")
    publishers.rtmp(rtmp_source.publish_url)
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 1, 40, "recording")
    [part] = recorder.status()["files"]
    session = part.rsplit("_part", 1)[0]
    code, body = recorder.request("DELETE", f"/recordings/{session}")
    assert code == 409 and b"stop the recording first" in body
    assert (recorder.output_dir / part).exists()


def test_delete_session_command_for_a_volume_no_recorder_runs_on(rtmp_source, recorder_agent, publishers, tmp_path):
    recorder = recorder_agent.start(rtmp_source.read_url, livestream="events/show")
    session = record_one_session(recorder, publishers, rtmp_source, 2)
    recorder.stop()
    out = recorder.output_dir
    argv = [
        sys.executable,
        "-m",
        "onair.cli",
        "agent",
        "recorder",
        "--delete-session",
        session["session"],
        "--livestream",
        "events/show",
        "--output-dir",
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert session["session"] in done.stdout
    assert not list(out.glob(f"{session['session']}*"))
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "no file was left" in again.stdout

    missing = subprocess.run(argv[:-1] + [str(tmp_path / "not-mounted")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "is not mounted" in missing.stderr
    other = subprocess.run(argv[:8] + ["events/other"] + argv[9:], capture_output=True, text=True, timeout=60)
    assert other.returncode == 1 and "is not a recording session of events/other" in other.stderr
