"""The HTTP side of a WebRTC session, the same for WHIP (RFC 9725) and WHEP: the client POSTs an
SDP offer, gets ``201`` with the SDP answer, a ``Location`` to ``DELETE`` and the ICE servers to
use in ``Link`` headers (also on an ``OPTIONS`` first: these servers take no trickle ICE, so a
client that cannot change its ICE servers once its offer is made learns them before).

What each side accepts in an offer (codecs, tracks) is its own: ``offer_problem`` in ``whip.py``
and ``whep.py``, on top of ``offer_codecs`` here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, Optional

from aiohttp import web
from multidict import CIMultiDict

if TYPE_CHECKING:  # aiortc loads only when a session really starts
    from aiortc import RTCRtpCapabilities

NOT_AN_OFFER = "the body is not an SDP offer"
TRICKLE_ICE_UNSUPPORTED = "trickle ICE is not supported: send all candidates in the offer"
# On the origin's DELETE of a WHEP session the access rules now refuse (agent API only; never a viewer's):
# why, for the transcoder's log.
END_REASON_HEADER = "Onair-End-Reason"
# On the origin's POST of a WHEP offer: the playback token of a member, kept with the session and listed
# back (GET /whep), so that every origin replica, a restarted one too, checks it as HLS would.
PLAYBACK_TOKEN_HEADER = "Onair-Playback-Token"


class OfferRefused(Exception):
    """The request carries no SDP offer this server can read: (HTTP status, message for the client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_offer(request: web.Request) -> str:
    """The SDP offer a POST carries; :class:`OfferRefused` when the body is not one."""
    if request.content_type != "application/sdp":
        raise OfferRefused(415, f"expected Content-Type application/sdp, got {request.content_type or 'none'}")
    try:
        return (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise OfferRefused(400, "the SDP offer is not UTF-8 text") from None


def is_offer(sdp: str) -> bool:
    """Enough of an SDP offer to look for codecs in: a version line and at least one media section."""
    return "v=0" in sdp and "m=" in sdp


def offer_codecs(sdp: str) -> dict[str, set[str]]:
    """Codec names offered per media kind, e.g. {"video": {"h264", "vp8"}, "audio": {"opus"}}."""
    found: dict[str, set[str]] = {}
    kind: Optional[str] = None
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0].lower()
            found.setdefault(kind, set())
        elif kind and line.startswith("a=rtpmap:"):
            try:
                codec = line.split(" ", 1)[1].split("/", 1)[0].lower()
            except IndexError:
                continue
            found[kind].add(codec)
    return found


def describe_codecs(codecs: Mapping[str, Collection[str]]) -> str:
    """What an offer offers, for the client's error message: "audio: opus; video: h264, vp8"."""
    offered = "; ".join(f"{kind}: {', '.join(sorted(names)) or 'no codecs'}" for kind, names in sorted(codecs.items()))
    return offered or "no media"


def prefer_codecs(transceiver: Any, capabilities: Optional[RTCRtpCapabilities], wanted: Collection[str]) -> None:
    """Only the ``wanted`` MIME types (lower case) go into the answer for this transceiver: set
    before the offer is applied, the preferences carry into the answer."""
    assert capabilities is not None  # None only for a kind other than audio and video
    transceiver.setCodecPreferences([c for c in capabilities.codecs if c.mimeType.lower() in wanted])


def with_links(headers: Mapping[str, str], links: Iterable[str]) -> CIMultiDict:
    """``headers`` and one ``Link`` per ICE server (values of ``iceservers.link_header``)."""
    out = CIMultiDict(headers)
    for link in links:
        out.add("Link", link)
    return out
