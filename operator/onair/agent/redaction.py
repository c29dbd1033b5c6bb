"""Secrets never reach a log: stream keys, passphrases and tokens, in command lines, in the
output of child processes, and in source URLs. One mask, one place to say what is a secret.
"""

from __future__ import annotations

from typing import Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
# Query parameters of a source URL that carry credentials (RTMP/SRT/HTTP pulls).
SECRET_QUERY_KEYS = frozenset({"passphrase", "token", "key", "streamid", "auth", "secret"})


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def url_secrets(urls: Sequence[str]) -> list[str]:
    """The password and the credential query values of each URL."""
    found: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [value for key, value in parse_qsl(parts.query) if key.lower() in SECRET_QUERY_KEYS and value]
    return found


def redact_url(url: str) -> str:
    return redact(url, url_secrets([url]))
