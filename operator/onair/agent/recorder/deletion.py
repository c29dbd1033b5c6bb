"""Deleting one finished recording session from the volume: its parts, then its sidecar.

Used by the recorder's ``DELETE /recordings/<session>`` (when the recorder runs) and by
``onair agent recorder --delete-session`` (the one-shot pod the operator starts when none does),
so both delete exactly the same files. The sidecar goes last: a deletion cut short leaves a
sidecar that still lists the session, so the Recording object stays and the deletion is retried;
never parts without a sidecar, which a restarted recorder would "recover" as a new session.
Deleting a session that is not there any more deletes nothing and succeeds (retries are safe).

With object storage (``recording.storage.s3``) the session's objects go first: every object under
the session's key prefix (parts and sidecar) and every object the volume's upload markers name.
First, because the files on the volume are what lists the session: a failed object deletion leaves
the session listed, so the Recording stays and the deletion is retried, never objects that nothing
names any more. The objects are deleted with the recorder's own client and credentials (the
Secret mounted at ``/etc/onair/s3``): the operator holds no storage credentials. An object already
gone counts as deleted (S3's DELETE of a missing key succeeds).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from onair.api.agent import S3UploadConfig

from .naming import list_parts, livestream_slug, sidecar_name
from .upload import (
    S3Store,
    UploadFailed,
    classify,
    error_code,
    marker_name,
    object_key,
    object_url,
    read_marker,
    uploaded_parts,
)


TERMINATION_LOG = "/dev/termination-log"


class NotASessionOf(ValueError):
    """The name is not a session of this livestream."""


def check_session(livestream: str, session: str) -> None:
    if not re.fullmatch(rf"{re.escape(livestream_slug(livestream))}_\d{{8}}T\d{{6}}Z", session):
        raise NotASessionOf(
            f"{session!r} is not a recording session of {livestream} "
            f"(expected {livestream_slug(livestream)}_<YYYYmmddTHHMMSSZ>)"
        )


def delete_session(output_dir: Path, livestream: str, session: str) -> list[str]:
    """Delete ``session``'s files in ``output_dir``; the names deleted (none when it was gone).

    Raises ``NotASessionOf`` for a name of another livestream, ``OSError`` when a file cannot be
    deleted (what was deleted before stays deleted; the sidecar stays while any part does)."""
    check_session(livestream, session)
    deleted: list[str] = []
    for part in list_parts(output_dir, livestream):
        if part.prefix == session:
            _unlink(output_dir / part.name, deleted)
    _unlink(output_dir / f".{sidecar_name(session)}.tmp", deleted)
    _unlink(output_dir / sidecar_name(session), deleted)
    # The upload markers last: while the sidecar is there, a marker is what keeps the uploader from
    # uploading the sidecar again (and so re-creating an object just deleted).
    for part in uploaded_parts(output_dir, livestream):
        if part.prefix == session:
            _unlink(output_dir / marker_name(part.name), deleted)
    _unlink(output_dir / marker_name(sidecar_name(session)), deleted)
    return deleted


class ObjectDeletionFailed(Exception):
    """The session's objects could not be deleted: what the store said, and what to do about it."""


def delete_session_objects(store: S3Store, output_dir: Path, livestream: str, session: str) -> list[str]:
    """Delete ``session``'s objects (blocking); the ``s3://`` URLs deleted. Raises ``NotASessionOf``,
    ``ObjectDeletionFailed``."""
    check_session(livestream, session)
    config = store.config
    keys = set(_marked_keys(config, output_dir, livestream, session))
    prefix = object_key(config.prefix, livestream, session, "")
    try:
        client = store.client()
        _abort_uploads(store, prefix)
        keys |= set(_listed_keys(client, config.bucket, prefix))
        for key in sorted(keys):
            client.delete_object(Bucket=config.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - every failure is worded for the user by classify
        failure = exc if isinstance(exc, UploadFailed) else classify(exc, config)
        raise ObjectDeletionFailed(_deletion_wording(failure.message)) from None
    return [object_url(config.bucket, key) for key in sorted(keys)]


def _marked_keys(config: S3UploadConfig, output_dir: Path, livestream: str, session: str) -> list[str]:
    """Keys the upload markers name (a prefix changed since the upload keeps its old keys); one in
    another bucket cannot be deleted with this configuration, and is not silently left behind."""
    names = [p.name for p in uploaded_parts(output_dir, livestream) if p.prefix == session]
    keys = []
    for name in [*names, sidecar_name(session)]:
        marker = read_marker(output_dir, name)
        if marker is None:
            continue
        bucket, _, key = marker.object.url.removeprefix("s3://").partition("/")
        if bucket != config.bucket:
            raise ObjectDeletionFailed(
                f"{name} was uploaded to {marker.object.url}, but recording.storage.s3 now names bucket "
                f"{config.bucket}: delete that object yourself, or set the bucket back until the recording is deleted"
            )
        keys.append(key)
    return keys


def _abort_uploads(store: S3Store, prefix: str) -> None:
    """Multipart uploads of the session left open (one cut off by this deletion, or by a kill): they
    hold storage without being objects."""
    from botocore.exceptions import ClientError

    try:
        store.abort_stale_uploads(prefix)
    except ClientError as exc:
        if error_code(exc)[0] != "AccessDenied":
            raise
        # The key may delete but not list uploads: the bucket's lifecycle rule
        # (AbortIncompleteMultipartUpload) cleans them up.


def _listed_keys(client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
        keys += [item["Key"] for item in page.get("Contents") or ()]
        if not page.get("IsTruncated"):
            return keys
        token = {"ContinuationToken": page["NextContinuationToken"]}


def _deletion_wording(message: str) -> str:
    # classify() speaks of uploads and writing; a deletion needs s3:DeleteObject and s3:ListBucket.
    return message.replace("rejected the upload", "refused the deletion").replace(
        "may write to the bucket", "may list and delete objects in the bucket"
    )


def _unlink(path: Path, deleted: list[str]) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(exc.errno, f"cannot delete {path.name}: {exc.strerror}") from None
    deleted.append(path.name)


def main(argv: list[str]) -> int:
    """``onair agent recorder --delete-session SESSION --livestream NS/NAME [--output-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="onair agent recorder --delete-session")
    parser.add_argument("--delete-session", required=True, metavar="SESSION")
    parser.add_argument("--livestream", required=True, metavar="NAMESPACE/NAME")
    parser.add_argument("--output-dir", default="/recordings", type=Path)
    parser.add_argument(
        "--s3-config",
        metavar="JSON",
        help=("the recorder's S3UploadConfig (recording.storage.s3): delete the session's objects first"),
    )
    args = parser.parse_args(argv)
    if not args.output_dir.is_dir():
        print(f"recordings volume {args.output_dir} is not mounted (no such directory)", file=sys.stderr)
        return 1
    try:
        deleted = []
        if args.s3_config:
            store = S3Store(S3UploadConfig.model_validate_json(args.s3_config))
            deleted += delete_session_objects(store, args.output_dir, args.livestream, args.delete_session)
        deleted += delete_session(args.output_dir, args.livestream, args.delete_session)
    except (NotASessionOf, ObjectDeletionFailed, OSError) as exc:
        print(f"cannot delete recording {args.delete_session}: {exc}", file=sys.stderr)
        _tell_kubelet(f"cannot delete recording {args.delete_session}: {exc}")
        return 1
    said = f"deleted recording {args.delete_session}: " + (", ".join(deleted) or "no file was left")
    print(said)
    _tell_kubelet(said)
    return 0


def _tell_kubelet(message: str) -> None:
    """In a pod, the kubelet hands the termination log to the pod's status, where the operator
    reads what was deleted; elsewhere there is no such file and nothing is written."""
    path = Path(TERMINATION_LOG)
    if path.exists():
        try:
            path.write_text(message[:4000])
        except OSError:
            pass
