"""WHEP (draft-ietf-wish-whep) playback: one WebRTC rendition, encoded once, forwarded to every viewer.

Where it lives: the transcoder pod, next to the encoder. The WebRTC rendition is a third output of
the encoder process (``ffmpeg_args.webrtc_output``: constrained-baseline H.264 without B-frames,
x264's zerolatency tune, a 1 s GOP, Opus audio), so it costs one more encode per stream and not a
single hop more: its packets reach this module over loopback the moment x264 and libopus emit
them. Put on the origin instead, the rendition would cross the network and another (de)muxer
first, and the origin would need a media path it does not have (it takes files). The origin stays
the public HTTP front: it checks backstage tokens exactly as for HLS (``origin/access.py``), for as
long as a session plays (``origin/whep.py``: it DELETEs those the rules now refuse), and proxies the signalling requests (POST, OPTIONS, DELETE) here over the agent API (agent token), so viewers never reach
this pod over HTTP; WebRTC media (ICE/DTLS/SRTP over UDP) flows between the viewer and this pod.

Per viewer nothing is encoded: ``ForwardedTrack.recv`` returns the encoder's ``av.Packet`` objects,
which aiortc's ``RTCRtpSender`` packetizes (``H264Encoder.pack``/``OpusEncoder.pack``) instead
of encoding. A viewer starts at the next keyframe; one that falls too far behind (a queue full)
drops what it has and starts again at the next keyframe instead of slowing everyone down.
Encoder restarts (a new run, a failover that restarts ffmpeg) keep the packets' clock going, so
viewers keep their sessions.

ICE: the pod's own peer uses ``whepIceServers`` (STUN/TURN, TURN credentials minted per session
from the operator's TURN secret as for WHIP, ``agent/webrtc/iceservers.py``); the ``201`` carries the
servers for the viewer in ``Link: rel="ice-server"`` headers, and so does an ``OPTIONS`` before the offer
(the only way a browser can use them: this server takes no trickle ICE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Optional

from aiohttp import web

from onair.agent.webrtc import iceservers, signalling

if TYPE_CHECKING:
    import av
    from aiortc import RTCPeerConnection

log = logging.getLogger("onair.transcoder.whep")

# A viewer's queue: about two seconds of packets. Past that it is too far behind to catch up in
# real time: it drops them and waits for the next keyframe.
VIDEO_QUEUE_PACKETS = 60
AUDIO_QUEUE_PACKETS = 100
# No packet from the encoder for this long: the stream is not live for WHEP (new viewers get 503).
STALE_SECONDS = 3.0
RETRY_AFTER_SECONDS = 2
# The demuxer of the rendition: its streams and codecs are known from the first packets (the
# encoder writes PAT/PMT and a keyframe with SPS/PPS first); analysing longer only delays them.
DEMUX_OPTIONS = {"probesize": "32768", "analyzeduration": "200000", "fflags": "nobuffer"}
MPEGTS_TIME_BASE = Fraction(1, 90000)  # also the RTP clock of H.264
WEBRTC_REQUIREMENT = "WHEP here sends H.264 video and Opus audio: the offer must receive H.264 video"


# ------------------------------------------------------------------------------------ pure parts
def offer_problem(sdp: str) -> Optional[tuple[int, str]]:
    """(HTTP status, message) when a viewer's offer cannot be answered, None when it can."""
    if not signalling.is_offer(sdp):
        return 400, signalling.NOT_AN_OFFER
    codecs = signalling.offer_codecs(sdp)
    if "h264" in codecs.get("video", set()):
        return None
    return 406, f"{WEBRTC_REQUIREMENT} (offered {signalling.describe_codecs(codecs)})"


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit, in order."""
    types = []
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def h264_starts_stream(data: bytes) -> bool:
    """An access unit a decoder can start at: an IDR slice with its SPS and PPS in front."""
    types = h264_nal_types(data)
    return 5 in types and 7 in types and 8 in types


class Clock:
    """Keeps the forwarded timestamps going across encoder runs: each run's first packet lands a
    frame after the last one of the previous run, whatever ffmpeg's new timeline starts at.
    Used by the demuxing thread only."""

    GAP = 3000  # 90 kHz ticks between the last packet of a run and the first of the next (1/30 s)

    def __init__(self) -> None:
        self.offset: Optional[int] = None
        self.last = 0

    def new_run(self) -> None:
        self.offset = None

    def map(self, pts: int) -> int:
        if self.offset is None:
            self.offset = (self.last + self.GAP if self.last else 0) - pts
        out = pts + self.offset
        self.last = max(self.last, out)
        return out


# ------------------------------------------------------------------------------------ fan-out
class ForwardedTrack:
    """One viewer's track: the shared encoder's packets, queued; aiortc packetizes what recv returns."""

    def __init__(self, kind: str, on_sent: Callable[[str], None] = lambda kind: None) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        self.kind = kind
        self.queue: asyncio.Queue = asyncio.Queue(VIDEO_QUEUE_PACKETS if kind == "video" else AUDIO_QUEUE_PACKETS)
        self.waiting_for_keyframe = kind == "video"
        self.sent = 0
        self.dropped = 0
        outer = self

        class Track(MediaStreamTrack):
            kind = self.kind

            async def recv(self):  # noqa: D401 - aiortc's interface
                from aiortc.mediastreams import MediaStreamError

                packet = await outer.queue.get()
                if packet is None:
                    self.stop()
                    raise MediaStreamError
                outer.sent += 1
                on_sent(outer.kind)
                return packet

        self.track = Track()

    def offer(self, packet, keyframe: bool) -> None:
        if self.waiting_for_keyframe:
            if not keyframe:
                return
            self.waiting_for_keyframe = False
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:
            # Too far behind: what is queued is stale. Video restarts at a keyframe, audio just skips.
            self.dropped += self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            if self.kind == "video":
                self.waiting_for_keyframe = not keyframe
            if not self.waiting_for_keyframe:
                self.queue.put_nowait(packet)

    def end(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Rendition:
    """The encoder's WebRTC output: a loopback TCP listener ffmpeg writes MPEG-TS to (one connection
    per encoder process), demuxed in a thread; every packet goes to every viewer's tracks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tracks: set[ForwardedTrack] = set()
        self.clock = Clock()
        self.last_packet_at = 0.0
        self.has_audio = False
        self.packets = 0
        self.runs = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(2)
        self.url = f"tcp://127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept_forever, name="whep-rendition", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for track in list(self.tracks):
            track.end()

    def live(self) -> bool:
        return self.last_packet_at > 0 and time.monotonic() - self.last_packet_at < STALE_SECONDS

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            # One encoder process at a time: a new one (restart) replaces what the old one left.
            with conn:
                self._demux(conn)

    def _demux(self, conn: socket.socket) -> None:
        import av

        self.runs += 1
        self.clock.new_run()
        try:
            container = av.open(conn.makefile("rb", buffering=0), mode="r", format="mpegts", options=DEMUX_OPTIONS)
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("WebRTC rendition: cannot read the encoder's output: %s", exc)
            return
        # Never container.close() here: packets still queued for viewers refer to its streams, and
        # touching one after the close crashes the process. The packets keep it alive; GC frees it.
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        kinds = {s.index: s.type for s in streams}
        self.has_audio = "audio" in kinds.values()
        try:
            for packet in container.demux(streams):
                if packet.size == 0 or packet.pts is None:
                    continue
                kind = kinds[packet.stream_index]
                keyframe = kind == "video" and (packet.is_keyframe or h264_starts_stream(bytes(packet)))
                pts = packet.pts if packet.time_base == MPEGTS_TIME_BASE else int(packet.pts * packet.time_base * 90000)
                packet.pts = packet.dts = self.clock.map(pts)
                packet.time_base = MPEGTS_TIME_BASE
                self.loop.call_soon_threadsafe(self._publish, kind, packet, keyframe)
        except (av.error.FFmpegError, OSError) as exc:
            log.info("WebRTC rendition: encoder output ended: %s", exc)

    def _publish(self, kind: str, packet: av.Packet, keyframe: bool) -> None:
        self.packets += 1
        self.last_packet_at = time.monotonic()
        for track in list(self.tracks):
            if track.kind == kind:
                track.offer(packet, keyframe)


# ------------------------------------------------------------------------------------ sessions
@dataclass
class Viewer:
    id: str
    pc: RTCPeerConnection
    tracks: list[ForwardedTrack]
    token: Optional[str] = None  # the member's playback token the origin let it in with
    started: float = field(default_factory=time.monotonic)
    closed: bool = False


class WhepServer:
    """``POST /whep`` and ``DELETE /whep/{id}`` on the transcoder's agent API (agent token: the origin
    calls them for viewers it let in)."""

    def __init__(
        self,
        live: Callable[[], Optional[str]],
        ice_servers: list[str],
        client_ice_servers: list[str],
        turn_secret_source: Callable[[], Optional[str]] = lambda: None,
        turn_ttl_seconds: int = iceservers.DEFAULT_CREDENTIAL_TTL_SECONDS,
        max_viewers: int = 500,
        on_forwarded: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self.on_forwarded = on_forwarded  # an encoded packet handed to a viewer's RTP sender as it is
        self.live_refusal = live  # why the stream is not live now, None when it is
        self.ice_servers = ice_servers
        self.client_ice_servers = client_ice_servers
        self.turn_secret_source = turn_secret_source
        self.turn_ttl_seconds = turn_ttl_seconds
        self.max_viewers = max_viewers
        self.viewers: dict[str, Viewer] = {}
        self.rendition: Optional[Rendition] = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/whep", self.post),
            web.options("/whep", self.options),
            web.get("/whep", self.list),
            web.delete("/whep/{id}", self.delete),
            web.patch("/whep/{id}", self.patch),
        ]

    def start(self) -> Rendition:
        self.rendition = Rendition(asyncio.get_running_loop())
        self.rendition.start()
        return self.rendition

    async def stop(self) -> None:
        await self.end_all("agent stopping")
        if self.rendition is not None:
            self.rendition.close()

    @staticmethod
    def _error(status: int, message: str, **headers: str) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=headers)

    def _ice(self, urls: list[str], user: str) -> list[iceservers.IceServer]:
        return iceservers.session_ice_servers(urls, self.turn_secret_source(), user, time.time(), self.turn_ttl_seconds)

    def _links(self, user: str) -> list[str]:
        return [iceservers.link_header(s) for s in self._ice(self.client_ice_servers, user)]

    async def post(self, request: web.Request) -> web.Response:
        try:
            offer = await signalling.read_offer(request)
        except signalling.OfferRefused as exc:
            return self._error(exc.status, exc.message)
        problem = offer_problem(offer)
        if problem:
            return self._error(*problem)
        why = self.live_refusal()
        if why is None and (self.rendition is None or not self.rendition.live()):
            why = "the livestream is not live: its WebRTC rendition has no media yet"
        if why is not None:
            return self._error(503, why, **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        if len(self.viewers) >= self.max_viewers:
            return self._error(
                503,
                f"this stream has its maximum of {self.max_viewers} WebRTC viewers: play HLS or DASH, or retry later",
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        viewer_id = uuid.uuid4().hex
        try:
            answer, viewer = await self._negotiate(viewer_id, offer)
        except Exception as exc:  # aiortc's refusals are ValueErrors/AttributeErrors with readable text
            log.info("WHEP offer refused: %r", exc)
            return self._error(400, f"cannot negotiate this offer: {exc}")
        viewer.token = request.headers.get(signalling.PLAYBACK_TOKEN_HEADER) or None
        self.viewers[viewer_id] = viewer
        log.info("WHEP viewer %s started (%d watching)", viewer_id[:8], len(self.viewers))
        headers = signalling.with_links(
            {"Location": f"/whep/{viewer_id}", "ETag": f'"{secrets.token_hex(8)}"'}, self._links(viewer_id)
        )
        return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)

    async def options(self, request: web.Request) -> web.Response:
        """The viewer's ICE servers before its offer (as WHIP's authenticated OPTIONS): a browser cannot use
        servers it learns from the 201, since this server takes no trickle ICE. TURN credentials are minted
        for this request; the origin asks only for viewers it lets in."""
        return web.Response(
            status=204, headers=signalling.with_links({"Accept-Post": "application/sdp"}, self._links(uuid.uuid4().hex))
        )

    async def list(self, request: web.Request) -> web.Response:
        """The sessions playing now with the token each was let in with: what every origin replica compares
        its table with (forgetting those ended here, taking on those let in by another or before a restart)."""
        sessions = [{"id": v.id, "token": v.token} for v in sorted(self.viewers.values(), key=lambda v: v.id)]
        return web.json_response({"sessions": sessions}, headers={"Cache-Control": "no-store"})

    async def delete(self, request: web.Request) -> web.Response:
        viewer = self.viewers.get(request.match_info["id"])
        if viewer is None:
            return self._error(404, "no such WHEP session (it ended, or never existed)")
        # The origin ends sessions the access rules now refuse, and says why.
        await self.end(viewer, request.headers.get(signalling.END_REASON_HEADER, "the viewer sent DELETE")[:300])
        return web.Response(status=200)

    async def patch(self, request: web.Request) -> web.Response:
        # Trickle ICE is optional in WHEP; aiortc answers with all its candidates.
        return self._error(405, signalling.TRICKLE_ICE_UNSUPPORTED, Allow="DELETE")

    async def _negotiate(self, viewer_id: str, offer: str) -> tuple[str, Viewer]:
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        assert self.rendition is not None
        pc = RTCPeerConnection(iceservers.rtc_configuration(self._ice(self.ice_servers, viewer_id)))
        tracks: list[ForwardedTrack] = []
        offered = signalling.offer_codecs(offer)
        try:
            # Senders made before the offer is applied carry our codec preferences into the answer:
            # only what the encoder makes (aiortc would otherwise answer VP8 and encode per viewer).
            for kind, wanted in (("video", ("video/h264",)), ("audio", ("audio/opus",))):
                if kind not in offered or (kind == "audio" and not self.rendition.has_audio):
                    continue
                forwarded = ForwardedTrack(kind, self.on_forwarded)
                transceiver = pc.addTransceiver(forwarded.track, direction="sendonly")
                signalling.prefer_codecs(transceiver, RTCRtpSender.getCapabilities(kind), wanted)
                tracks.append(forwarded)
            if not tracks or tracks[0].kind != "video":
                raise ValueError(WEBRTC_REQUIREMENT)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception:
            await pc.close()
            raise
        viewer = Viewer(id=viewer_id, pc=pc, tracks=tracks)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not viewer.closed:
                await self.end(viewer, f"WebRTC connection {pc.connectionState}")

        for track in tracks:
            self.rendition.tracks.add(track)
        return pc.localDescription.sdp, viewer

    async def end_all(self, reason: str) -> None:
        await asyncio.gather(*(self.end(v, reason) for v in list(self.viewers.values())), return_exceptions=True)

    async def end(self, viewer: Viewer, reason: str) -> None:
        if viewer.closed:
            return
        viewer.closed = True
        self.viewers.pop(viewer.id, None)
        for track in viewer.tracks:
            if self.rendition is not None:
                self.rendition.tracks.discard(track)
            track.end()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(viewer.pc.close(), 5)
        log.info(
            "WHEP viewer %s ended after %.0f s: %s (%d watching)",
            viewer.id[:8],
            time.monotonic() - viewer.started,
            reason,
            len(self.viewers),
        )
