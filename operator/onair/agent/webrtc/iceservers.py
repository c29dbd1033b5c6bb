"""ICE servers of one WHIP or WHEP session: time-limited TURN credentials and the answer's Link headers.

WebRTC media from outside the cluster cannot reach a pod's host candidates (pod IPs, random UDP
ports), so encoders relay through a TURN server reachable at one stable address. Its credentials
follow the "TURN REST API" scheme coturn implements with ``use-auth-secret``
(draft-uberti-behave-turn-rest): the username is ``<expiry unix time>:<id>``, the password
``base64(HMAC-SHA1(shared secret, username))``. The TURN server recomputes the password from the
shared secret and refuses the username once its expiry has passed, so nothing is stored per
session and a leaked credential dies on its own.

A WHIP (or WHEP) client learns the servers from the 201 answer's ``Link`` headers (RFC 9725, section 4.6):
``Link: <turn:turn.example.com:3478?transport=udp>; rel="ice-server"; username="..."; credential="...";
credential-type="password"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # aiortc loads only when a session really starts
    from aiortc import RTCConfiguration

# Long enough for a whole show: coturn checks the expiry on every request that carries the
# username, allocation refreshes included, so an expired credential ends the relay mid-stream.
DEFAULT_CREDENTIAL_TTL_SECONDS = 86400


@dataclass(frozen=True)
class IceServer:
    url: str
    username: Optional[str] = None
    credential: Optional[str] = None

    def __repr__(self) -> str:  # a log line must not carry a credential
        return f"IceServer({self.url!r}{', with credentials' if self.credential else ''})"


def is_turn_url(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def turn_rest_credentials(secret: str, user_id: str, expires_at: int) -> tuple[str, str]:
    """(username, password) valid until ``expires_at`` (unix seconds) on a TURN server sharing ``secret``."""
    if not secret:
        raise ValueError("the TURN shared secret is empty")
    if ":" in user_id:
        raise ValueError(f"TURN user id {user_id!r} must not contain ':' (it separates the expiry)")
    username = f"{int(expires_at)}:{user_id}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def session_ice_servers(
    urls: Sequence[str],
    secret: Optional[str],
    user_id: str,
    now: float,
    ttl_seconds: int = DEFAULT_CREDENTIAL_TTL_SECONDS,
) -> list[IceServer]:
    """The ICE servers of one session: STUN URLs as they are, TURN URLs with credentials minted from
    ``secret`` (without a secret TURN URLs are passed on bare: the TURN server then needs none)."""
    servers = []
    for url in urls:
        if secret and is_turn_url(url):
            username, password = turn_rest_credentials(secret, user_id, int(now) + ttl_seconds)
            servers.append(IceServer(url, username, password))
        else:
            servers.append(IceServer(url))
    return servers


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """aiortc's configuration of a peer connection that uses ``servers``."""
    from aiortc import RTCConfiguration, RTCIceServer

    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s.url, username=s.username, credential=s.credential) for s in servers]
    )


def install_ice_addresses(addresses: Optional[list[str]]) -> None:
    """aioice gathers host candidates on every interface except loopback and has no option for
    it; loopback tests and pods that must advertise one address set the list here."""
    if not addresses:
        return
    import aioice.ice

    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def _quoted(value: str) -> str:
    """An RFC 8288 quoted-string (RFC 9110 section 5.6.4)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_header(server: IceServer) -> str:
    """One ``Link`` header value announcing ``server`` to a WHIP or WHEP client (RFC 9725 section 4.6)."""
    if any(c in server.url for c in "<> \r\n"):
        raise ValueError(f"ICE server URL {server.url!r} cannot go into a Link header")
    parts = [f"<{server.url}>", 'rel="ice-server"']
    if server.username is not None:
        parts.append(f"username={_quoted(server.username)}")
    if server.credential is not None:
        parts += [f"credential={_quoted(server.credential)}", 'credential-type="password"']
    return "; ".join(parts)


def parse_ice_server_links(values: Sequence[str]) -> list[IceServer]:
    """The ICE servers a WHIP answer announces, from its ``Link`` header values (each may hold
    several comma-separated links); links of another ``rel`` are skipped."""
    servers = []
    for value in values:
        for link in _split_outside_quotes(value, ","):
            link = link.strip()
            if not link.startswith("<") or ">" not in link:
                continue
            url, rest = link[1:].split(">", 1)
            params = {}
            for param in _split_outside_quotes(rest, ";"):
                name, sep, raw = param.strip().partition("=")
                if not sep:
                    continue
                raw = raw.strip()
                if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
                    raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                params[name.strip().lower()] = raw
            if "ice-server" in params.get("rel", "").split():
                servers.append(IceServer(url.strip(), params.get("username"), params.get("credential")))
    return servers


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return parts
