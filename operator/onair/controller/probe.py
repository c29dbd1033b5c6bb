"""Talking to a Livestream's agents: GET /status, PUT /desired, POST /dvr/clear.

Where an agent lives is a *resolver*'s business: ``(namespace, livestream, role_key) -> base URL``.
In a cluster that is the role's Service DNS name; tests and ``onair dev`` (no kubelet, agents run
as local processes) map it to 127.0.0.1 ports. A resolver may answer None: "no address", which
counts exactly like an unreachable agent.

Nothing here raises: an agent that is down, slow, or answers garbage is reported as unreachable
with a one-line reason, and the Livestream simply is not live.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import aiohttp
from pydantic import BaseModel, ValidationError

from onair.api.agent import Desired, IngestStatus, OriginStatus, RecorderStatus, TranscoderStatus
from onair.roles import AGENT_PORT

Resolver = Callable[[str, str, str], Optional[str]]

STATUS_MODELS: dict[str, type[BaseModel]] = {
    "ingest": IngestStatus,
    "transcoder": TranscoderStatus,
    "origin": OriginStatus,
    "recorder": RecorderStatus,
}


def role_of(role_key: str) -> str:
    """``ingest-backup`` -> ``ingest``: the key names a Deployment, the role names its agent type."""
    return role_key.split("-", 1)[0]


def service_dns_resolver(namespace: str, livestream: str, role_key: str) -> str:
    """In-cluster default: every role's agent port behind the Service ``<ls>-<role_key>``."""
    return f"http://{livestream}-{role_key}.{namespace}.svc:{AGENT_PORT}"


@dataclass(frozen=True)
class AgentReport:
    role_key: str
    url: Optional[str]
    reachable: bool
    status: Optional[BaseModel] = None
    error: Optional[str] = None
    desired_accepted: bool = False


class Prober:
    """One aiohttp session for every Livestream; short timeouts so one dead pod never delays others."""

    def __init__(self, resolver: Resolver, timeout: float = 2.0) -> None:
        self.resolver = resolver
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 1.0))
        self._session: Optional[aiohttp.ClientSession] = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env off: a proxy from the environment must never see in-cluster agent traffic.
            self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, namespace: str, livestream: str, role_key: str) -> Optional[str]:
        try:
            url = self.resolver(namespace, livestream, role_key)
        except Exception:  # noqa: BLE001 - a broken resolver means "no address", never a crash
            return None
        return url.rstrip("/") if url else None

    async def poll_one(self, namespace: str, livestream: str, role_key: str,
                       desired: Optional[Desired]) -> AgentReport:
        base = self.url(namespace, livestream, role_key)
        if not base:
            return AgentReport(role_key, None, False, error="no address")
        session = await self._http()
        accepted = False
        try:
            if desired is not None:
                async with session.put(f"{base}/desired", json=desired.model_dump(by_alias=True, mode="json")) as resp:
                    accepted = resp.status == 200
                    await resp.read()
            async with session.get(f"{base}/status") as resp:
                if resp.status != 200:
                    return AgentReport(role_key, base, False, error=f"GET /status answered HTTP {resp.status}",
                                       desired_accepted=accepted)
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, json.JSONDecodeError, ValueError) as exc:
            return AgentReport(role_key, base, False, error=_short(exc), desired_accepted=accepted)
        model = STATUS_MODELS.get(role_of(role_key))
        if model is None:
            return AgentReport(role_key, base, True, error=f"unknown role {role_key}", desired_accepted=accepted)
        try:
            status = model.model_validate(payload)
        except ValidationError as exc:
            return AgentReport(role_key, base, False, error=f"invalid /status payload: {exc.error_count()} error(s)",
                               desired_accepted=accepted)
        return AgentReport(role_key, base, True, status=status, desired_accepted=accepted)

    async def poll(self, namespace: str, livestream: str, role_keys: Iterable[str],
                   desired: Optional[Desired]) -> dict[str, AgentReport]:
        keys = list(role_keys)
        reports = await asyncio.gather(*(self.poll_one(namespace, livestream, k, desired) for k in keys))
        return dict(zip(keys, reports))

    async def clear_dvr(self, namespace: str, livestream: str, role_key: str = "origin") -> tuple[bool, str]:
        """POST /dvr/clear on the origin; (done, reason when not)."""
        base = self.url(namespace, livestream, role_key)
        if not base:
            return False, "origin agent has no address"
        session = await self._http()
        try:
            async with session.post(f"{base}/dvr/clear") as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return True, ""
                return False, f"origin answered HTTP {resp.status} to POST /dvr/clear"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return False, f"origin unreachable: {_short(exc)}"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
