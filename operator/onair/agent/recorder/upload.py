"""Uploads of finished recording files to S3-compatible object storage.

Every part is uploaded as soon as ffmpeg has closed it, and a session's JSON sidecar once the
session is finalized and all its parts are in the bucket (the sidecar then names each part's
object). Each file is one multipart upload under a deterministic key,
``<prefix>/<namespace>/<name>/<session>/<file>`` (``object_key``): a restarted recorder uploads the
same file to the same key, so it overwrites instead of duplicating, and before its first upload it
aborts the multipart uploads a killed predecessor left under the livestream's keys.

An upload counts as confirmed only when the store's ETag of every part is the MD5 of what was
sent, the ETag of the whole object is the multipart ETag computed from those MD5s, and the
object's size is the file's. Only then is a marker written next to the file
(``.<file>.uploaded.json``, which also keeps the part's size and duration once the file is gone)
and, unless ``keepLocalCopy``, the file deleted: a part is never deleted before the store
confirmed it. A failed attempt is retried, without limit while the agent runs, after a backoff
that doubles up to ``retryMaxSeconds``; every request is bounded by ``requestTimeoutSeconds``, so
a store that hangs costs one attempt, not the uploader. What fails, and what to do about it, is in
``/status`` (``upload``, and ``uploadError`` of the part) worded the same for the same cause.

Client library: botocore, the engine of boto3, maintained by AWS and the client every
S3-compatible store (SeaweedFS, MinIO, Ceph RGW, R2, Wasabi...) is tested against. Only its
low-level S3 client is used: the multipart calls themselves are what this module must control
(resume a part list after a failed attempt, check each part's ETag, abort stale uploads), which
boto3's managed transfers (s3transfer) hide and the ``minio`` package keeps private (its public
API uploads a file in one call and lists no multipart uploads). botocore is the bigger package
(about 30 MB installed), the price of the reference client and its signing, addressing and error
codes; boto3 itself adds nothing this module uses, so it is not a dependency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol

from onair.api.agent import S3UploadConfig, StoredObject

from .naming import PartFile, parse_parts

log = logging.getLogger("onair.agent.recorder")

MARKER_SUFFIX = ".uploaded.json"
READ_CHUNK = 1024 * 1024
# Kinds of failure that say nothing about one file: retrying another file cannot succeed either.
STORE_WIDE_KINDS = ("credentials", "bucket", "unreachable")
CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
    "AccountProblem",
    "403",
    "Forbidden",
    "InvalidArgument.AccessKey",
}
BUCKET_CODES = {
    "NoSuchBucket",
    "AllAccessDisabled",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
}


# ----------------------------------------------------------------------------- keys and ETags
def object_key(prefix: str, livestream: str, session: str, file: str) -> str:
    """``<prefix>/<namespace>/<name>/<session>/<file>``; no empty segment whatever the prefix's slashes."""
    namespace, _, name = livestream.partition("/")
    segments = [s for s in prefix.split("/") if s] + [namespace, name, session, file]
    return "/".join(segments)


def livestream_key_prefix(prefix: str, livestream: str) -> str:
    """Every key of this livestream starts with this (ends with ``/``)."""
    namespace, _, name = livestream.partition("/")
    return "/".join([s for s in prefix.split("/") if s] + [namespace, name]) + "/"


def object_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def target_url(bucket: str, prefix: str) -> str:
    cleaned = "/".join(s for s in prefix.split("/") if s)
    return f"s3://{bucket}/{cleaned + '/' if cleaned else ''}"


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each multipart part; an empty file is one empty part (S3 needs one)."""
    if size <= 0:
        return [(0, 0)]
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


def multipart_etag(part_digests: Iterable[bytes]) -> str:
    """The ETag S3 gives a completed multipart upload: MD5 of the parts' binary MD5s, ``-<parts>``."""
    digests = list(part_digests)
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def plain_etag(etag: Optional[str]) -> str:
    return (etag or "").strip().strip('"').lower()


def file_part_digests(path: Path, part_size: int) -> list[bytes]:
    digests = []
    with open(path, "rb") as handle:
        for _offset, length in part_ranges(os.fstat(handle.fileno()).st_size, part_size):
            md5 = hashlib.md5()
            left = length
            while left:
                chunk = handle.read(min(READ_CHUNK, left))
                if not chunk:
                    raise OSError(f"{path.name} shrank while it was read")
                md5.update(chunk)
                left -= len(chunk)
            digests.append(md5.digest())
    return digests


# ----------------------------------------------------------------------------- markers
def marker_name(file: str) -> str:
    return f".{file}{MARKER_SUFFIX}"


_MARKER = re.compile(r"^\.(?P<file>.+)" + re.escape(MARKER_SUFFIX) + r"$")


@dataclass(frozen=True)
class Marker:
    """What a confirmed upload leaves on the volume next to (or instead of) its file."""

    file: str
    bytes: int
    md5: str  # of the whole file: a sidecar rewritten after its upload is uploaded again
    object: StoredObject
    duration_seconds: Optional[float] = None

    def document(self) -> dict:
        return {
            "file": self.file,
            "bytes": self.bytes,
            "md5": self.md5,
            "durationSeconds": self.duration_seconds,
            "object": self.object.wire(),
        }


def read_marker(output_dir: Path, file: str) -> Optional[Marker]:
    try:
        doc = json.loads((output_dir / marker_name(file)).read_text())
        return Marker(
            file=doc["file"],
            bytes=int(doc["bytes"]),
            md5=str(doc.get("md5") or ""),
            object=StoredObject.model_validate(doc["object"]),
            duration_seconds=doc.get("durationSeconds"),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("upload marker of %s is unreadable (%s): the file is uploaded again", file, exc)
        return None


def write_marker(output_dir: Path, marker: Marker) -> None:
    target = output_dir / marker_name(marker.file)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "w") as handle:
        json.dump(marker.document(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def uploaded_parts(output_dir: Path, livestream: str) -> list[PartFile]:
    """Parts whose upload is confirmed, whether or not the file is still on the volume."""
    try:
        names = [m["file"] for m in (_MARKER.match(e.name) for e in os.scandir(output_dir)) if m]
    except OSError:
        return []
    return parse_parts(livestream, names)


# ----------------------------------------------------------------------------- failures
class UploadFailed(Exception):
    """One failed attempt: ``kind`` (an ``UploadErrorKind``) and a message that is the same for the
    same cause (no key, no request id), so it can become a condition message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class UploadCancelled(Exception):
    """The agent is stopping; the upload goes on with the next recorder."""


def error_code(exc: Exception) -> tuple[str, str, int]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return str(error.get("Code") or status or ""), str(error.get("Message") or "").strip(), status


def classify(exc: Exception, config: S3UploadConfig) -> UploadFailed:
    """A botocore (or OS) exception as the user should read it."""
    from botocore import exceptions as bex

    where = f"{config.endpoint}, bucket {config.bucket}"
    if isinstance(exc, UploadFailed):
        return exc
    if isinstance(exc, bex.ClientError):
        code, message, status = error_code(exc)
        said = f"{code}: {message}" if message and message != code else code
        if code in BUCKET_CODES or (code == "404" and exc.operation_name in ("HeadBucket", "ListMultipartUploads")):
            if code == "NoSuchBucket" or code == "404":
                return UploadFailed(
                    "bucket",
                    (
                        f"bucket {config.bucket} does not exist at {config.endpoint} ({said}): create it, or name an "
                        "existing one in recording.storage.s3.bucket"
                    ),
                )
            return UploadFailed(
                "bucket",
                (
                    f"{where} cannot be used as configured ({said}): check recording.storage.s3.region, endpoint "
                    "and forcePathStyle"
                ),
            )
        if code in CREDENTIAL_CODES or status in (401, 403):
            return UploadFailed(
                "credentials",
                (
                    f"{where} refused the credentials ({said}): check accessKeyId and secretAccessKey in the Secret "
                    "named by recording.storage.s3.credentialsSecret, and that this key may write to the bucket"
                ),
            )
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
            return UploadFailed("unreachable", f"{where} is failing ({said}); retrying")
        return UploadFailed("rejected", f"{where} rejected the upload ({said})")
    if isinstance(exc, bex.NoCredentialsError):
        return UploadFailed("credentials", f"no credentials for {where}")
    if isinstance(exc, (bex.ConnectTimeoutError,)):
        return UploadFailed(
            "unreachable",
            f"connecting to {config.endpoint} timed out after {config.request_timeout_seconds:g}s; retrying",
        )
    if isinstance(exc, bex.ReadTimeoutError):
        return UploadFailed(
            "unreachable", f"{config.endpoint} did not answer within {config.request_timeout_seconds:g}s; retrying"
        )
    if isinstance(exc, bex.EndpointConnectionError):
        return UploadFailed("unreachable", f"cannot connect to {config.endpoint}; retrying")
    if isinstance(exc, (bex.ConnectionClosedError, bex.ConnectionError, bex.HTTPClientError)):
        return UploadFailed("unreachable", f"the connection to {config.endpoint} broke off; retrying")
    if isinstance(exc, bex.BotoCoreError):
        return UploadFailed("rejected", f"{where}: {exc}")
    if isinstance(exc, OSError):
        return UploadFailed("local", f"cannot read the file to upload: {exc.strerror or exc}")
    return UploadFailed("rejected", f"{where}: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- the store
@dataclass
class MultipartProgress:
    """An upload in progress in this process, resumed by the next attempt: what the store confirmed."""

    upload_id: str
    size: int
    mtime_ns: int
    done: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # part number -> (ETag, MD5)


def _read_credential(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except FileNotFoundError:
        value = ""
    except OSError as exc:
        raise UploadFailed("credentials", f"cannot read the S3 {what} from {path}: {exc.strerror}") from None
    if not value:
        raise UploadFailed(
            "credentials",
            (
                f"no S3 {what} in {path}: create the Secret named by recording.storage.s3.credentialsSecret in the "
                "Livestream's namespace, with the keys accessKeyId and secretAccessKey"
            ),
        )
    return value


class Cancel(Protocol):
    def is_set(self) -> bool: ...


class S3Store:
    """The blocking S3 calls (run in a worker thread). Credentials are read from their files at every
    attempt: a rotated Secret is used without a restart."""

    def __init__(self, config: S3UploadConfig) -> None:
        self.config = config
        self._client = None
        self._client_keys: Optional[tuple[str, str]] = None

    def client(self):
        keys = (
            _read_credential(self.config.access_key_id_file, "access key id"),
            _read_credential(self.config.secret_access_key_file, "secret access key"),
        )
        if self._client is None or keys != self._client_keys:
            import botocore.session
            from botocore.config import Config

            timeout = self.config.request_timeout_seconds
            session = botocore.session.get_session()
            self._client = session.create_client(
                "s3",
                endpoint_url=self.config.endpoint,
                region_name=self.config.region,
                aws_access_key_id=keys[0],
                aws_secret_access_key=keys[1],
                config=Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    # One try per call: the uploader's own backoff retries, and reports each failure.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    s3={"addressing_style": "path" if self.config.force_path_style else "auto"},
                    # Send Content-MD5 (below) rather than the newer CRC checksums, which many
                    # S3-compatible stores do not accept.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    user_agent_extra="onair-recorder",
                ),
            )
            self._client_keys = keys
        return self._client

    def abort_stale_uploads(self, key_prefix: str) -> int:
        """Abort every multipart upload under ``key_prefix``: only one recorder writes a livestream's
        keys, so any found when it starts were left by a predecessor that was killed."""
        client = self.client()
        aborted = 0
        markers: dict[str, str] = {}
        while True:
            page = client.list_multipart_uploads(Bucket=self.config.bucket, Prefix=key_prefix, **markers)
            for upload in page.get("Uploads") or ():
                client.abort_multipart_upload(Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
                log.info(
                    "aborted the stale multipart upload of %s (started %s)", upload["Key"], upload.get("Initiated")
                )
            if not page.get("IsTruncated"):
                return aborted
            markers = {
                "KeyMarker": page.get("NextKeyMarker") or "",
                "UploadIdMarker": page.get("NextUploadIdMarker") or "",
            }

    def existing(self, key: str) -> Optional[dict]:
        """HEAD of ``key``: None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return self.client().head_object(Bucket=self.config.bucket, Key=key)
        except ClientError as exc:
            code, _, status = error_code(exc)
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def upload(
        self,
        path: Path,
        key: str,
        progress: Optional[MultipartProgress],
        cancel: "Cancel",
        remember: Callable[[Optional[MultipartProgress]], None],
    ) -> tuple[str, int, str]:
        """Upload ``path`` to ``key`` as one multipart upload, resuming ``progress`` when it is of this
        same file; returns (ETag, size, MD5 of the file) once the store confirmed all three."""
        from botocore.exceptions import ClientError

        client = self.client()
        bucket = self.config.bucket
        stat = path.stat()
        if progress is not None and (progress.size, progress.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            progress = None
        if progress is None:
            created = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type(path.name))
            progress = MultipartProgress(created["UploadId"], stat.st_size, stat.st_mtime_ns)
        remember(progress)
        whole = hashlib.md5()
        with open(path, "rb") as handle:
            for number, (offset, length) in enumerate(part_ranges(stat.st_size, self.config.part_size_bytes), 1):
                if cancel.is_set():
                    raise UploadCancelled()
                handle.seek(offset)
                data = handle.read(length)
                if len(data) != length:
                    raise UploadFailed("local", f"{path.name} shrank while it was uploaded")
                whole.update(data)
                digest = hashlib.md5(data).digest()
                if number in progress.done and progress.done[number][1] == digest:
                    continue
                try:
                    answer = client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=progress.upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentMD5=base64.b64encode(digest).decode(),
                    )
                except ClientError as exc:
                    if error_code(exc)[0] == "NoSuchUpload":
                        remember(None)  # the store dropped it: the next attempt starts a new one
                    raise
                if plain_etag(answer.get("ETag")) != digest.hex():
                    raise UploadFailed(
                        "rejected",
                        (
                            f"{self.config.endpoint} stored a part with ETag {plain_etag(answer.get('ETag'))}, not the MD5 of "
                            "what was sent: the store changes or damages uploads"
                        ),
                    )
                progress.done[number] = (answer["ETag"], digest)
        parts = sorted(progress.done.items())
        expected = multipart_etag(d for _, (_, d) in parts)
        try:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=progress.upload_id,
                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": n} for n, (etag, _) in parts]},
            )
        except ClientError as exc:
            if error_code(exc)[0] in ("NoSuchUpload", "InvalidPart", "InvalidPartOrder"):
                remember(None)
            raise
        remember(None)
        head = self.existing(key)
        if head is None:
            raise UploadFailed("rejected", f"{self.config.endpoint} completed the upload but has no object afterwards")
        etag = plain_etag(head.get("ETag"))
        if int(head.get("ContentLength", -1)) != stat.st_size or etag not in (expected, whole.hexdigest()):
            raise UploadFailed(
                "rejected",
                (
                    f"{self.config.endpoint} holds a different object than the file after the upload (size "
                    f"{head.get('ContentLength')} instead of {stat.st_size}, or ETag {etag} instead of {expected})"
                ),
            )
        return etag, stat.st_size, whole.hexdigest()

    def put_small(self, key: str, data: bytes) -> None:
        """One PUT of a small object (a part's playlist), confirmed by its ETag being the MD5 sent."""
        digest = hashlib.md5(data).digest()
        answer = self.client().put_object(
            Bucket=self.config.bucket,
            Key=key,
            Body=data,
            ContentType=content_type(key),
            ContentMD5=base64.b64encode(digest).decode(),
        )
        if plain_etag(answer.get("ETag")) != digest.hex():
            raise UploadFailed(
                "rejected",
                (
                    f"{self.config.endpoint} stored {key.rsplit('/', 1)[-1]} with ETag {plain_etag(answer.get('ETag'))}, "
                    "not the MD5 of what was sent: the store changes or damages uploads"
                ),
            )

    def already_there(self, path: Path, key: str) -> Optional[tuple[str, int, str]]:
        """The object a predecessor uploaded before it was killed, when it is this very file."""
        head = self.existing(key)
        if head is None:
            return None
        size = path.stat().st_size
        if int(head.get("ContentLength", -1)) != size:
            return None
        digests = file_part_digests(path, self.config.part_size_bytes)
        whole = hashlib.md5()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
                whole.update(chunk)
        etag = plain_etag(head.get("ETag"))
        if etag in (multipart_etag(digests), whole.hexdigest()):
            return etag, size, whole.hexdigest()
        return None


def content_type(name: str) -> str:
    if name.endswith(".m3u8"):
        return "application/vnd.apple.mpegurl"
    return "application/json" if name.endswith(".json") else "video/mp4"


def file_md5(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
            md5.update(chunk)
    return md5.hexdigest()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
