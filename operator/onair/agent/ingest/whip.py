"""WHIP (WebRTC-HTTP ingestion, RFC 9725) for one ingest slot.

``POST /whip`` with ``Authorization: Bearer <token>`` and an SDP offer answers ``201`` with the
SDP answer and a ``Location`` to ``DELETE`` when done. aiortc receives and decodes; the session's
``FlvEncoder`` re-encodes, and an ffmpeg remux publishes into the slot's RTMP application as an
internal publish, so readers see WHIP exactly like any other protocol.

ICE servers (``agent/webrtc/iceservers.py``, shared with WHEP): the ``201`` answer carries one ``Link: <url>; rel="ice-server"`` per
STUN/TURN server the client should use, TURN ones with time-limited credentials minted for the
session. A client that cannot change its ICE servers once its offer is made (aiortc, and this server
takes no trickle ICE) sends an authenticated ``OPTIONS /whip`` first and gets the same headers
there (RFC 9725 section 4.6 allows it); an unauthenticated OPTIONS (a CORS preflight) gets none.

This server listens on loopback only: nginx owns the public WHIP port (TLS, HTTP parsing and
the log lines for garbage) and passes the client address in X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

from aiohttp import web
from onair import tokens
from onair.agent.app import listen
from onair.agent.supervisor import Child, Supervisor
from onair.agent.webrtc import iceservers, signalling
from onair.api import refusals

if TYPE_CHECKING:  # aiortc and the encoder load only when a WHIP session really starts
    from aiortc import RTCPeerConnection

    from .encoder import FlvEncoder

log = logging.getLogger("onair.agent.ingest.whip")

CODEC_REQUIREMENT = "WebRTC requires H.264 video and OPUS audio. Both tracks must be present"
MEDIA_TIMEOUT = 5.0  # no frame for this long on a track ends the session (frozen/vanished sender)
FIRST_MEDIA_TIMEOUT = 15.0  # ICE + DTLS through TURN can take a while before the first frame
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link",
}


# ------------------------------------------------------------------------------------ SDP check
def offer_problem(sdp: str) -> Optional[tuple[int, str, str]]:
    """(HTTP status, refusal reason, message) when the offer cannot be ingested, None when it can."""
    if not signalling.is_offer(sdp):
        return 400, refusals.BAD_REQUEST, signalling.NOT_AN_OFFER
    codecs = signalling.offer_codecs(sdp)
    if "h264" in codecs.get("video", set()) and "opus" in codecs.get("audio", set()):
        return None
    if "video" not in codecs:
        reason = refusals.NO_VIDEO
    elif "audio" not in codecs:
        reason = refusals.NO_AUDIO
    else:
        reason = refusals.UNSUPPORTED_CODEC
    return 406, reason, f"{CODEC_REQUIREMENT} (offered {signalling.describe_codecs(codecs)})"


def bearer_value(header: Optional[str]) -> Optional[str]:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def bearer_ok(header: Optional[str], token: Optional[str]) -> bool:
    value = bearer_value(header)
    if not token or not value:
        return False
    return hmac.compare_digest(value.encode(), token.encode())


# A refused personal publish token: 401 when a new token helps, 403 when the member's rights must change.
PERSONAL_STATUS = {
    refusals.WRONG_KEY: 401,
    refusals.TOKEN_EXPIRED: 401,
    refusals.TOKEN_REVOKED: 401,
    refusals.NOT_MEMBER: 403,
    refusals.NO_SEND_GRANT: 403,
}


def remux_argv(fd: int, rtmp_url: str, binary: Optional[str] = None) -> list[str]:
    """ffmpeg publishing the encoder's FLV (read from inherited descriptor ``fd``) to nginx."""
    return [
        binary or shutil.which("ffmpeg") or "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-f",
        "flv",
        "-i",
        f"pipe:{fd}",
        "-c",
        "copy",
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
        rtmp_url,
    ]


# ------------------------------------------------------------------------------------ sessions
class SlotGate(Protocol):
    """What the WHIP server asks the agent: may a session start, and where does it publish."""

    def whip_refusal(self) -> Optional[tuple[int, str, str]]: ...  # (status, reason, message)

    def whip_claim_slot(self, session_id: str, verdict=None) -> None: ...  # verdict: an accepted personal token

    def whip_release(self, session_id: str) -> None: ...

    def whip_publish_url(self) -> str: ...

    def whip_refused(self, reason: str, address: str, detail: str, user_id: Optional[str] = None) -> None: ...

    def personal_verdict(self, token: str): ...  # auth.PersonalVerdict of a personal publish token


@dataclass
class WhipSession:
    id: str
    etag: str
    pc: RTCPeerConnection
    remote: str
    bearer: str = ""  # the token the session was opened with: it may DELETE the session
    encoder: Optional[FlvEncoder] = None
    child: Optional[str] = None
    tasks: list = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    closed: bool = False


class WhipServer:
    def __init__(
        self,
        gate: SlotGate,
        token_source: Callable[[], Optional[str]],
        host: str,
        port: int,
        ice_servers: list[str],
        supervisor: Supervisor,
        secrets: Sequence[str] = (),
        client_ice_servers: Optional[list[str]] = None,
        turn_secret_source: Callable[[], Optional[str]] = lambda: None,
        turn_ttl_seconds: int = iceservers.DEFAULT_CREDENTIAL_TTL_SECONDS,
    ) -> None:
        self.gate = gate
        self.supervisor = supervisor
        self.secrets = list(secrets)
        self.token_source = token_source
        self.host = host
        self.port = port
        self.ice_servers = ice_servers
        self.client_ice_servers = ice_servers if client_ice_servers is None else client_ice_servers
        self.turn_secret_source = turn_secret_source
        self.turn_ttl_seconds = turn_ttl_seconds
        self.sessions: dict[str, WhipSession] = {}
        self.app = web.Application(client_max_size=256 * 1024, middlewares=[self._errors])
        self.app.add_routes(
            [
                web.post("/whip", self.post),
                web.options("/whip", self.options),
                web.delete("/whip/{id}", self.delete),
                web.options("/whip/{id}", self.options),
                web.patch("/whip/{id}", self.patch),
            ]
        )
        self._runner: Optional[web.AppRunner] = None

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(CORS)
            raise
        response.headers.update(CORS)
        return response

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await listen(self._runner, self.host, self.port, "ingest", what="internal WHIP port ")

    async def stop(self) -> None:
        await asyncio.gather(
            *(self.end(s, "agent stopping") for s in list(self.sessions.values())), return_exceptions=True
        )
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    # http -------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, reason: Optional[str] = None, **headers) -> web.Response:
        """A JSON error body: WHIP clients show it, and ``reason`` is the refusal code for scripts."""
        body = {"error": message} if reason is None else {"error": message, "reason": reason}
        return web.json_response(body, status=status, headers=headers)

    def _refuse(
        self, status: int, reason: str, remote: str, message: str, user_id: Optional[str] = None, **headers
    ) -> web.Response:
        self.gate.whip_refused(reason, remote, message, user_id)
        return self._error(status, message, reason, **headers)

    def _ice_servers(self, urls: list[str], user_id: str) -> list[iceservers.IceServer]:
        return iceservers.session_ice_servers(
            urls, self.turn_secret_source(), user_id, time.time(), self.turn_ttl_seconds
        )

    def _links(self, user_id: str) -> list[str]:
        return [iceservers.link_header(s) for s in self._ice_servers(self.client_ice_servers, user_id)]

    async def options(self, request: web.Request) -> web.Response:
        # Only a client holding the WHIP token gets TURN credentials; a CORS preflight has none.
        authorized = request.path == "/whip" and bearer_ok(request.headers.get("Authorization"), self.token_source())
        links = self._links(uuid.uuid4().hex) if authorized else []
        return web.Response(status=204, headers=signalling.with_links({"Accept-Post": "application/sdp"}, links))

    async def patch(self, request: web.Request) -> web.Response:
        # Trickle ICE is optional in WHIP; aiortc gathers every candidate before answering.
        return self._error(405, signalling.TRICKLE_ICE_UNSUPPORTED, Allow="DELETE")

    @staticmethod
    def client_address(request: web.Request) -> str:
        remote = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded and (remote.startswith("127.") or remote == "::1"):  # set by our nginx only
            return forwarded.split(",")[-1].strip()
        return remote or "unknown address"

    async def post(self, request: web.Request) -> web.Response:
        remote = self.client_address(request)
        token = self.token_source()
        header = request.headers.get("Authorization")
        bearer = bearer_value(header)
        personal = None
        if not bearer_ok(header, token) and bearer and tokens.looks_like_token(bearer):
            # Not the slot's WHIP token: a member's personal publish token, or nothing.
            personal = self.gate.personal_verdict(bearer)
            if not personal.accept:
                status = PERSONAL_STATUS.get(personal.reason, 403)
                challenge = {"WWW-Authenticate": 'Bearer realm="whip", error="invalid_token"'} if status == 401 else {}
                return self._refuse(status, personal.reason, remote, personal.detail, personal.user_id, **challenge)
        elif not token:
            return self._refuse(403, refusals.NO_KEY, remote, "no WHIP token is configured for this slot")
        elif not bearer_ok(header, token):
            return self._refuse(
                401,
                refusals.WRONG_KEY,
                remote,
                "missing or wrong bearer token",
                **{"WWW-Authenticate": 'Bearer realm="whip"'},
            )
        user_id = personal.user_id if personal else None
        try:
            offer = await signalling.read_offer(request)
        except signalling.OfferRefused as exc:
            return self._refuse(exc.status, refusals.BAD_REQUEST, remote, exc.message)
        problem = offer_problem(offer)
        if problem:
            status, reason, message = problem
            return self._refuse(status, reason, remote, message, user_id)
        refusal = self.gate.whip_refusal()
        if refusal:
            status, reason, message = refusal
            return self._refuse(status, reason, remote, message, user_id)
        session_id = uuid.uuid4().hex
        self.gate.whip_claim_slot(session_id, personal)
        try:
            own = self._ice_servers(self.ice_servers, session_id)
            links = self._links(session_id)
            answer, session = await self._negotiate(session_id, offer, remote, own)
        except Exception as exc:
            self.gate.whip_release(session_id)
            return self._refuse(400, refusals.BAD_REQUEST, remote, f"cannot negotiate this offer: {exc}", user_id)
        session.bearer = bearer or ""
        self.sessions[session_id] = session
        log.info(
            "WHIP session %s from %s started%s", session_id[:8], remote, f" by member {user_id}" if user_id else ""
        )
        headers = signalling.with_links({"Location": f"/whip/{session_id}", "ETag": f'"{session.etag}"'}, links)
        return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        session = self.sessions.get(request.match_info["id"])
        # The slot's WHIP token ends any session; a personal token the session it opened.
        if not bearer_ok(header, self.token_source()) and not (session and bearer_ok(header, session.bearer)):
            return self._error(401, "missing or wrong bearer token")
        if session is None:
            return self._error(404, "no such WHIP session")
        await self.end(session, "client sent DELETE")
        return web.Response(status=200)

    # media ------------------------------------------------------------------------------
    async def _negotiate(
        self, session_id: str, offer: str, remote: str, servers: list[iceservers.IceServer]
    ) -> tuple[str, WhipSession]:
        from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

        pc = RTCPeerConnection(iceservers.rtc_configuration(servers))
        session = WhipSession(id=session_id, etag=secrets.token_hex(8), pc=pc, remote=remote)
        # Receivers created up front carry our codec preferences into the answer.
        for kind, wanted in (("video", ("video/h264", "video/rtx")), ("audio", ("audio/opus",))):
            signalling.prefer_codecs(
                pc.addTransceiver(kind, direction="recvonly"), RTCRtpReceiver.getCapabilities(kind), wanted
            )

        tracks: dict[str, object] = {}

        @pc.on("track")
        def on_track(track) -> None:
            tracks[track.kind] = track

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not session.closed:
                await self.end(session, f"WebRTC connection {pc.connectionState}")

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        if "video" not in tracks or "audio" not in tracks:
            await pc.close()
            raise ValueError(CODEC_REQUIREMENT)
        session.tasks.append(asyncio.get_running_loop().create_task(self._pump(session, tracks)))
        return pc.localDescription.sdp, session

    async def _pump(self, session: WhipSession, tracks: dict) -> None:
        from .encoder import FlvEncoder

        read_fd, write_fd = os.pipe()
        name = f"whip-remux-{session.id[:8]}"

        def on_exit(code: int) -> None:
            # With the read end gone too, the encoder's next write fails and the session ends.
            with contextlib.suppress(OSError):
                os.close(read_fd)

        session.child = name
        self.supervisor.add(
            Child(
                name=name,
                argv=remux_argv(read_fd, self.gate.whip_publish_url()),
                pass_fds=(read_fd,),
                restart=False,
                secrets=self.secrets,
                on_exit=on_exit,
                log_level=logging.INFO,
            )
        )
        encoder = FlvEncoder(os.fdopen(write_fd, "wb"), session.id[:8])
        session.encoder = encoder
        encoder.start()
        reason = "ended"
        try:
            readers = [asyncio.create_task(self._read(session, track, encoder)) for track in tracks.values()]
            done, pending = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if task.cancelled():
                    reason = "cancelled"
                elif task.exception() is not None:
                    reason = f"receiver failed: {task.exception()!r}"
                else:
                    reason = task.result()
        except asyncio.CancelledError:
            reason = "cancelled"
        finally:
            if not session.closed:
                asyncio.get_running_loop().create_task(self.end(session, reason))

    async def _read(self, session: WhipSession, track, encoder) -> str:
        from aiortc.mediastreams import MediaStreamError

        anchor: Optional[tuple[float, float]] = None  # (wall time, media time) of this track's first frame
        frames = 0
        while not session.closed:
            if encoder.error:
                return f"the RTMP publish failed or was refused ({encoder.error})"
            timeout = MEDIA_TIMEOUT if frames else FIRST_MEDIA_TIMEOUT
            try:
                frame = await asyncio.wait_for(track.recv(), timeout)
            except asyncio.TimeoutError:
                return f"no {track.kind} for {timeout:.0f}s"
            except MediaStreamError:
                return f"{track.kind} track ended"
            frames += 1
            now = time.monotonic()
            media_t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
            # RTP clocks keep each track smooth; the wall clock of its first frame lines the tracks
            # up. A jump (sender restart, wrap) re-anchors on arrival time.
            if media_t is None:
                t = now
            else:
                if anchor is None or abs(anchor[0] + (media_t - anchor[1]) - now) > 1.0:
                    anchor = (now, media_t)
                t = anchor[0] + (media_t - anchor[1])
            if track.kind == "video":
                encoder.put_video(frame, t)
            else:
                encoder.put_audio(frame, t)
        return "closed"

    async def end(self, session: WhipSession, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        log.info("WHIP session %s ended: %s", session.id[:8], reason)
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        try:
            await asyncio.wait_for(session.pc.close(), 5)
        except Exception as exc:
            log.debug("closing WHIP peer connection: %s", exc)
        if session.encoder is not None:
            await asyncio.get_running_loop().run_in_executor(None, session.encoder.close)
        if session.child:
            child = self.supervisor.children.get(session.child)
            if child is not None and child.proc is not None:
                # EOF on its input lets the remux unpublish cleanly; do not wait long for it.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(child.proc.wait(), 2)
            await self.supervisor.remove(session.child)
        self.gate.whip_release(session.id)

    async def end_all(self, reason: str) -> None:
        await asyncio.gather(*(self.end(s, reason) for s in list(self.sessions.values())), return_exceptions=True)
