"""The recorder uploads finished parts and sidecars to a real S3-compatible store (SeaweedFS).

Real ffmpeg records from a real nginx-rtmp; the store is ``weed server -s3`` (tests/fixtures/s3.py)
with a bucket the recorder may write to but not create. What a user relies on: every part ends up
in the bucket byte for byte under its deterministic key, exactly once, however the store or the
recorder fails on the way; a part leaves the volume only once the store holds it; what goes wrong
is in /status in words that say what to fix.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from onair.agent.recorder import vod
from onair.agent.recorder.upload import object_key
from onair.api.agent import S3UploadConfig
from tests.fixtures.media import wait_for
from tests.fixtures.s3 import RECORDER_KEY, write_credentials

pytestmark = [pytest.mark.media, pytest.mark.timeout(240)]

BUCKET = "recordings"
PREFIX = "shows/2026"


def s3_config(endpoint: str, credentials_dir: Path, **overrides) -> S3UploadConfig:
    key_file, secret_file = credentials_dir / "accessKeyId", credentials_dir / "secretAccessKey"
    fields = dict(
        endpoint=endpoint,
        bucket=BUCKET,
        prefix=PREFIX,
        force_path_style=True,
        access_key_id_file=str(key_file),
        secret_access_key_file=str(secret_file),
        request_timeout_seconds=3,
        retry_max_seconds=2,
    )
    fields.update(overrides)
    return S3UploadConfig(**fields)


class Keeper:
    """Hard links to every part the moment it appears, from a thread that looks every 0.1 s (a part
    lives for seconds before it is finished and uploaded): the bytes the recorder wrote, still
    readable after the recorder removed its copy (the link keeps the inode)."""

    def __init__(self, output_dir: Path, keep_dir: Path) -> None:
        self.output_dir, self.keep_dir = output_dir, keep_dir
        keep_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self.collect()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def collect(self) -> list[str]:
        for path in self.output_dir.glob("*.mp4"):
            target = self.keep_dir / path.name
            if not target.exists():
                try:
                    os.link(path, target)
                except FileNotFoundError:
                    pass
        return sorted(p.name for p in self.keep_dir.glob("*.mp4"))

    def read(self, name: str) -> bytes:
        return (self.keep_dir / name).read_bytes()


@pytest.fixture
def keepers() -> Iterator[Callable[[Path, Path], Keeper]]:
    started: list[Keeper] = []

    def start(output_dir: Path, keep_dir: Path) -> Keeper:
        started.append(Keeper(output_dir, keep_dir))
        return started[-1]

    yield start
    for keeper in started:
        keeper.close()


def session_of(part: str) -> str:
    return part.rsplit("_part", 1)[0]


def key_of(name: str, livestream: str = "default/show") -> str:
    session = session_of(name) if name.endswith(".mp4") else name[: -len(".json")]
    return object_key(PREFIX, livestream, session, name)


def keys_of(parts, livestream: str = "default/show") -> set[str]:
    """The objects of uploaded parts: each part and its HLS VOD playlist (<part>.m3u8) next to it."""
    parts = list(parts)
    return {key_of(p, livestream) for p in parts} | {
        key_of(p, livestream).removesuffix(".mp4") + ".m3u8" for p in parts
    }


def upload_of(status: dict) -> dict:
    return status.get("upload") or {}


def all_uploaded(status: dict) -> bool:
    upload = upload_of(status)
    return (
        status["state"] == "idle"
        and bool(status["recordings"])
        and upload.get("pending") == 0
        and upload.get("uploading") is None
    )


def test_parts_are_uploaded_as_they_finish_and_the_objects_are_the_files(
    rtmp_source, recorder_agent, publishers, seaweedfs, keepers, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    publishers.rtmp(rtmp_source.publish_url)
    recorder = recorder_agent.start(
        rtmp_source.read_url, split_seconds=4, s3=s3_config(seaweedfs.endpoint, creds, keep_local_copy=True)
    )
    keeper = keepers(recorder.output_dir, tmp_path / "kept")
    status = recorder.status()
    assert upload_of(status) == {
        "target": f"s3://{BUCKET}/{PREFIX}/",
        "endpoint": seaweedfs.endpoint,
        "pending": 0,
        "uploading": None,
        "error": None,
        "errorKind": None,
        "failingSince": None,
        "nextAttemptAt": None,
    }

    recorder.put_desired(recording=True)
    # A split part is uploaded while the recording goes on: the session is not waited for.
    first = wait_for(
        lambda: keeper.collect() and seaweedfs.objects(BUCKET, PREFIX),
        40,
        what="a first part in the bucket while recording",
    )
    during = recorder.status()
    assert during["state"] == "recording", during
    assert not any(key.endswith(".json") for key in first), "the sidecar waits for the end of the session"
    recorder.wait_status(lambda s: s["durationSeconds"] >= 10, 40, "10 s recorded")
    recorder.put_desired(recording=False)
    done = recorder.wait_status(all_uploaded, 60, "every file uploaded after the recording stopped")

    parts = done["files"]
    assert len(parts) >= 3 and parts == keeper.collect(), (parts, keeper.collect())
    session = done["recordings"][-1]["session"]
    objects = seaweedfs.objects(BUCKET, PREFIX)
    assert set(objects) == keys_of(parts) | {key_of(f"{session}.json")}, "one object per file (and playlist), no more"
    for name in parts:
        assert seaweedfs.get(BUCKET, key_of(name)) == (recorder.output_dir / name).read_bytes() == keeper.read(name)
    assert not seaweedfs.multipart_uploads(BUCKET), "no multipart upload is left open"

    recorded_parts = done["recordings"][-1]["parts"]
    assert [p["file"] for p in recorded_parts] == parts
    for part in recorded_parts:
        stored = part["object"]
        assert stored["url"] == f"s3://{BUCKET}/{key_of(part['file'])}"
        assert stored["endpoint"] == seaweedfs.endpoint
        assert stored["etag"] == objects[key_of(part["file"])]["ETag"]
        assert stored["uploadedAt"] and part.get("uploadError") is None
        # The part's VOD playlist next to it, built from the very bytes uploaded, naming it relatively.
        playlist_key = key_of(part["file"]).removesuffix(".mp4") + ".m3u8"
        assert stored["playlist"] == f"s3://{BUCKET}/{playlist_key}"
        with open(keeper.keep_dir / part["file"], "rb") as handle:
            index = vod.index_fragmented_mp4(handle, os.fstat(handle.fileno()).st_size)
        assert seaweedfs.get(BUCKET, playlist_key).decode() == vod.hls_vod_playlist(index, part["file"])
        assert index.duration == pytest.approx(part["durationSeconds"], abs=0.6)

    # The sidecar in the bucket is the one on the volume, naming every part's object.
    sidecar = json.loads(seaweedfs.get(BUCKET, key_of(f"{session}.json")))
    assert sidecar == json.loads((recorder.output_dir / f"{session}.json").read_text())
    assert [p["object"]["url"] for p in sidecar["parts"]] == [p["object"]["url"] for p in recorded_parts]
    metrics = recorder.metrics()
    assert 'onair_recorder_upload_pending{livestream="default/show"} 0.0' in metrics
    attempts = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("onair_recorder_upload_attempts_total{")
    )
    # Every part and the sidecar uploaded once. A loaded machine may make an attempt time out on
    # the way (counted by its outcome, then retried as designed): that is allowed, a second object
    # or a lost part (checked above) is not.
    uploaded = 'onair_recorder_upload_attempts_total{livestream="default/show",outcome="uploaded"}'
    assert float(attempts.pop(uploaded, 0)) == len(parts) + 1, attempts
    assert all(
        outcome == 'outcome="unreachable"' for outcome in (key.rsplit(",", 1)[1].rstrip("}") for key in attempts)
    ), attempts


def test_store_down_during_an_upload_then_back_loses_nothing(
    rtmp_source, recorder_agent, publishers, seaweedfs, throttled_proxy, keepers, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    # A slow link (faster than the recording, ~200 kB/s): each part takes seconds to send, so the
    # store goes down in the middle of one.
    proxy = throttled_proxy(seaweedfs.ports["s3"], rate=300_000)
    publishers.rtmp(rtmp_source.publish_url)
    recorder = recorder_agent.start(
        rtmp_source.read_url, split_seconds=4, s3=s3_config(proxy.endpoint, creds, request_timeout_seconds=10)
    )
    keeper = keepers(recorder.output_dir, tmp_path / "kept")
    recorder.put_desired(recording=True)

    def uploading_for_a_while():
        return upload_of(recorder.status()).get("uploading") and proxy.forwarded > 100_000

    wait_for(uploading_for_a_while, 60, interval=0.1, what="an upload under way")
    seaweedfs.stop()

    failing = recorder.wait_status(
        lambda s: upload_of(s).get("errorKind") == "unreachable", 30, "the upload failing while the store is down"
    )
    upload = upload_of(failing)
    assert proxy.endpoint in upload["error"] and "retrying" in upload["error"], upload
    assert upload["failingSince"] and upload["nextAttemptAt"] and upload["pending"] >= 1
    # More parts finish while the store is down: they wait on the volume, none is removed.
    recorder.wait_status(lambda s: upload_of(s).get("pending", 0) >= 2, 30, "parts piling up while the store is down")
    waiting = [p for p in keeper.collect() if not (recorder.output_dir / f".{p}.uploaded.json").exists()]
    assert all((recorder.output_dir / name).exists() for name in waiting), "a part left the volume before its upload"

    seaweedfs.start()
    proxy.rate = 100_000_000  # the link is back to full speed too: the backlog clears quickly
    recorder.wait_status(
        lambda s: upload_of(s).get("error") is None, 60, "uploads working again once the store is back"
    )
    recorder.put_desired(recording=False)
    done = recorder.wait_status(all_uploaded, 120, "every file uploaded")

    parts = keeper.collect()
    assert done["files"] == [], "uploaded parts leave the volume (keepLocalCopy is false)"
    session = done["recordings"][-1]["session"]
    assert [p["file"] for p in done["recordings"][-1]["parts"]] == parts, "the sidecar still lists every part"
    objects = seaweedfs.objects(BUCKET, PREFIX)
    assert set(objects) == keys_of(parts) | {key_of(f"{session}.json")}
    for name in parts:
        assert seaweedfs.get(BUCKET, key_of(name)) == keeper.read(name), f"{name} differs in the bucket"
    assert not seaweedfs.multipart_uploads(BUCKET)
    assert 'outcome="unreachable"' in recorder.metrics()


def test_wrong_credentials_and_a_missing_bucket_say_so_and_recover_when_fixed(
    rtmp_source, recorder_agent, publishers, seaweedfs, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    wrong = tmp_path / "wrong-secret"
    write_credentials(wrong, secret_key="not-the-secret")
    fine = tmp_path / "fine-secret"
    write_credentials(fine)
    publishers.rtmp(rtmp_source.publish_url)
    bad_key = recorder_agent.start(
        rtmp_source.read_url,
        livestream="default/badkey",
        output_dir=tmp_path / "badkey",
        s3=s3_config(seaweedfs.endpoint, wrong),
    )
    no_bucket = recorder_agent.start(
        rtmp_source.read_url,
        livestream="default/nobucket",
        output_dir=tmp_path / "nobucket",
        s3=s3_config(seaweedfs.endpoint, fine, bucket="missing-bucket"),
    )
    for recorder in (bad_key, no_bucket):
        recorder.put_desired(recording=True)
    for recorder in (bad_key, no_bucket):
        recorder.wait_status(lambda s: s["durationSeconds"] >= 4, 40, "4 s recorded")
        recorder.put_desired(recording=False)

    refused = bad_key.wait_status(
        lambda s: upload_of(s).get("errorKind") == "credentials" and s["recordings"], 40, "the credentials refused"
    )
    message = upload_of(refused)["error"]
    assert "refused the credentials" in message and "SignatureDoesNotMatch" in message, message
    assert "accessKeyId and secretAccessKey" in message and "not-the-secret" not in message
    part = refused["recordings"][-1]["parts"][0]
    assert part["uploadError"] == message and part.get("object") is None
    assert (bad_key.output_dir / part["file"]).exists()

    missing = no_bucket.wait_status(lambda s: upload_of(s).get("errorKind") == "bucket", 40, "the missing bucket")
    assert upload_of(missing)["error"].startswith(f"bucket missing-bucket does not exist at {seaweedfs.endpoint}"), (
        upload_of(missing)["error"]
    )
    assert "create it" in upload_of(missing)["error"]
    assert seaweedfs.objects(BUCKET) == {}

    # Fixed the way a user fixes them: the Secret's files rewritten (no restart), the bucket created.
    write_credentials(wrong)
    seaweedfs.create_bucket("missing-bucket")
    for recorder, bucket, livestream in (
        (bad_key, BUCKET, "default/badkey"),
        (no_bucket, "missing-bucket", "default/nobucket"),
    ):
        done = recorder.wait_status(all_uploaded, 60, "uploads once fixed")
        assert upload_of(done).get("error") is None and upload_of(done).get("errorKind") is None
        objects = seaweedfs.objects(bucket, PREFIX)
        parts = [p["file"] for p in done["recordings"][-1]["parts"]]
        assert set(objects) == keys_of(parts, livestream) | {
            key_of(f"{done['recordings'][-1]['session']}.json", livestream)
        }
        assert all(p.get("object") and p.get("uploadError") is None for p in done["recordings"][-1]["parts"])
    assert RECORDER_KEY  # the recorder identity may write but not create buckets (tests/fixtures/s3.py)


def test_recorder_killed_mid_upload_then_restarted_uploads_each_part_exactly_once(
    rtmp_source, recorder_agent, publishers, seaweedfs, throttled_proxy, keepers, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    proxy = throttled_proxy(seaweedfs.ports["s3"], rate=60_000)
    publishers.rtmp(rtmp_source.publish_url)
    output = tmp_path / "recordings"
    recorder = recorder_agent.start(rtmp_source.read_url, output_dir=output, s3=s3_config(proxy.endpoint, creds))
    keeper = keepers(output, tmp_path / "kept")
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 6, 40, "6 s recorded")
    recorder.put_desired(recording=False)
    recorder.wait_status(lambda s: s["state"] == "idle" and s["recordings"], 30, "the session finalized")
    parts = keeper.collect()
    assert len(parts) == 1

    in_flight = wait_for(
        lambda: seaweedfs.multipart_uploads(BUCKET) if proxy.forwarded > 50_000 else None,
        60,
        interval=0.1,
        what="a multipart upload in flight",
    )
    assert [u["Key"] for u in in_flight] == [key_of(parts[0])]
    recorder.kill_everything()
    assert seaweedfs.multipart_uploads(BUCKET), "the killed recorder left its multipart upload open"
    assert (output / parts[0]).exists() and not seaweedfs.objects(BUCKET)

    successor = recorder_agent.start(rtmp_source.read_url, output_dir=output, s3=s3_config(seaweedfs.endpoint, creds))
    done = successor.wait_status(all_uploaded, 60, "the successor uploading what was left")
    assert "aborted 1 multipart upload(s) a previous recorder left unfinished" in successor.log_text()
    assert not seaweedfs.multipart_uploads(BUCKET), "the stale upload is aborted, not left to linger"
    session = done["recordings"][-1]["session"]
    objects = seaweedfs.objects(BUCKET, PREFIX)
    assert set(objects) == keys_of(parts[:1]) | {key_of(f"{session}.json")}, objects
    assert seaweedfs.get(BUCKET, key_of(parts[0])) == keeper.read(parts[0])
    assert not (output / parts[0]).exists(), "removed from the volume once the store holds it"

    # A second restart finds everything done: nothing is uploaded twice.
    successor.stop()
    third = recorder_agent.start(rtmp_source.read_url, output_dir=output, s3=s3_config(seaweedfs.endpoint, creds))
    third.wait_status(all_uploaded, 30, "nothing left to upload")
    assert "uploaded " not in third.log_text()
    assert seaweedfs.objects(BUCKET, PREFIX) == objects


def test_a_session_that_resumes_after_its_first_part_left_the_volume_never_reuses_its_number(
    rtmp_source, recorder_agent, publishers, seaweedfs, keepers, tmp_path
):
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    recorder = recorder_agent.start(
        rtmp_source.read_url, finalize_after_seconds=15, s3=s3_config(seaweedfs.endpoint, creds)
    )
    keeper = keepers(recorder.output_dir, tmp_path / "kept")
    recorder.put_desired(recording=True)
    first = publishers.rtmp(rtmp_source.publish_url)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 4, 40, "4 s recorded")
    first.stop()
    # The stream dropped: its part is finished, uploaded and removed while the session waits for it.
    gone = recorder.wait_status(
        lambda s: s["state"] == "reconnecting" and not s["files"] and keeper.collect(),
        30,
        "the first part uploaded and off the volume while reconnecting",
    )
    assert gone["startedAt"]
    publishers.rtmp(rtmp_source.publish_url)
    recorder.wait_status(lambda s: s["state"] == "recording" and s["files"], 30, "the session going on in a new part")
    recorder.wait_status(lambda s: s["durationSeconds"] >= 8, 40, "8 s recorded")
    recorder.put_desired(recording=False)
    done = recorder.wait_status(all_uploaded, 60, "every file uploaded")

    [session] = done["recordings"]
    parts = keeper.collect()
    assert (
        [p["file"] for p in session["parts"]]
        == parts
        == [f"{session['session']}_part0001.mp4", f"{session['session']}_part0002.mp4"]
    )
    assert all(p["durationSeconds"] and p["bytes"] for p in session["parts"]), (
        "the removed part keeps its size and duration"
    )
    objects = seaweedfs.objects(BUCKET, PREFIX)
    assert set(objects) == keys_of(parts) | {key_of(f"{session['session']}.json")}
    for name in parts:
        assert seaweedfs.get(BUCKET, key_of(name)) == keeper.read(name), f"{name} was overwritten or differs"


def test_deleting_an_uploaded_session_deletes_its_objects_and_its_files(
    rtmp_source, recorder_agent, publishers, seaweedfs, tmp_path
):
    """DELETE /recordings/<session> (what deleting its Recording does): the parts' objects and the
    sidecar's object go with the files and upload markers on the volume; another session stays; a
    store that refuses says why (and nothing on the volume goes), a retry once fixed finishes it."""
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    publisher = publishers.rtmp(rtmp_source.publish_url)
    recorder = recorder_agent.start(rtmp_source.read_url, split_seconds=2, s3=s3_config(seaweedfs.endpoint, creds))
    sessions = []
    for _ in range(2):
        before = len(recorder.status()["recordings"])
        recorder.put_desired(recording=True)
        recorder.wait_status(lambda s: s["durationSeconds"] >= 4, 40, "4 s recorded")
        recorder.put_desired(recording=False)
        done = recorder.wait_status(
            lambda s: len(s["recordings"]) == before + 1 and all_uploaded(s), 60, "the session finalized and uploaded"
        )
        sessions.append(done["recordings"][-1])
    publisher.stop()
    first, second = sessions
    out = recorder.output_dir
    first_keys = keys_of(p["file"] for p in first["parts"]) | {key_of(f"{first['session']}.json")}
    second_keys = keys_of(p["file"] for p in second["parts"]) | {key_of(f"{second['session']}.json")}
    assert set(seaweedfs.objects(BUCKET, PREFIX)) == first_keys | second_keys
    assert len(first["parts"]) >= 2 and all(p["object"] for p in first["parts"])
    assert sorted(p.name for p in out.glob(f".{first['session']}*")), "upload markers on the volume"

    # The store refuses the key: nothing is deleted, and the answer says what to fix.
    write_credentials(creds, secret_key="not-the-secret")
    code, body = recorder.request("DELETE", f"/recordings/{first['session']}")
    assert code == 502, body
    error = json.loads(body)["error"]
    assert "refused the credentials" in error and "accessKeyId and secretAccessKey" in error, error
    assert "not-the-secret" not in error
    assert set(seaweedfs.objects(BUCKET, PREFIX)) == first_keys | second_keys
    assert (out / f"{first['session']}.json").exists(), "the session stays listed, so the deletion is retried"
    assert first["session"] in [r["session"] for r in recorder.status()["recordings"]]

    write_credentials(creds)
    code, body = recorder.request("DELETE", f"/recordings/{first['session']}")
    assert code == 200, body
    answer = json.loads(body)
    assert sorted(answer["objects"]) == sorted(f"s3://{BUCKET}/{key}" for key in first_keys)
    assert set(seaweedfs.objects(BUCKET, PREFIX)) == second_keys, "the other session's objects stay"
    assert sorted(p.name for p in out.glob(f"*{first['session']}*")) == [], "no file, sidecar or marker left"
    assert sorted(p.name for p in out.glob(f"*{second['session']}*")), "the other session's files stay"
    assert [r["session"] for r in recorder.status()["recordings"]] == [second["session"]]

    # Retried (the answer was lost): nothing left, still a success; nothing is uploaded again.
    code, body = recorder.request("DELETE", f"/recordings/{first['session']}")
    assert code == 200 and json.loads(body)["objects"] == [] and json.loads(body)["deleted"] == [], body
    recorder.wait_status(all_uploaded, 10, "the uploader idle")
    assert set(seaweedfs.objects(BUCKET, PREFIX)) == second_keys


def test_the_deletion_pod_command_deletes_the_objects_with_the_mounted_credentials(
    rtmp_source, recorder_agent, publishers, seaweedfs, tmp_path
):
    """`onair agent recorder --delete-session ... --s3-config ...`: the one-shot pod the operator
    starts when no recorder runs on the volume, with the credentials Secret mounted like the recorder's."""
    import subprocess
    import sys

    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    publisher = publishers.rtmp(rtmp_source.publish_url)
    config = s3_config(seaweedfs.endpoint, creds)
    recorder = recorder_agent.start(rtmp_source.read_url, split_seconds=2, s3=config)
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 3, 40, "3 s recorded")
    recorder.put_desired(recording=False)
    done = recorder.wait_status(lambda s: bool(s["recordings"]) and all_uploaded(s), 60, "uploaded")
    publisher.stop()
    session = done["recordings"][-1]["session"]
    recorder.stop()
    assert seaweedfs.objects(BUCKET, PREFIX)

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "onair.cli",
                "agent",
                "recorder",
                "--delete-session",
                session,
                "--livestream",
                "default/show",
                "--output-dir",
                str(recorder.output_dir),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    write_credentials(creds, secret_key="not-the-secret")
    failed = run("--s3-config", config.model_dump_json())
    assert failed.returncode == 1 and "refused the credentials" in failed.stderr, failed.stderr
    assert seaweedfs.objects(BUCKET, PREFIX) and (recorder.output_dir / f"{session}.json").exists()
    write_credentials(creds)
    ok = run("--s3-config", config.model_dump_json())
    assert ok.returncode == 0, ok.stderr
    assert seaweedfs.objects(BUCKET, PREFIX) == {}
    assert sorted(p.name for p in recorder.output_dir.glob(f"*{session}*")) == []
    assert f"s3://{BUCKET}/" in ok.stdout


def test_deleting_a_session_while_its_part_is_uploading_cuts_the_upload_off_and_leaves_nothing(
    rtmp_source, recorder_agent, publishers, seaweedfs, throttled_proxy, tmp_path
):
    """A part can take minutes to upload: deleting its session does not wait for it (the operator's
    request would time out), it cuts it off and aborts the multipart upload it leaves."""
    seaweedfs.create_bucket(BUCKET)
    creds = tmp_path / "s3-secret"
    write_credentials(creds)
    proxy = throttled_proxy(seaweedfs.ports["s3"], rate=20_000)  # far slower than the recording
    publisher = publishers.rtmp(rtmp_source.publish_url)
    recorder = recorder_agent.start(
        rtmp_source.read_url,
        s3=s3_config(proxy.endpoint, creds, request_timeout_seconds=10, part_size_bytes=5 * 1024 * 1024),
    )
    recorder.put_desired(recording=True)
    recorder.wait_status(lambda s: s["durationSeconds"] >= 6, 40, "6 s recorded")
    recorder.put_desired(recording=False)
    done = recorder.wait_status(
        lambda s: bool(s["recordings"]) and upload_of(s).get("uploading"), 40, "the finished session's part uploading"
    )
    publisher.stop()
    session = done["recordings"][-1]["session"]
    wait_for(lambda: proxy.forwarded > 20_000, 20, interval=0.1, what="the upload under way")

    code, body = recorder.request("DELETE", f"/recordings/{session}", timeout=30)
    assert code == 200, body
    assert sorted(p.name for p in recorder.output_dir.glob(f"*{session}*")) == []
    assert seaweedfs.objects(BUCKET, PREFIX) == {}
    assert seaweedfs.multipart_uploads(BUCKET) == [], "the cut-off upload is aborted, not left to hold storage"
    status = recorder.wait_status(lambda s: upload_of(s).get("uploading") is None, 20, "the uploader idle")
    assert status["recordings"] == [] and upload_of(status)["pending"] == 0
    assert seaweedfs.objects(BUCKET, PREFIX) == {}, "nothing of the session is uploaded again"
