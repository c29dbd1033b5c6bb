"""Per-Livestream credentials: generated once, stored in ``<ls>-credentials``, preserved forever.

The Secret is the source of truth: the controller reads it back on every reconcile
(``credentials_from_secret_data``) and re-applies exactly what it read, so keys never rotate by
accident and a user who edits a key in the Secret (manual rotation) keeps it. Nothing here logs
or returns a credential anywhere but the Secret manifest.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Callable, Mapping, Optional
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from onair.api.livestream import IngestEndpoints
from onair.api.meta import labels as labels_of
from onair.api.meta import owner_reference

# Keys of the Secret's data; the agents' ``*_file`` config fields are SECRET_DIR/<key>.
STREAM_KEY = "streamKey"
SRT_PASSPHRASE = "srtPassphrase"
WHIP_TOKEN = "whipToken"
PLAYBACK_SECRET = "playbackSecret"
UPLOAD_TOKEN = "uploadToken"
# Internal readers (transcoder, recorder) present it to the ingest (RTMP ?token=) and the origin
# (Authorization: Bearer): the raw source and backstage playback stay closed to anyone else.
READ_TOKEN = "readToken"
# The operator presents it on every agent API call (Authorization: Bearer): whoever else reaches an
# agent port cannot change the desired state, clear the DVR or read /status.
AGENT_TOKEN = "agentToken"
CREDENTIAL_KEYS = (STREAM_KEY, SRT_PASSPHRASE, WHIP_TOKEN, PLAYBACK_SECRET, UPLOAD_TOKEN, READ_TOKEN, AGENT_TOKEN)

# Convenience keys: full publish URLs with the credentials in them, for copy-paste into OBS.
PUBLISH_URL_KEYS = {
    "rtmp": "rtmpPublishUrl",
    "rtmps": "rtmpsPublishUrl",
    "srt": "srtPublishUrl",
    "whip": "whipUrl",
    "backup_rtmp": "backupRtmpPublishUrl",
    "backup_rtmps": "backupRtmpsPublishUrl",
    "backup_srt": "backupSrtPublishUrl",
    "backup_whip": "backupWhipUrl",
}

# Printable, URL- and shell-safe; never contains characters an RTMP path or SRT URL must escape.
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class Credentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_key: str = Field(min_length=8, max_length=256, pattern=r"^[A-Za-z0-9._~-]+$")
    # libsrt refuses passphrases outside 10..79 characters (SRTO_PASSPHRASE).
    srt_passphrase: str = Field(min_length=10, max_length=79)
    whip_token: str = Field(min_length=8, max_length=256)
    playback_secret: str = Field(min_length=16, max_length=256)
    upload_token: str = Field(min_length=16, max_length=256)
    # URL-safe: it travels in the RTMP play URL's query.
    read_token: str = Field(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9._~-]+$")
    # Travels in an HTTP header: no whitespace or control characters.
    agent_token: str = Field(min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$")

    def __repr__(self) -> str:  # a stray log line must not print keys
        return "Credentials(<redacted>)"

    __str__ = __repr__

    def data(self) -> dict[str, str]:
        """Plain (not base64) values by Secret key."""
        return {
            STREAM_KEY: self.stream_key,
            SRT_PASSPHRASE: self.srt_passphrase,
            WHIP_TOKEN: self.whip_token,
            PLAYBACK_SECRET: self.playback_secret,
            UPLOAD_TOKEN: self.upload_token,
            READ_TOKEN: self.read_token,
            AGENT_TOKEN: self.agent_token,
        }


_FIELD_BY_KEY = {
    STREAM_KEY: "stream_key",
    SRT_PASSPHRASE: "srt_passphrase",
    WHIP_TOKEN: "whip_token",
    PLAYBACK_SECRET: "playback_secret",
    UPLOAD_TOKEN: "upload_token",
    READ_TOKEN: "read_token",
    AGENT_TOKEN: "agent_token",
}


def _token(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def _fresh_values() -> dict[str, str]:
    return {
        "stream_key": _token(24),
        "srt_passphrase": _token(32),
        "whip_token": _token(32),
        "playback_secret": _token(48),
        "upload_token": _token(48),
        "read_token": _token(48),
        "agent_token": _token(48),
    }


def generate_credentials() -> Credentials:
    """New random credentials (the only non-deterministic function of ``onair.render``)."""
    return Credentials(**_fresh_values())


def _decode(value: str) -> Optional[str]:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").strip() or None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


# Known-valid values to check one field at a time against the model's constraints.
_VALID = {
    "stream_key": "k" * 24,
    "srt_passphrase": "p" * 32,
    "whip_token": "w" * 32,
    "playback_secret": "s" * 48,
    "upload_token": "u" * 48,
    "read_token": "r" * 48,
    "agent_token": "a" * 48,
}


def _valid(field: str, value: str) -> bool:
    try:
        Credentials(**{**_VALID, field: value})
    except ValidationError:
        return False
    return True


def credentials_from_secret_data(
    data: Optional[Mapping[str, str]], fill: Callable[[], Credentials] = generate_credentials
) -> Optional[Credentials]:
    """Credentials from an existing Secret's ``data`` (base64 values, as the API returns them).

    None when the Secret holds none of the credential keys (not created yet: generate). Every
    present, decodable and valid value is kept; only missing or unusable ones (e.g. an SRT
    passphrase a user shortened below 10 characters) are taken from ``fill()``, so upgrading an
    older Secret adds keys without rotating the ones already handed out.
    """
    if not data:
        return None
    kept: dict[str, str] = {}
    for key, field in _FIELD_BY_KEY.items():
        raw = data.get(key)
        value = _decode(raw) if isinstance(raw, str) else None
        if value is not None and _valid(field, value):
            kept[field] = value
    if not kept:
        return None
    if len(kept) == len(_FIELD_BY_KEY):
        return Credentials(**kept)
    fresh = fill()
    return Credentials(**{**fresh.model_dump(), **kept})


def secret_name(livestream_name: str) -> str:
    return f"{livestream_name}-credentials"


def publish_urls(creds: Credentials, urls: IngestEndpoints) -> dict[str, str]:
    """Full publish URLs (with key/passphrase) for every endpoint ``urls`` advertises."""
    out: dict[str, str] = {}
    for field, key in PUBLISH_URL_KEYS.items():
        base = getattr(urls, field)
        if not base:
            continue
        if field.endswith("rtmp") or field.endswith("rtmps"):
            out[key] = f"{base.rstrip('/')}/{quote(creds.stream_key, safe='')}"
        elif field.endswith("srt"):
            out[key] = f"{base}{'&' if '?' in base else '?'}passphrase={quote(creds.srt_passphrase, safe='')}"
        else:
            # WHIP authenticates with a bearer token, not in the URL: the URL is the same, kept here
            # so every publish setting sits in one Secret.
            out[key] = base
    return out


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def render_credentials_secret(
    ls_meta: Mapping,
    creds: Credentials,
    urls: IngestEndpoints,
    labels: Optional[Mapping[str, str]] = None,
    owner_references: Optional[list[dict]] = None,
) -> dict:
    """The ``<ls>-credentials`` Secret manifest.

    ``data`` (base64), not ``stringData``: stringData is write-only, so a server-side apply of it
    never compares equal to what is stored. Keys: streamKey, srtPassphrase, whipToken,
    playbackSecret, uploadToken, readToken, agentToken, plus the publish URLs with credentials (rtmpPublishUrl, ...).
    Labels and the ownerReference default to those of every other child (the latter when
    ``ls_meta`` has a uid), so this alone restores a deleted Secret exactly as ``render_children`` would.
    """
    values = {**creds.data(), **publish_urls(creds, urls)}
    metadata: dict = {"name": secret_name(ls_meta["name"]), "namespace": ls_meta.get("namespace")}
    metadata["labels"] = dict(labels) if labels is not None else labels_of(ls_meta["name"], "credentials")
    if owner_references is None and ls_meta.get("uid"):
        owner_references = [owner_reference(ls_meta)]
    if owner_references:
        metadata["ownerReferences"] = owner_references
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {k: v for k, v in metadata.items() if v is not None},
        "type": "Opaque",
        "data": {key: _b64(values[key]) for key in sorted(values)},
    }
