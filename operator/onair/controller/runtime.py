"""State one running operator keeps in memory: per-Livestream locks, wake-ups and caches.

Nothing here is needed for correctness after a restart (everything is re-derived from the
cluster and the agents); it only avoids redundant work and serialises the writers of one
Livestream (its create/update/resume handlers and its status daemon).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional

from onair.api.agent import Desired
from onair.api.calltype import CallType
from onair.render.children import RenderedChildren
from onair.render.credentials import Credentials
from onair.render.lifecycle import Lifecycle
from onair.render.resolve import Problem
from onair.render.rollout import NO_HOLD, IngestRollout

from .coalesce import Coalescer
from onair.api.operator_config import OperatorConfig
from onair.kube import Kube
from .metrics import OperatorMetrics
from .agent_client import AgentClient, AgentReport
from .refusals import DEFAULT_INTERVAL_SECONDS, RefusalAnnouncer
from .webhooks import WebhookDeliverer

log = logging.getLogger("onair.controller")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


OWN_VERSIONS_KEPT = 4


@dataclass(frozen=True)
class AgentPod:
    """A Running pod of one agent, as the pods watch last saw it."""

    ready: bool
    created: str  # creationTimestamp (RFC 3339: orders as text)
    ip: str
    host_ip: Optional[str]


def current_agent_pod(pods: Iterable[AgentPod]) -> Optional[AgentPod]:
    """The pod the operator talks to when an agent has several Running pods (a rolling ingest slot
    starts the new one next to the old one): the Ready one, the newer if both are. So it reads the
    pod that has the publisher, and moves to the new one once that one takes over."""
    return max(pods, key=lambda p: (p.ready, p.created), default=None)


@dataclass(eq=False)
class ChildLedger:
    """What the operator wrote to each child of one Livestream, keyed by (kind, name): the version
    markers of its writes (``onair.controller.apply.version_marker``), to tell its own watch
    events from someone else's change, and the manifest digests it applied, to skip applying a
    child whose manifest did not change. A child changed by someone else, or gone, loses its digest,
    so the next reconcile applies it."""

    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    # The last few versions written per child: a watch that lags behind two writes in quick
    # succession still delivers the first one after the second was recorded.
    written: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # Events judged later (see ``judge``): key -> (marker, what).
    unconfirmed: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def record(self, versions: Mapping[tuple[str, str], str], digests: Mapping[tuple[str, str], str]) -> None:
        """What an apply wrote (or found unchanged)."""
        self.versions.update(versions)
        self.digests.update(digests)
        for key, marker in versions.items():
            seen = self.written.setdefault(key, [])
            if marker not in seen:
                seen[:] = (seen + [marker])[-OWN_VERSIONS_KEPT:]

    def forget(self, key: tuple[str, str]) -> None:
        """Child ``key`` is gone (deleted or pruned): nothing the operator wrote to it holds any more."""
        self.versions.pop(key, None)
        self.digests.pop(key, None)

    def _own(self, key: tuple[str, str], marker: str) -> bool:
        return self.versions.get(key) == marker or marker in self.written.get(key, ())

    def _drifted(self, key: tuple[str, str], marker: str) -> bool:
        if self.versions.get(key) is None or self._own(key, marker):
            return False
        self.digests.pop(key, None)
        return True

    def judge(self, key: tuple[str, str], marker: str, what: str, defer: bool) -> bool:
        """Whether the event of child ``key`` at ``marker`` is drift; with ``defer`` a possible
        drift is kept for ``confirm`` instead."""
        if defer and self.versions.get(key) is not None and not self._own(key, marker):
            self.unconfirmed[key] = (marker, what)
            return False
        return self._drifted(key, marker)

    def confirm(self) -> list[str]:
        """The deferred events that are drift after all (``what`` of each)."""
        pending, self.unconfirmed = self.unconfirmed, {}
        return [what for key, (marker, what) in pending.items() if self._drifted(key, marker)]


@dataclass(eq=False)
class LivestreamState:
    namespace: str
    name: str
    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # wake: the daemon must reconcile now; rearm: a handler just did, the daemon only recomputes
    # when to wake next (onair.controller.livestream).
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    rearm: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the children must be re-applied (empty: only the status needs refreshing).
    dirty: set[str] = field(default_factory=set)
    # Never logged, never in status: kept so a deleted Secret is restored with the same keys.
    credentials: Optional[Credentials] = field(default=None, repr=False)
    # What was last applied, without ``objects``/``keep`` (the manifests are not kept in memory).
    rendered: Optional[RenderedChildren] = None
    rendered_generation: Optional[int] = None
    rendered_calltype: Optional[str] = None  # calltype_version() of the CallType it was rendered from
    applied_at: Optional[datetime] = None  # of the last full apply (every child sent): the resync counts from it
    # What the operator wrote to each child (its own watch events vs drift; unchanged manifests).
    children: ChildLedger = field(default_factory=ChildLedger)
    lifecycle: Optional[Lifecycle] = None
    problem: Optional[Problem] = None
    failed_inputs: Optional[tuple] = None  # (generation, CallType version) an apply was rejected for
    failed_at: Optional[datetime] = None
    agents: dict[str, AgentReport] = field(default_factory=dict)
    agents_refusing: frozenset = frozenset()  # role keys whose agent refused the agent token at the last poll
    # The status as last written by this operator (the watch may not have delivered it yet).
    status: Optional[dict] = None
    dvr_warned_for: Optional[str] = None
    unknown_roles_warned: frozenset = frozenset()  # UnknownRole entries already announced by an Event
    broadcast_failing_since: Optional[datetime] = None
    broadcast_failure: Optional[str] = None  # the message, once failing has outlasted the grace period
    pod_problems: dict[str, str] = field(default_factory=dict)  # role key -> why its pod does not run
    # The Desired last sent to the agents, and until when to poll them quickly after it changed
    # (onair.controller.livestream.CONVERGE_POLL_SECONDS): the status follows a change in about a
    # second instead of one poll interval.
    desired_sent: Optional[Desired] = None
    converging_until: Optional[datetime] = None
    transient_failures: int = 0
    refusals: Optional[RefusalAnnouncer] = None  # created by the first status poll
    # Recording name -> what its spec was last written or found from (onair.controller.recordings.sync).
    recording_specs: dict[str, tuple] = field(default_factory=dict)
    # The ingest slots' staggered rollout as last applied (onair.render.rollout), and the ingest
    # pod templates' hashes it was decided for: a poll re-decides from them while a slot is held.
    ingest_rollout: IngestRollout = NO_HOLD
    ingest_templates: dict[str, str] = field(default_factory=dict)

    def mark_dirty(self, reason: str) -> None:
        self.dirty.add(reason)
        self.wake.set()

    def child_event(self, key: tuple[str, str], marker: str, what: str) -> None:
        """A watch event of child ``key`` at version ``marker``: a change someone else made unless
        it is a version the operator wrote."""
        # While a reconcile holds the lock, an apply may be in flight whose response (this very
        # version) is not recorded yet: judged by ``confirm_child_events``.
        if self.children.judge(key, marker, what, defer=self.lock.locked()):
            self.mark_dirty(f"child {what} was modified")

    def confirm_child_events(self) -> None:
        """After a reconcile (still under the lock): the deferred events that are not the
        operator's own writes are drift."""
        for what in self.children.confirm():
            self.mark_dirty(f"child {what} was modified")


class Runtime:
    """Everything the handlers of one operator instance share."""

    def __init__(
        self,
        config: OperatorConfig,
        kube: Kube,
        agent_client: AgentClient,
        clock: Callable[[], datetime] = utcnow,
        resync_seconds: float = 600.0,
        broadcast_grace_seconds: float = 20.0,
        calltype_status_window: float = 1.0,
        refusal_event_interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        metrics: Optional[OperatorMetrics] = None,
    ) -> None:
        self.config = config
        self.kube = kube
        self.agent_client = agent_client
        self.clock = clock
        self.resync_seconds = resync_seconds
        # How long "input live but no segments" may last before it is a BroadcastingFailed:
        # the transcoder needs a few seconds from first input to first segment.
        self.broadcast_grace_seconds = broadcast_grace_seconds
        # At most one Warning Event per ingest refusal reason and Livestream this often.
        self.refusal_event_interval_seconds = refusal_event_interval_seconds
        self.livestreams: dict[tuple[str, str], LivestreamState] = {}
        self.metrics = metrics or OperatorMetrics()
        self.metrics.watch_livestreams(lambda: self.livestreams.values())
        # Numbers each reconcile; the Kubernetes client serves lower numbers first (onair.kube.OldestFirstGate).
        self.reconcile_order = itertools.count(1)
        # kopf indexes, captured from handler kwargs at startup (same objects for the whole run).
        self.calltype_index: Any = None
        self.users_index: Any = None
        # One kopf index per child kind: (namespace, livestream) -> KnownChild (owned.index_child).
        self.child_indexes: list[Any] = []
        self.calltype_status_cache: dict[str, dict] = {}
        # A burst of Livestream creates/deletes becomes one status patch per CallType and window.
        self.calltype_status = Coalescer(
            self._sync_calltype_status, window=calltype_status_window, what="updating the CallType status"
        )
        self.calltype_versions: dict[str, str] = {}
        # CallType name -> (calltype_version, model or None, Problem or None): parsed once per version.
        self.parsed_calltypes: dict[str, tuple[str, Optional[CallType], Optional[Problem]]] = {}
        # (namespace, livestream, role key) -> pod IP, fed by the pods watch (default resolver).
        self.pod_ips: dict[tuple[str, str, str], str] = {}
        # ... -> pod name -> AgentPod: every Running pod of that agent (two while a slot rolls).
        self.agent_pods: dict[tuple[str, str, str], dict[str, AgentPod]] = {}
        # ... -> the node's address (status.hostIP), where a NodePort ingest answers.
        self.host_ips: dict[tuple[str, str, str], str] = {}
        # ... -> pod name -> why that pod does not run its agent (onair.render.pods.pod_problem),
        # fed by the pods watch: what the Ready condition says while an agent does not answer.
        self.pod_problems: dict[tuple[str, str, str], dict[str, str]] = {}
        # (namespace, livestream, ingest key) -> what Kubernetes assigned to that ingest Service,
        # fed by the children watch (onair.controller.owned.note_ingest_service).
        self.ingest_services: dict[tuple[str, str, str], Any] = {}
        # What updates one CallType's status; onair.controller.calltype.register sets it (the
        # CallType handlers build on this runtime, so it cannot import them).
        self.calltype_status_sync: Optional[Callable[[str], Awaitable[None]]] = None
        self.webhooks = WebhookDeliverer(kube, self.metrics, on_delivered=self._webhooks_delivered)
        # Roll a Livestream's two ingest slots one after the other (onair.render.rollout). Needs
        # Deployment status from pods a kubelet runs: off under the process runner, which runs
        # Deployments' templates as processes without pods or ReplicaSets.
        self.stagger_ingest_rollouts = True

    async def _sync_calltype_status(self, name: str) -> None:
        if self.calltype_status_sync is not None:
            await self.calltype_status_sync(name)

    def _webhooks_delivered(self, namespace: str, livestream: str) -> None:
        self.wake(namespace, livestream, "webhook deliveries", reapply=False)

    @property
    def poll_interval(self) -> float:
        return float(self.config.status_poll_interval_seconds)

    def state_for(self, body: Mapping) -> LivestreamState:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self.livestreams.get(key)
        if state is None or state.uid != meta["uid"]:
            state = LivestreamState(meta["namespace"], meta["name"], meta["uid"])
            self.livestreams[key] = state
        return state

    def forget(self, namespace: str, name: str, uid: str) -> None:
        state = self.livestreams.get((namespace, name))
        if state is not None and state.uid == uid:
            del self.livestreams[(namespace, name)]
            for key in [k for k in self.host_ips if k[:2] == (namespace, name)]:
                del self.host_ips[key]
            for key in [k for k in self.agent_pods if k[:2] == (namespace, name)]:
                del self.agent_pods[key]
            for key in [k for k in self.pod_problems if k[:2] == (namespace, name)]:
                del self.pod_problems[key]

    def wake(self, namespace: str, name: str, reason: str, reapply: bool = True) -> None:
        state = self.livestreams.get((namespace, name))
        if state is None:
            return
        if reapply:
            state.mark_dirty(reason)
        else:
            state.wake.set()

    def calltype_body(self, name: str) -> Optional[dict]:
        if self.calltype_index is None:
            return None
        for body in self.calltype_index.get(name, ()):
            return body
        return None

    def calltype_users(self, name: str) -> list[tuple[str, str]]:
        if self.users_index is None:
            return []
        return sorted(set(self.users_index.get(name, ())))

    def known_children(self, namespace: str, name: str) -> Optional[dict[tuple[str, str], Any]]:
        """(kind, name) -> KnownChild of every labelled child of Livestream ``name`` the watches
        have seen; None when there are no indexes (the caller then asks the API server)."""
        if not self.child_indexes:
            return None
        out: dict[tuple[str, str], Any] = {}
        for index in self.child_indexes:
            for child in index.get((namespace, name), ()):
                out[(child.kind, child.name)] = child
        return out

    def replica_resolver(self, namespace: str, livestream: str, role_key: str) -> list[str]:
        """Agent URLs of every Running pod of ``role_key`` (the origin's replicas), by pod name."""
        from onair.roles import AGENT_PORT

        pods = sorted(self.agent_pods.get((namespace, livestream, role_key), {}).items())
        return [f"http://{pod.ip}:{AGENT_PORT}" for _, pod in pods]

    def pod_resolver(self, namespace: str, livestream: str, role_key: str) -> Optional[str]:
        from onair.roles import AGENT_PORT

        ip = self.pod_ips.get((namespace, livestream, role_key))
        return f"http://{ip}:{AGENT_PORT}" if ip else None
