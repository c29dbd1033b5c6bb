"""The pure parts of the recorder's S3 upload: keys, multipart ETags, backoff, failure wording, markers."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from onair.agent.recorder.session import Backoff
from onair.agent.recorder.upload import (
    Marker,
    UploadFailed,
    classify,
    file_part_digests,
    livestream_key_prefix,
    marker_name,
    multipart_etag,
    object_key,
    object_url,
    part_ranges,
    read_marker,
    target_url,
    uploaded_parts,
    write_marker,
)
from onair.api.agent import S3UploadConfig, StoredObject

CONFIG = S3UploadConfig(
    endpoint="https://s3.example.org",
    bucket="shows",
    prefix="rec",
    access_key_id_file="/k",
    secret_access_key_file="/s",
    request_timeout_seconds=30,
)


def test_object_key_is_prefix_namespace_name_session_file_whatever_the_prefix_slashes():
    session = "events_show_20260101T100000Z"
    part = f"{session}_part0001.mp4"
    expected = f"recordings/prod/events/show/{session}/{part}"
    for prefix in ("recordings/prod", "/recordings/prod/", "recordings//prod/"):
        assert object_key(prefix, "events/show", session, part) == expected
    assert object_key("", "events/show", session, f"{session}.json") == f"events/show/{session}/{session}.json"
    assert livestream_key_prefix("/rec/", "events/show") == "rec/events/show/"
    assert livestream_key_prefix("", "events/show") == "events/show/"
    assert object_url("b", "k/x.mp4") == "s3://b/k/x.mp4"
    assert target_url("b", "/a/b/") == "s3://b/a/b/" and target_url("b", "") == "s3://b/"


def test_part_ranges_cover_the_file_once_and_an_empty_file_is_one_part():
    mib = 1024 * 1024
    assert part_ranges(0, 5 * mib) == [(0, 0)]
    assert part_ranges(5 * mib, 5 * mib) == [(0, 5 * mib)]
    assert part_ranges(12 * mib + 3, 5 * mib) == [(0, 5 * mib), (5 * mib, 5 * mib), (10 * mib, 2 * mib + 3)]


def test_multipart_etag_is_md5_of_the_part_md5s_with_the_part_count(tmp_path):
    first, second = b"a" * 1000, b"b" * 10
    digests = [hashlib.md5(first).digest(), hashlib.md5(second).digest()]
    assert multipart_etag(digests) == hashlib.md5(digests[0] + digests[1]).hexdigest() + "-2"
    path = tmp_path / "f"
    path.write_bytes(first + second)
    assert file_part_digests(path, 1000) == digests


def test_backoff_doubles_to_its_ceiling_and_never_gives_up():
    backoff = Backoff(1.0, 60.0)
    delays = [backoff.next() for _ in range(200)]
    assert delays[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert set(delays[6:]) == {60}, "bounded per attempt, unbounded in count"
    backoff.reset()
    assert backoff.next() == 1


def client_error(code: str, message: str = "", status: int = 400, operation: str = "UploadPart") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    "exc,kind,words",
    [
        (
            client_error("SignatureDoesNotMatch", "The request signature we calculated does not match", 403),
            "credentials",
            ["refused the credentials", "SignatureDoesNotMatch", "accessKeyId and secretAccessKey"],
        ),
        (
            client_error("InvalidAccessKeyId", "The access key ID you provided does not exist", 403),
            "credentials",
            ["InvalidAccessKeyId"],
        ),
        (client_error("403", "Forbidden", 403, "HeadObject"), "credentials", ["refused the credentials"]),
        (
            client_error("NoSuchBucket", "The specified bucket does not exist", 404, "ListMultipartUploads"),
            "bucket",
            ["bucket shows does not exist at https://s3.example.org", "create it"],
        ),
        (
            client_error("AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'eu-west-1'"),
            "bucket",
            ["region", "forcePathStyle"],
        ),
        (client_error("SlowDown", "Reduce your request rate", 503), "unreachable", ["retrying"]),
        (client_error("EntityTooLarge", "too large"), "rejected", ["rejected the upload", "EntityTooLarge"]),
        (
            EndpointConnectionError(endpoint_url="https://s3.example.org/shows/rec/a?uploads"),
            "unreachable",
            ["cannot connect to https://s3.example.org; retrying"],
        ),
        (ConnectTimeoutError(endpoint_url="https://s3.example.org/x"), "unreachable", ["timed out after 30s"]),
        (ReadTimeoutError(endpoint_url="https://s3.example.org/x"), "unreachable", ["did not answer within 30s"]),
        (ConnectionClosedError(endpoint_url="https://s3.example.org/x"), "unreachable", ["broke off"]),
        (PermissionError(13, "Permission denied"), "local", ["cannot read the file", "Permission denied"]),
    ],
)
def test_failures_are_worded_for_the_user_and_the_same_for_the_same_cause(exc, kind, words):
    failure = classify(exc, CONFIG)
    assert failure.kind == kind
    for word in words:
        assert word in failure.message, failure.message
    # No key or request URL: the message becomes a condition and must not change from file to file.
    assert "/rec/a" not in failure.message and "?uploads" not in failure.message
    assert classify(failure, CONFIG) is failure


def test_marker_round_trip_and_uploaded_parts_outlive_the_files(tmp_path):
    session = "events_show_20260101T100000Z"
    part = f"{session}_part0002.mp4"
    stored = StoredObject(
        url=f"s3://shows/rec/events/show/{session}/{part}",
        endpoint="https://s3.example.org",
        etag="0123abcd-1",
        uploaded_at=datetime(2026, 1, 1, 10, 5, tzinfo=timezone.utc),
    )
    write_marker(tmp_path, Marker(file=part, bytes=1234, md5="ff", object=stored, duration_seconds=3.5))
    assert (tmp_path / marker_name(part)).name == f".{part}.uploaded.json"
    assert read_marker(tmp_path, part) == Marker(file=part, bytes=1234, md5="ff", object=stored, duration_seconds=3.5)
    assert read_marker(tmp_path, "other.mp4") is None
    (tmp_path / marker_name("broken.mp4")).write_text("{")
    assert read_marker(tmp_path, "broken.mp4") is None
    assert [p.name for p in uploaded_parts(tmp_path, "events/show")] == [part]
    assert uploaded_parts(tmp_path, "events/other") == []


def test_upload_failed_carries_kind_and_message():
    failure = UploadFailed("bucket", "bucket x does not exist")
    assert failure.kind == "bucket" and str(failure) == "bucket x does not exist"
