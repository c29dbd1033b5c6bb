"""The ingest agent of one slot: nginx (RTMP/RTMPS), the SRT listener and bridge, WHIP, and the
one place that decides who may publish and who may read.

Every publish, whatever its protocol, ends up as an RTMP publish into nginx and passes through
``on_publish`` here; the accepted one is renamed to the internal stream readers use. Every read
(an RTMP play: the transcoder, the recorder) passes through ``on_play``, which wants the read
token. nginx's stat XML is polled to tell a live publisher from a frozen or vanished one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from onair import endpoints, tokens
from onair.freeport import free_port
from onair.agent import http_limits
from onair.agent.app import Agent, read_secret
from onair.agent.supervisor import Child, Supervisor
from onair.agent.webrtc.iceservers import install_ice_addresses
from onair.api import refusals
from onair.api.agent import Desired, IngestConfig, IngestStatus

from . import auth, nginx, ports, srt
from .metrics import IngestMetrics
from .refusal_log import RefusalLog
from .srt_publishing import SrtPublishing
from .rtmpstat import ReceiveMonitor, StreamStat, parse_stat, track_problem, usable
from .whip import WhipServer

log = logging.getLogger("onair.agent.ingest")

POLL_INTERVAL = 0.5
STALL_SECONDS = 1.5  # no new bytes for this long: not receiving (nginx drops the publisher later)
ACCEPT_GRACE = 3.0  # an accepted publish may take this long to show up in nginx's stats
NO_VIDEO_GRACE = 5.0  # a publish still without a video track after this long is dropped
NO_VIDEO_DETAIL = (
    f"no video arrived within {NO_VIDEO_GRACE:.0f} s (audio only, or video RTMP cannot carry here, "
    "such as HEVC or AV1 over Enhanced RTMP): a livestream needs an H.264 video track"
)
WHIP_CLAIM_SECONDS = 15.0  # a WHIP session holds the slot this long before its RTMP publish arrives
RTMPS_SOURCE = "127.0.0.2"  # the TLS proxy connects from here, so RTMPS publishes are recognisable


@dataclass
class Holder:
    """The accepted publish that owns the slot."""

    protocol: str
    clientid: str
    addr: str
    accepted_at: float
    since: dt.datetime
    user_id: Optional[str] = None  # a member publishing with their personal token
    issued_at: Optional[int] = None  # that token's iat


class IngestAgent(Agent):
    def __init__(self, config: IngestConfig) -> None:
        super().__init__("ingest", config.listen_host, config.agent_port, config.agent_token_file)
        self.config = config
        self.desired = Desired(active=config.active)
        self.supervisor = Supervisor()
        self.bridge_token = secrets.token_urlsafe(24)
        self.work_dir = Path(config.work_dir)
        self.local_host = nginx.local_address(config.listen_host)
        self.stat_port = 0
        self.rtmps_addr: Optional[str] = None
        self.rtmps_enabled = False
        self.tls_usable = False
        self.whip_port = 0  # the agent's loopback WHIP server; nginx owns the public port
        self.holder: Optional[Holder] = None
        # (session id, claimed at, member publishing with a personal token, its iat)
        self.whip_claim: Optional[tuple[str, float, Optional[str], Optional[int]]] = None
        self.refusals = RefusalLog()
        self.monitor = ReceiveMonitor(stall_seconds=STALL_SECONDS)
        self.last_stat: Optional[StreamStat] = None
        self.stat_ok = False
        self.whip: Optional[WhipServer] = None
        self._http: Optional[aiohttp.ClientSession] = None
        self._poll_task: Optional[asyncio.Task] = None
        self._was_receiving = False
        self._dropping: set[str] = set()
        self._active_applied = self.active
        self.metrics = IngestMetrics(self.registry, config.livestream, config.slot)
        self.srt = SrtPublishing(
            config,
            self.supervisor,
            self.local_host,
            self.metrics,
            self._refuse,
            self.personal_verdict,
            lambda: self._bridge_url("srt"),
            self.bridge_token,
        )
        self.app.add_routes(
            [
                web.post("/internal/rtmp/publish", self._on_publish),
                web.post("/internal/rtmp/publish_done", self._on_publish_done),
                web.post("/internal/rtmp/play", self._on_play),
                web.post("/internal/srt/caller", self.srt.on_caller_request),
                web.get("/readyz", self._get_readyz),
            ]
        )
        # nginx cannot send the agent token: its callbacks are refused unless they come from
        # loopback instead. /readyz is a probe, like /healthz.
        self.open_paths |= {
            "/internal/rtmp/publish",
            "/internal/rtmp/publish_done",
            "/internal/rtmp/play",
            "/internal/srt/caller",
            "/readyz",
        }

    def personal_verdict(self, token: str) -> auth.PersonalVerdict:
        """A personal publish token judged against the members the operator sent last."""
        return auth.check_personal_token(
            token,
            secret=read_secret(self.config.publish_token_secret_file),
            livestream=self.config.livestream,
            members=self.desired.members,
            now=time.time(),
        )

    def _personal_for(self, req: auth.PublishRequest, protocol: Optional[str]) -> Optional[auth.PersonalVerdict]:
        """The verdict on an RTMP(S) stream name that is not the stream key but looks like a token."""
        if protocol not in ("rtmp", "rtmps"):
            return None
        for name in dict.fromkeys((req.name, unquote(req.name))):
            if tokens.looks_like_token(name):
                return self.personal_verdict(name)
        return None

    def _refuse(self, reason: str, protocol: Optional[str], address: Optional[str], detail: str) -> None:
        """Every refusal and drop ends here: the log, the counter and /status (for the owner's Events).
        ``detail`` must never hold a credential, nor the name a publisher tried."""
        log.warning("%s", auth.refused_message(protocol, address, detail))
        self.metrics.refusals.labels(**self.metrics.labels, reason=reason, protocol=protocol or "unknown").inc()
        self.refusals.record(reason, protocol, address, detail)

    # publish decisions --------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.desired.active

    def _current_claim(self, protocol: Optional[str]) -> Optional[auth.Claim]:
        if self.holder is not None:
            return auth.Claim(self.holder.protocol, self.holder.clientid)
        now = time.monotonic()
        if self.whip_claim and protocol != "whip":
            if now - self.whip_claim[1] < WHIP_CLAIM_SECONDS or (self.whip and self.whip.sessions):
                return auth.Claim("whip")
        if self.srt.caller_connected and protocol != "srt":
            return auth.Claim("srt")
        return None

    async def _on_publish(self, request: web.Request) -> web.Response:
        if not auth.is_loopback(request.remote or ""):
            return web.Response(status=403, text="callbacks are for the local nginx only\n")
        req = auth.PublishRequest.from_form(await request.post())
        stream_key = read_secret(self.config.stream_key_file)
        protocol, key_ok = auth.identify(req, stream_key, self.bridge_token, self.rtmps_addr)
        if self.holder is not None and time.monotonic() - self.holder.accepted_at > ACCEPT_GRACE:
            await self._refresh_stat()  # the holder may have vanished since the last poll
        addr = self.srt.caller_address() if protocol == "srt" else None
        personal = None if key_ok else self._personal_for(req, protocol)
        # A bridge publishes for the member whose token its caller presented (checked there).
        user_id, issued_at = self._bridge_member(protocol) if key_ok else (None, None)
        if personal is not None:
            issued_at = personal.issued_at
        elif user_id is not None:
            gone = auth.still_allowed(user_id, issued_at, self.desired.members)
            if gone is not None:
                personal, key_ok = gone, False
        decision = auth.decide(
            req,
            stream_key=stream_key,
            bridge_token=self.bridge_token,
            protocols=self.config.protocols,
            active=self.active,
            holder=self._current_claim(protocol),
            rtmps_addr=self.rtmps_addr,
            ended=self.desired.phase == "ended",
            addr=addr,
            personal=personal,
            user_id=user_id,
        )
        if not key_ok and personal is not None and protocol not in ("rtmp", "rtmps"):
            decision = auth.Decision(
                False,
                protocol,
                personal.reason,
                auth.refused_message(protocol, addr or req.addr, personal.detail),
                personal.detail,
                personal.user_id,
            )
        self.metrics.count(decision.protocol, decision.reason, decision.user_id)
        if not decision.accept:
            self._refuse(decision.reason, decision.protocol, addr or req.addr, decision.detail)
            if decision.protocol == "srt":
                # The caller is connected at the SRT level; hanging up is the only way to tell it.
                asyncio.get_running_loop().create_task(self.srt.restart("its publish was refused"))
            return web.Response(status=403, text=decision.reason + "\n")
        self.holder = Holder(
            decision.protocol or "rtmp",
            req.clientid,
            req.addr,
            time.monotonic(),
            dt.datetime.now(dt.timezone.utc),
            decision.user_id,
            issued_at,
        )
        if decision.protocol == "whip":
            self.whip_claim = None
        log.info("%s (client %s)", decision.message, req.clientid)
        return web.Response(status=302, headers={"Location": endpoints.INTERNAL_STREAM})

    def _bridge_member(self, protocol: Optional[str]) -> tuple[Optional[str], Optional[int]]:
        if protocol == "whip" and self.whip_claim is not None:
            return self.whip_claim[2], self.whip_claim[3]
        if protocol == "srt" and self.srt.member is not None and self.srt.member[0] == self.srt.peer:
            return self.srt.member[1], self.srt.member[2]
        return None, None

    async def _on_publish_done(self, request: web.Request) -> web.Response:
        if not auth.is_loopback(request.remote or ""):
            return web.Response(status=403)
        req = auth.PublishRequest.from_form(await request.post())
        if self.holder is not None and self.holder.clientid == req.clientid:
            log.info("%s publisher (client %s) left", self.holder.protocol, req.clientid)
            self.holder = None
        return web.Response(text="ok\n")

    async def _on_play(self, request: web.Request) -> web.Response:
        if not auth.is_loopback(request.remote or ""):
            return web.Response(status=403, text="callbacks are for the local nginx only\n")
        req = auth.PlayRequest.from_form(await request.post())
        token_file = self.config.read_token_file
        decision = auth.decide_play(
            req,
            internal_stream=endpoints.INTERNAL_STREAM,
            checked=token_file is not None,
            read_token=read_secret(token_file),
        )
        self.metrics.plays.labels(**self.metrics.labels, outcome=decision.reason).inc()
        if not decision.accept:
            log.warning("%s", decision.message)
            return web.Response(status=403, text=decision.reason + "\n")
        log.info("%s (client %s)", decision.message, req.clientid)
        return web.Response(text="ok\n")

    # WHIP gate ----------------------------------------------------------------------------
    def whip_refusal(self) -> Optional[tuple[int, str, str]]:
        if "whip" not in self.config.protocols:
            return 403, refusals.PROTOCOL_DISABLED, "whip is not enabled for this livestream"
        if not self.active:
            reason = refusals.ENDED if self.desired.phase == "ended" else refusals.INACTIVE
            return 403, reason, auth.refusal_detail(reason, "whip")
        claim = self._current_claim("whip")
        if claim is not None and claim.protocol != "whip":
            return (
                409,
                refusals.OTHER_PROTOCOL,
                f"{claim.protocol} is already live on this slot (only one protocol at a time)",
            )
        if claim is not None or self.whip_claim or (self.whip and self.whip.sessions):
            return 409, refusals.BUSY, "another whip publisher is already live on this slot"
        return None

    def whip_claim_slot(self, session_id: str, verdict: Optional[auth.PersonalVerdict] = None) -> None:
        self.whip_claim = (
            session_id,
            time.monotonic(),
            verdict.user_id if verdict else None,
            verdict.issued_at if verdict else None,
        )

    def whip_release(self, session_id: str) -> None:
        if self.whip_claim and self.whip_claim[0] == session_id:
            self.whip_claim = None

    def whip_publish_url(self) -> str:
        return self._bridge_url("whip")

    def whip_refused(self, reason: str, address: str, detail: str, user_id: Optional[str] = None) -> None:
        self.metrics.count("whip", reason, user_id)
        self._refuse(reason, "whip", address, detail)

    def _bridge_url(self, protocol: str) -> str:
        return (
            f"rtmp://{nginx.listen_address(self.local_host, self.config.rtmp_port)}/{endpoints.RTMP_APP}/"
            f"{auth.BRIDGE_PREFIX[protocol]}{self.bridge_token}"
        )

    # status -------------------------------------------------------------------------------
    def status(self) -> IngestStatus:
        stat = self.last_stat
        connected = bool(stat and stat.publishing)
        # Media the ingest is about to drop (no video, a codec the pipeline cannot use) is not
        # "receiving": the Livestream must not flash live for a publish that cannot go on air.
        receiving = connected and self.monitor.receiving and usable(stat)
        holder = self.holder if connected else None
        return IngestStatus(
            slot=self.config.slot,
            receiving=receiving,
            since=holder.since if holder and receiving else None,
            protocol=holder.protocol if holder else None,
            publisher=holder.user_id if holder else None,
            bitrate_kbps=self.monitor.bitrate_kbps if receiving else None,
            video=stat.video if stat and connected else None,
            audio=stat.audio if stat and connected else None,
            refusals=self.refusals.snapshot(),
        )

    def ready(self) -> Optional[str]:
        """None when every enabled listener is up, else what is missing."""
        if not self.stat_ok:
            return "nginx is not answering yet"
        if self.srt.enabled and not self.srt.ready:
            return "the SRT listener is not up yet"
        return None

    async def _get_readyz(self, request: web.Request) -> web.Response:
        missing = self.ready()
        if missing:
            return web.Response(status=503, text=missing + "\n")
        return web.Response(text="ready\n")

    async def apply_desired(self, desired: Desired) -> None:
        holder = self.holder
        if holder is not None and holder.user_id and desired.active:
            gone = auth.still_allowed(holder.user_id, holder.issued_at, desired.members)
            if gone is not None:
                # Revoking a member's right also ends the publish it is making now.
                self.metrics.count(holder.protocol, gone.reason, holder.user_id)
                self._refuse(gone.reason, holder.protocol, holder.addr, f"live publisher dropped: {gone.detail}")
                await self._drop_publisher(gone.reason)
        if desired.active == self._active_applied:
            return
        self._active_applied = desired.active
        if desired.active:
            log.info("livestream activated: accepting publishes again")
            return
        log.warning(
            "livestream %s: refusing every publish and dropping the live one",
            "ended" if desired.phase == "ended" else "deactivated",
        )
        if self.whip:
            await self.whip.end_all("livestream deactivated")
        if self.srt.caller_connected:
            # The SRT listener stays up while inactive, so later callers hear why they are refused.
            await self.srt.restart("the livestream was deactivated")
        if self.holder is not None:
            await self._drop_publisher("deactivated")

    # stats polling ------------------------------------------------------------------------
    async def _refresh_stat(self) -> None:
        assert self._http is not None
        try:
            async with self._http.get(f"http://127.0.0.1:{self.stat_port}/stat") as resp:
                body = await resp.text()
            stat = parse_stat(body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            if self.stat_ok:
                log.warning("cannot read nginx stats (nginx restarting?): %s", exc)
            self.stat_ok = False
            stat = None
        except Exception as exc:  # malformed XML must not stop the poller
            log.warning("cannot parse nginx stats: %s", exc)
            stat = None
        else:
            self.stat_ok = True
        now = time.monotonic()
        self.last_stat = stat
        self.monitor.update(now, stat)
        holder = self.holder
        if holder is not None and now - holder.accepted_at > ACCEPT_GRACE:
            if stat is None or not stat.publishing or stat.client_id != holder.clientid:
                log.info("%s publisher (client %s) is gone from nginx", holder.protocol, holder.clientid)
                self.holder = None

    async def _poll(self) -> None:
        while True:
            try:
                await self._refresh_stat()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stats poll failed")
            await asyncio.sleep(POLL_INTERVAL)

    async def _watch(self) -> None:
        st = self.status()
        if st.receiving != self._was_receiving:
            if st.receiving:
                v = st.video
                log.info(
                    "receiving %s: %s %sx%s@%s",
                    st.protocol,
                    v.codec if v else "no video",
                    v.width if v else "?",
                    v.height if v else "?",
                    round(v.fps, 3) if v and v.fps else "?",
                )
            elif self.last_stat and self.last_stat.publishing:
                log.warning(
                    "not receiving: no data for %.0fs although the publisher is connected (frozen?)",
                    self.monitor.stalled_for or STALL_SECONDS,
                )
            else:
                log.info("not receiving: no publisher")
            self._was_receiving = st.receiving
        self.metrics.receiving.set(1 if st.receiving else 0)
        self.metrics.show_publisher(st.protocol, st.publisher)
        self.metrics.bitrate.set(st.bitrate_kbps or 0)
        holder, stat = self.holder, self.last_stat
        if not (holder and stat and stat.publishing and stat.client_id == holder.clientid):
            return
        problem = track_problem(stat)
        if (
            problem is None
            and stat.video is None
            and stat.bytes_in > 0
            and time.monotonic() - holder.accepted_at > NO_VIDEO_GRACE
        ):
            problem = refusals.NO_VIDEO, NO_VIDEO_DETAIL
        if problem is not None:
            reason, detail = problem
            self.metrics.count(holder.protocol, reason)
            self._refuse(reason, holder.protocol, holder.addr, detail)
            await self._drop_publisher(reason)

    async def _drop_publisher(self, reason: str) -> None:
        holder = self.holder
        if holder is None or holder.clientid in self._dropping:
            return
        self._dropping.add(holder.clientid)
        self.metrics.drops.labels(**self.metrics.labels, reason=reason).inc()
        url = (
            f"http://127.0.0.1:{self.stat_port}/control/drop/client?app={endpoints.RTMP_APP}"
            f"&name={endpoints.INTERNAL_STREAM}&clientid={holder.clientid}"
        )
        try:
            assert self._http is not None
            async with self._http.get(url) as resp:
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("could not drop the publisher through nginx: %s", exc)
        if holder.protocol == "srt":
            await self.srt.restart(f"its publish was dropped ({reason})")
        elif holder.protocol == "whip" and self.whip:
            await self.whip.end_all(f"publish dropped ({reason})")
        if self.holder is holder:
            self.holder = None
        self._dropping.discard(holder.clientid)
        await self._refresh_stat()  # /status must not keep showing what was just dropped

    # children -----------------------------------------------------------------------------
    def _nginx_params(self, tls: bool) -> nginx.NginxParams:
        c = self.config
        rtmps = tls and self.rtmps_enabled
        return nginx.NginxParams(
            livestream=c.livestream,
            slot=c.slot,
            work_dir=str(self.work_dir.resolve()),
            rtmp_listen=nginx.listen_address(c.listen_host, c.rtmp_port),
            stat_listen=nginx.listen_address("127.0.0.1", self.stat_port),
            callback_base=f"http://{nginx.listen_address(self.local_host, c.agent_port)}/internal/rtmp",
            idle_timeout_ms=int(c.idle_publisher_timeout_seconds * 1000),
            rtmps_listen=nginx.listen_address(c.listen_host, c.rtmps_port) if rtmps else None,
            tls_cert_file=str(Path(c.tls_cert_file).resolve()) if tls and c.tls_cert_file else None,
            tls_key_file=str(Path(c.tls_key_file).resolve()) if tls and c.tls_key_file else None,
            rtmp_upstream=nginx.listen_address(self.local_host, c.rtmp_port) if rtmps else None,
            rtmps_bind=self.rtmps_addr if rtmps else None,
            whip_listen=nginx.listen_address(c.listen_host, c.whip_port) if self.whip_port else None,
            whip_upstream=nginx.listen_address("127.0.0.1", self.whip_port) if self.whip_port else None,
            user=nginx.worker_user(),
        )

    async def _write_nginx_conf(self) -> Path:
        conf = self.work_dir / "nginx.conf"
        tls = self.tls_usable
        conf.write_text(nginx.render_nginx_conf(self._nginx_params(tls)))
        problem = await nginx.test_conf(conf, self.work_dir)
        if problem and tls:
            log.error(
                "TLS disabled (no RTMPS, WHIP over plain HTTP): nginx rejects the certificate or key (%s)", problem
            )
            self.tls_usable = self.rtmps_enabled = False
            conf.write_text(nginx.render_nginx_conf(self._nginx_params(False)))
            problem = await nginx.test_conf(conf, self.work_dir)
        if problem:
            raise SystemExit(f"onair agent ingest: nginx rejects the rendered {conf}: {problem}")
        return conf

    def _on_nginx_line(self, line: str) -> None:
        c = self.config
        level, message = nginx.classify_log_line(
            line, {c.rtmp_port: "RTMP", c.rtmps_port: "RTMPS", c.whip_port: "WHIP", "whip": "WHIP"}, self.rtmps_addr
        )
        log.log(level, "%s", message)

    # lifecycle ----------------------------------------------------------------------------
    def _listeners(self) -> list[ports.Listener]:
        c = self.config
        items = [
            ports.Listener("agentPort", "agent API", c.listen_host, c.agent_port),
            ports.Listener("rtmpPort", "RTMP", c.listen_host, c.rtmp_port),
        ]
        if self.rtmps_enabled:
            items.append(ports.Listener("rtmpsPort", "RTMPS", c.listen_host, c.rtmps_port))
        if self.srt.enabled:
            items.append(ports.Listener("srtPort", "SRT", c.listen_host, c.srt_port, udp=True))
        if "whip" in c.protocols:
            items.append(ports.Listener("whipPort", "WHIP", c.listen_host, c.whip_port))
        return items

    def _decide_features(self) -> None:
        c = self.config
        missing = [
            f
            for f, v in (("tlsCertFile", c.tls_cert_file), ("tlsKeyFile", c.tls_key_file))
            if not v or not Path(v).is_file()
        ]
        self.tls_usable = not missing
        if "rtmps" in c.protocols:
            if missing:
                log.error("RTMPS disabled: %s not set or not readable", " and ".join(missing))
            else:
                self.rtmps_enabled = True
                if self.local_host.startswith("127.") and ports.can_bind(RTMPS_SOURCE):
                    self.rtmps_addr = RTMPS_SOURCE
        if "whip" in c.protocols:
            self.whip_port = free_port()
            if missing:
                log.warning(
                    "WHIP is served over plain HTTP: %s not set (browsers on HTTPS pages need HTTPS)",
                    " and ".join(missing),
                )
        if "srt" in c.protocols:
            self.srt.passphrase = read_secret(c.srt_passphrase_file)
            problem = srt.passphrase_problem(self.srt.passphrase)
            if problem:
                log.error("SRT disabled: %s (file %s)", problem, c.srt_passphrase_file)
            else:
                self.srt.enabled = True
        if "rtmp" in c.protocols or "rtmps" in c.protocols:
            if not read_secret(c.stream_key_file):
                log.error("no stream key in %s: every RTMP/RTMPS publish will be refused", c.stream_key_file)
        if "whip" in c.protocols and not read_secret(c.whip_token_file):
            log.error("no WHIP token in %s: every WHIP publish will be refused", c.whip_token_file)
        if c.read_token_file is None:
            log.warning("no readTokenFile configured: anyone who reaches the RTMP port can read the stream")
        elif not read_secret(c.read_token_file):
            log.error(
                "no read token in %s: every internal read (transcoder, recorder) will be refused", c.read_token_file
            )

    async def prepare(self) -> None:
        self._active_applied = self.active
        # Only the agent API takes HTTP from anyone: nginx parses the public WHIP port's requests.
        http_limits.install_malformed_http_filter("agent API: malformed HTTP request from %(client)s: %(reason)s")
        self._decide_features()
        problem = ports.first_problem(self._listeners())
        if problem:
            raise SystemExit(f"onair agent ingest: {problem}")
        nginx.prepare_work_dir(str(self.work_dir))
        self.stat_port = free_port()
        self.srt.udp_port = free_port(socket.SOCK_DGRAM)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        conf = await self._write_nginx_conf()
        self.supervisor.add(
            Child(
                name="nginx",
                argv=nginx.nginx_argv(str(conf.resolve()), str(self.work_dir.resolve())),
                on_line=self._on_nginx_line,
                backoff_initial=0.5,
                backoff_max=5.0,
                secrets=[
                    s
                    for s in (
                        read_secret(self.config.stream_key_file),
                        read_secret(self.config.read_token_file),
                        self.bridge_token,
                    )
                    if s
                ],
            )
        )
        if self.srt.enabled:
            self.srt.start()
        if "whip" in self.config.protocols:
            install_ice_addresses(self.config.whip_ice_addresses)
            self.whip = WhipServer(
                self,
                lambda: read_secret(self.config.whip_token_file),
                "127.0.0.1",
                self.whip_port,
                self.config.whip_ice_servers,
                self.supervisor,
                secrets=[self.bridge_token],
                client_ice_servers=self.config.whip_client_ice_servers,
                turn_secret_source=lambda: read_secret(self.config.whip_turn_secret_file),
                turn_ttl_seconds=self.config.whip_turn_credential_ttl_seconds,
            )
            await self.whip.start()
            log.info(
                "WHIP endpoint on %s://%s:%s/whip",
                "https" if self.tls_usable else "http",
                self.config.listen_host,
                self.config.whip_port,
            )
        self._poll_task = asyncio.get_running_loop().create_task(self._poll())
        log.info(
            "ingest %s (%s) up: rtmp %s%s%s%s; readers use %s",
            self.config.livestream,
            self.config.slot,
            self.config.rtmp_port,
            f", rtmps {self.config.rtmps_port}" if self.rtmps_enabled else "",
            f", srt {self.config.srt_port}/udp" if self.srt.enabled else "",
            f", whip {self.config.whip_port}" if self.whip else "",
            endpoints.ingest_read_url(self.local_host, self.config.rtmp_port),
        )

    async def stop(self) -> None:
        if self._poll_task:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except (asyncio.CancelledError, Exception):
                pass
        if self.whip:
            await self.whip.stop()
        await self.supervisor.stop_all()
        if self._http:
            await self._http.close()
