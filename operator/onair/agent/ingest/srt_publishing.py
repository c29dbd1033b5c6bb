"""SRT publishing on one ingest slot: the listener (``srtlisten``), the remux bridge that hands
the caller's MPEG-TS to nginx as RTMP, and the answers on who may call (the slot's passphrase, or
a member's personal publish token whose signature is the passphrase)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
from typing import Callable, Optional

from aiohttp import web

from onair import tokens
from onair.agent.app import read_secret
from onair.agent.supervisor import Child, Supervisor
from onair.api import refusals
from onair.api.agent import IngestConfig

from . import auth, nginx, srt, srtlisten
from .metrics import IngestMetrics

log = logging.getLogger("onair.agent.ingest")

# A user id worth repeating from claims nobody has proven yet (an SRT caller before its handshake).
_READABLE_USER = re.compile(r"[\w.@+-]{1,128}")


class SrtPublishing:
    def __init__(
        self,
        config: IngestConfig,
        supervisor: Supervisor,
        local_host: str,
        metrics: IngestMetrics,
        refuse: Callable[[str, Optional[str], Optional[str], str], None],
        personal_verdict: Callable[[str], auth.PersonalVerdict],
        bridge_url: Callable[[], str],
        bridge_token: str,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.local_host = local_host
        self.metrics = metrics
        self._refuse = refuse
        self._personal_verdict = personal_verdict
        self._bridge_url = bridge_url
        self.bridge_token = bridge_token
        self.udp_port = 0  # where the listener hands the caller's stream to the bridge
        self.enabled = False
        self.passphrase: Optional[str] = None
        self.caller_connected = False
        self.peer: Optional[str] = None
        # The listener presents this when it asks about a caller (the answer holds a passphrase).
        self.ask_token = secrets.token_urlsafe(24)
        # (peer, member, iat) of the last caller the listener let in with a personal token
        self.member: Optional[tuple[str, str, int]] = None
        self.ready = False
        # The SRT caller's codecs decide what the bridge converts; reset for every caller.
        self.bridge_log = srt.BridgeLog()
        self.bridge_conversions = (False, False)

    def caller_address(self) -> Optional[str]:
        peer = self.peer
        if not peer:
            return None
        # srt-live-transmit prints host:port (IPv6 hosts contain colons themselves).
        return peer.rsplit(":", 1)[0].strip("[]") if ":" in peer else peer

    async def on_caller_request(self, request: web.Request) -> web.Response:
        """The SRT listener asks, during a caller's handshake, which passphrase it must use."""
        if not auth.is_loopback(request.remote or "") or not auth.secret_equals(
            auth.bearer(request.headers.get("Authorization")), self.ask_token
        ):
            return web.Response(status=403, text="for the ingest's own SRT listener only\n")
        try:
            body = await request.json()
            streamid, peer, busy = str(body.get("streamid") or ""), str(body.get("peer") or ""), bool(body.get("busy"))
        except (ValueError, AttributeError):
            return web.json_response({"error": "expected JSON {streamid, peer, busy}"}, status=400)
        self.peer = peer
        answer = self.caller_answer(streamid, peer, busy)
        return web.json_response(answer)

    def caller_answer(self, streamid: str, peer: str, busy: bool) -> dict:
        address = self.caller_address()

        def refuse(reason: str, detail: str, code: int) -> dict:
            self.metrics.count("srt", reason)  # no member label: the claims are not proven yet
            self._refuse(reason, "srt", address, detail)
            return {"accept": False, "reason": reason, "code": srtlisten.SRT_REJC_PREDEFINED + code}

        if busy:
            return refuse(refusals.BUSY, auth.refusal_detail(refusals.BUSY, "srt"), 409)
        claims = srt.personal_claims(streamid)
        if claims is None:
            self.member = None
            if not self.passphrase:
                return refuse(refusals.NO_KEY, "no SRT passphrase is configured for this slot", 403)
            return {"accept": True, "passphrase": self.passphrase}
        secret = read_secret(self.config.publish_token_secret_file)
        if not secret:
            return refuse(
                refusals.WRONG_KEY,
                "personal publish tokens are not configured on this ingest (no "
                "publish token secret): use the SRT passphrase",
                401,
            )
        signature = tokens.signature(secret, claims)
        verdict = self._personal_verdict(f"{claims}.{signature}")
        if not verdict.accept:
            # Not proven (the caller has not shown the signature yet): name the user only if readable.
            detail = verdict.detail
            if verdict.user_id and not _READABLE_USER.fullmatch(verdict.user_id):
                detail = detail.replace(verdict.user_id, "an unreadable user id")
            return refuse(
                verdict.reason, detail, 403 if verdict.reason in (refusals.NOT_MEMBER, refusals.NO_SEND_GRANT) else 401
            )
        assert verdict.user_id is not None and verdict.issued_at is not None
        self.member = (peer, verdict.user_id, verdict.issued_at)
        return {"accept": True, "passphrase": signature}

    def start(self) -> None:
        c = self.config
        assert self.passphrase is not None
        self.ready = False
        self.bridge_conversions = (False, False)
        self.supervisor.add(
            Child(
                name="srt-bridge",
                argv=srt.bridge_argv(self.udp_port, self._bridge_url()),
                secrets=[self.bridge_token],
                on_line=self._on_bridge_line,
                on_start=lambda proc: self.bridge_log.reset(),
                # A remux has nothing to finalize, and ffmpeg blocked on an idle UDP input ignores
                # SIGTERM for seconds; nginx sees the TCP close at once either way.
                stop_signal=signal.SIGKILL,
                backoff_initial=0.3,
                backoff_max=2.0,
            )
        )
        ask_url = f"http://{nginx.listen_address(self.local_host, c.agent_port)}/internal/srt/caller"
        self.supervisor.add(
            Child(
                name="srt-listener",
                argv=srt.listener_argv(c.listen_host, c.srt_port, c.srt_latency_ms, self.udp_port, ask_url),
                env={srtlisten.ASK_TOKEN_ENV: self.ask_token},
                secrets=[self.passphrase, self.ask_token],
                on_line=self._on_listener_line,
                on_exit=self._on_listener_exit,
                backoff_initial=0.3,
                backoff_max=5.0,
            )
        )

    async def stop(self) -> None:
        await self.supervisor.remove("srt-listener")
        await self.supervisor.remove("srt-bridge")
        self.caller_connected = False
        self.ready = False

    async def restart(self, why: str) -> None:
        if not self.enabled or "srt-listener" not in self.supervisor.children:
            return
        log.warning("hanging up on the SRT caller: %s", why)
        await self.stop()
        self.start()

    async def _restart_bridge(self, conversions: tuple[bool, bool] = (False, False)) -> None:
        child = self.supervisor.children.get("srt-bridge")
        if child is not None:
            await child.stop()
            self.bridge_conversions = conversions
            child.argv = srt.bridge_argv(
                self.udp_port, self._bridge_url(), convert_video=conversions[0], convert_audio=conversions[1]
            )
            child.start()

    def _on_listener_line(self, line: str) -> None:
        event = srt.parse_srt_line(line)
        if event is None:
            log.debug("[srt-live-transmit] %s", line)
            return
        if event.kind == "listening":
            if not self.ready:
                log.info("SRT listener on %s:%s/udp", self.config.listen_host, self.config.srt_port)
            self.ready = True
        elif event.kind == "peer":
            self.peer = event.detail
        elif event.kind == "connected":
            self.caller_connected = True
            log.info("SRT caller %s connected", self.peer or "")
        elif event.kind == "disconnected":
            self.caller_connected = False
            log.info("SRT caller %s left", self.peer or "")
            # The next caller's MPEG-TS starts over; a fresh remux must read it.
            asyncio.get_running_loop().create_task(self._restart_bridge())
        elif event.kind == "rejected":
            wrong_key = "passphrase" in event.detail.lower()
            reason = refusals.WRONG_KEY if wrong_key else refusals.BAD_REQUEST
            detail = "wrong passphrase" if wrong_key else f"the SRT handshake was rejected: {event.detail}"
            member = self.member
            if wrong_key and member is not None and member[0] == self.peer:
                detail = (
                    f"wrong passphrase for the personal publish token of {member[1]} (with streamid "
                    "publish:<header>.<payload>, the passphrase is the token's signature, the part after "
                    "its last dot)"
                )
                self.member = None
            self.metrics.count("srt", reason)
            self._refuse(reason, "srt", self.caller_address(), detail)

    def _on_listener_exit(self, code: int) -> None:
        self.caller_connected = False
        self.ready = False

    def _on_bridge_line(self, line: str) -> None:
        if "Input/output error" in line or "Broken pipe" in line or "Connection refused" in line:
            log.info("[srt-bridge] %s", line)
        else:
            log.debug("[srt-bridge] %s", line)
        event = self.bridge_log.feed(line)
        if event is None:
            return
        loop = asyncio.get_running_loop()
        if event.kind == "undecodable":
            self.metrics.count("srt", refusals.UNSUPPORTED_CODEC)
            self._refuse(
                refusals.UNSUPPORTED_CODEC,
                "srt",
                self.caller_address(),
                f"codec {event.detail} cannot be decoded here: send H.264 or HEVC video with AAC audio",
            )
            loop.create_task(self.restart(f"its {event.detail} cannot be decoded"))
        elif event.video is None and event.audio is not None:
            # MPEG-TS announces every track up front: no video in it means none is coming.
            self.metrics.count("srt", refusals.NO_VIDEO)
            self._refuse(
                refusals.NO_VIDEO,
                "srt",
                self.caller_address(),
                "the SRT stream has no video track (audio only): a livestream needs video",
            )
            loop.create_task(self.restart("it sends no video"))
        else:
            wanted = srt.conversions(event.video, event.audio)
            if wanted != self.bridge_conversions and any(wanted):
                # Copying would fail at the FLV header ("codec not compatible with flv") on every
                # retry; converting once costs about what one transcoder rung does.
                what = [
                    f"{codec} {kind} to {target}"
                    for codec, kind, target, on in (
                        (event.video, "video", "H.264", wanted[0]),
                        (event.audio, "audio", "AAC", wanted[1]),
                    )
                    if on
                ]
                log.info(
                    "SRT caller sends %s: converting %s (RTMP carries H.264 and AAC)",
                    " + ".join(c for c in (event.video, event.audio) if c),
                    " and ".join(what),
                )
                loop.create_task(self._restart_bridge(wanted))
