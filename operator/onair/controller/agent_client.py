"""Talking to a Livestream's agents: GET /status, PUT /desired, POST /dvr/clear.

Where an agent lives is a *resolver*'s business: ``(namespace, livestream, role_key) -> base URL``.
In a cluster that is the agent port on the pod IP the operator's watch of Running pods saw
(``Runtime.pod_resolver``); tests and ``onair dev`` (no kubelet, agents run as local processes)
map it to 127.0.0.1 ports. A resolver may answer None: "no address", which counts exactly like
an unreachable agent.

Nothing here raises: an agent that is down, slow, or answers garbage is reported as unreachable
with a one-line reason, and the Livestream simply is not live.

Every call carries the Livestream's agent token (``agentToken`` of its credentials Secret) as
``Authorization: Bearer``; an agent that refuses it is reported with ``refused`` set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from typing import Callable, Iterable, Optional
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from onair.api.agent import Desired, IngestStatus, OriginStatus, RecorderStatus, TranscoderStatus

Resolver = Callable[[str, str, str], Optional[str]]
# Every Running pod of an agent, for the origin's replicas: each gets the same Desired (every one
# must make the same segments public) and the status poll counts those that answer.
ReplicasResolver = Callable[[str, str, str], list[str]]

# What an agent answers when it refuses the caller's agent token (onair.agent.app.Agent.refusal):
# 401 none sent, 403 wrong one, 503 the agent has none to compare with.
REFUSED_STATUSES = frozenset({401, 403, 503})

STATUS_MODELS: dict[str, type[BaseModel]] = {
    "ingest": IngestStatus,
    "transcoder": TranscoderStatus,
    "origin": OriginStatus,
    "recorder": RecorderStatus,
}


def role_of(role_key: str) -> str:
    """``ingest-backup`` -> ``ingest``: the key names a Deployment, the role names its agent type."""
    return role_key.split("-", 1)[0]


@dataclass(frozen=True)
class AgentReport:
    role_key: str
    url: Optional[str]
    reachable: bool
    status: Optional[BaseModel] = None
    error: Optional[str] = None
    desired_accepted: bool = False
    # The agent refused the agent token (the reason, with its HTTP status); None otherwise.
    refused: Optional[str] = None
    # Several replicas (the origin's): how many were asked and how many answered; ``status`` is the
    # first answer (every replica serves the same), ``replica_errors`` why the others did not.
    replicas: int = 1
    replicas_reachable: int = 1
    replica_errors: tuple[str, ...] = ()


# A recorder deletes a session's objects too: one bounded request per object, more than a status poll's time.
DELETE_RECORDING_TIMEOUT = aiohttp.ClientTimeout(total=180, connect=1.0)


class AgentClient:
    """One aiohttp session for every Livestream; short timeouts so one dead pod never delays others."""

    def __init__(self, resolver: Resolver, timeout: float = 2.0, replicas: Optional[ReplicasResolver] = None) -> None:
        self.resolver = resolver
        self.replicas_resolver = replicas
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

    def replica_urls(self, namespace: str, livestream: str, role_key: str) -> list[str]:
        """Base URLs of every replica of a replicated agent (the origin); [] for the others."""
        if self.replicas_resolver is None or role_of(role_key) != "origin":
            return []
        try:
            return [u.rstrip("/") for u in self.replicas_resolver(namespace, livestream, role_key)]
        except Exception:  # noqa: BLE001 - as a broken resolver: no replicas known
            return []

    async def poll_one(
        self, namespace: str, livestream: str, role_key: str, desired: Optional[Desired], token: Optional[str] = None
    ) -> AgentReport:
        replicas = self.replica_urls(namespace, livestream, role_key)
        if len(replicas) > 1:
            reports = await asyncio.gather(*(self._poll_url(role_key, u, desired, token) for u in replicas))
            answered = [r for r in reports if r.reachable]
            first = answered[0] if answered else reports[0]
            return dataclasses.replace(
                first,
                replicas=len(reports),
                replicas_reachable=len(answered),
                replica_errors=tuple(f"{r.url}: {r.error}" for r in reports if not r.reachable),
            )
        base = self.url(namespace, livestream, role_key)
        if not base:
            return AgentReport(role_key, None, False, error="no address")
        return await self._poll_url(role_key, base, desired, token)

    async def _poll_url(
        self, role_key: str, base: str, desired: Optional[Desired], token: Optional[str]
    ) -> AgentReport:
        session = await self._http()
        headers = _auth(token)
        accepted = False
        try:
            if desired is not None:
                async with session.put(
                    f"{base}/desired", json=desired.model_dump(by_alias=True, mode="json"), headers=headers
                ) as resp:
                    accepted = resp.status == 200
                    await resp.read()
            async with session.get(f"{base}/status", headers=headers) as resp:
                if resp.status != 200:
                    answer = f"HTTP {resp.status}{await _error_of(resp)}"
                    return AgentReport(
                        role_key,
                        base,
                        False,
                        error=f"GET /status answered {answer}",
                        desired_accepted=accepted,
                        refused=answer if resp.status in REFUSED_STATUSES else None,
                    )
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, json.JSONDecodeError, ValueError) as exc:
            return AgentReport(role_key, base, False, error=_short(exc), desired_accepted=accepted)
        model = STATUS_MODELS.get(role_of(role_key))
        if model is None:
            return AgentReport(role_key, base, True, error=f"unknown role {role_key}", desired_accepted=accepted)
        try:
            status = model.model_validate(payload)
        except ValidationError as exc:
            return AgentReport(
                role_key,
                base,
                False,
                error=f"invalid /status payload: {exc.error_count()} error(s)",
                desired_accepted=accepted,
            )
        return AgentReport(role_key, base, True, status=status, desired_accepted=accepted)

    async def poll(
        self,
        namespace: str,
        livestream: str,
        role_keys: Iterable[str],
        desired: Optional[Desired],
        token: Optional[str] = None,
    ) -> dict[str, AgentReport]:
        keys = list(role_keys)
        reports = await asyncio.gather(*(self.poll_one(namespace, livestream, k, desired, token) for k in keys))
        return dict(zip(keys, reports))

    async def clear_dvr(
        self, namespace: str, livestream: str, role_key: str = "origin", token: Optional[str] = None
    ) -> tuple[bool, str]:
        """POST /dvr/clear on the origin (every replica); (done, reason when not)."""
        replicas = self.replica_urls(namespace, livestream, role_key)
        if len(replicas) > 1:
            results = await asyncio.gather(*(self._clear_dvr(u, token) for u in replicas))
            failed = [f"{u}: {why}" for u, (done, why) in zip(replicas, results) if not done]
            return (not failed), "; ".join(failed)
        base = self.url(namespace, livestream, role_key)
        if not base:
            return False, "origin agent has no address"
        return await self._clear_dvr(base, token)

    async def _clear_dvr(self, base: str, token: Optional[str]) -> tuple[bool, str]:
        session = await self._http()
        try:
            async with session.post(f"{base}/dvr/clear", headers=_auth(token)) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return True, ""
                return False, f"origin answered HTTP {resp.status}{await _error_of(resp)} to POST /dvr/clear"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return False, f"origin unreachable: {_short(exc)}"

    async def delete_recording(
        self, namespace: str, livestream: str, session: str, token: Optional[str] = None
    ) -> tuple[Optional[bool], str]:
        """DELETE /recordings/<session> on the recorder: (True, files deleted), (False, why it refused or
        failed), or (None, why it cannot be asked: no address, no answer)."""
        base = self.url(namespace, livestream, "recorder")
        if not base:
            return None, "the recorder agent has no address (its pod does not run)"
        session_http = await self._http()
        try:
            async with session_http.delete(
                f"{base}/recordings/{quote(session, safe='')}", headers=_auth(token), timeout=DELETE_RECORDING_TIMEOUT
            ) as resp:
                if resp.status == 200:
                    payload = json.loads(await resp.read())
                    return True, ", ".join(
                        [*(payload.get("objects") or ()), *(payload.get("deleted") or ())]
                    ) or "no file was left"
                return False, f"the recorder answered HTTP {resp.status}{await _error_of(resp)}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return None, f"the recorder agent does not answer: {_short(exc)}"


def _auth(token: Optional[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _error_of(resp: aiohttp.ClientResponse) -> str:
    """``: <the agent's "error">`` from a JSON error answer, or nothing."""
    try:
        payload = json.loads(await resp.read())
    except (ValueError, aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    # Long enough for the store's own words and what to fix (an object deletion's error carries both).
    return f": {str(error).splitlines()[0][:600]}" if error else ""


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
