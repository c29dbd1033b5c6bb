"""Watch what the operator owns, so drift is repaired within a second instead of at the next resync.

Children are watched by label (server-side selector, see ``kopf_settings.CHILD_SELECTOR``) and mapped
back to their Livestream by ``onair.dev/livestream``. A DELETED child, or a change the operator
did not write itself, wakes that Livestream's daemon with a re-apply request; server-side apply
then restores exactly the fields the operator owns (a hand-edited image or replicas is reverted,
an annotation someone else added is left alone).

"Did not write itself" compares the event with the version markers recorded at apply time
(``LivestreamState.child_event``): a Deployment's generation (its status churns while pods roll;
that is not drift), every other kind's resourceVersion. An event that arrives while a reconcile
runs is judged after it, once the apply in flight has recorded what it wrote (the watch often
delivers our own write before the apply response), and the last few versions written count as
ours (a lagging watch): otherwise the operator's own quick rewrites of the credentials Secret at
creation (nodePort, then node address known) were announced as DriftCorrected.

The same watches feed an index (``index_child``) of every labelled child per Livestream, which
``apply`` consults instead of asking the API server (existing PVCs, anything to prune?).

Pods of media roles are watched too (same label): their IPs are how the operator reaches agents
in a real cluster (the Services expose only the push and playback ports, never the agent API),
and their status says why an agent does not answer (unschedulable, image pull, crash loop). The
watch keeps that at hand, so a Livestream whose pods cannot start costs no pod reads per poll.
"""

from __future__ import annotations

from typing import Any, Optional

import kopf

from onair.api.meta import LABEL_LIVESTREAM, MANAGER, MANIFEST_DIGEST_ANNOTATION
from onair.render.child_names import role_of
from onair.render.pods import pod_problem
from onair.render.urls import ingest_exposure

from .apply import KnownChild, untouched_since_apply, version_marker
from .runtime import AgentPod, Runtime, current_agent_pod
from .kopf_settings import CHILD_RESOURCES


def note_pod_problem(rt: Runtime, key: tuple[str, str, str], pod: str, problem: Optional[str]) -> bool:
    """Record why ``pod`` does not run its agent (None: nothing keeps it from running); whether
    that changed what is known."""
    problems = rt.pod_problems.setdefault(key, {})
    before = problems.get(pod)
    if problem:
        problems[pod] = problem
    else:
        problems.pop(pod, None)
    if not problems:
        del rt.pod_problems[key]
    return problem != before


# kopf hands indexes to handlers as kwargs named by these ids (see runner.capture_indexes).
CHILD_INDEXES = tuple(f"children_{plural}" for _, _, plural in CHILD_RESOURCES)
# Values are label values or kopf's filter tokens (kopf.PRESENT), which kopf does not export a type for.
CHILD_LABELS: dict[str, Any] = {"app.kubernetes.io/managed-by": MANAGER, LABEL_LIVESTREAM: kopf.PRESENT}


async def index_child(
    namespace: Optional[str], name: str, body: kopf.Body, meta: kopf.Meta, labels: kopf.Labels, **_: Any
) -> dict:
    # async: kopf runs a plain def in its thread pool, which cost more than the work itself
    # (one hand-off per child event).
    controller = next((ref.get("uid") for ref in meta.get("ownerReferences") or () if ref.get("controller")), None)
    return {
        (namespace, labels.get(LABEL_LIVESTREAM)): KnownChild(
            kind=body.get("kind") or "",
            name=name,
            controller_uid=controller,
            deleting=bool(meta.get("deletionTimestamp")),
            marker=version_marker(body),
            digest=(meta.get("annotations") or {}).get(MANIFEST_DIGEST_ANNOTATION),
            untouched=untouched_since_apply(meta),
        )
    }


def note_ingest_service(rt: Runtime, event: kopf.RawEvent, body: kopf.Body) -> None:
    """Keep what Kubernetes assigned to each ingest Service (nodePorts, the load balancer's
    address): status.ingest shows the URLs encoders outside the cluster dial. The initial listing
    counts too, so a restarted operator knows them at once."""
    if rt.config.ingest_service_type == "ClusterIP":
        return  # cluster DNS and the Service port: nothing assigned matters (and no re-render)
    meta = body.metadata
    component = meta.labels.get("app.kubernetes.io/component") or ""
    if role_of(component) != "ingest" or not meta.labels.get(LABEL_LIVESTREAM):
        return
    key = (meta.namespace or "", meta.labels[LABEL_LIVESTREAM], component)
    if event.get("type") == "DELETED" or meta.deletion_timestamp:
        rt.ingest_services.pop(key, None)
        return
    exposure = ingest_exposure(body, None)
    if rt.ingest_services.get(key) != exposure:
        rt.ingest_services[key] = exposure
        # Re-render: the publish URLs in the credentials Secret change too.
        rt.wake(key[0], key[1], "ingest Service address assigned")


def register(registry: kopf.OperatorRegistry, rt: Runtime, pod_addresses: bool) -> None:
    """``pod_addresses``: agents are reached at their pods' IPs (in a cluster); otherwise a resolver
    knows where they are (``onair dev``'s process runner, tests) and pods only explain failures."""

    async def on_child(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if body.get("kind") == "Service":
            note_ingest_service(rt, event, body)
        kind = event.get("type")
        if kind is None:
            return  # initial listing: resume handlers reconcile every Livestream anyway
        meta = body.metadata
        owner = meta.labels.get(LABEL_LIVESTREAM)
        state = rt.livestreams.get((meta.namespace or "", owner)) if owner else None
        if state is None:
            return
        if not any(ref.get("uid") == state.uid for ref in meta.get("ownerReferences") or ()):
            return
        what = f"{body.get('kind')} {meta.name}"
        key = (body.get("kind") or "", meta.name)
        if kind == "DELETED":
            state.children.forget(key)
            state.mark_dirty(f"child {what} was deleted")
            return
        if body.get("kind") == "PersistentVolumeClaim":
            return  # created once, never re-applied; binding churns its status
        if meta.deletion_timestamp:
            return
        state.child_event(key, version_marker(body), what)

    for (group, version, plural), index_id in zip(CHILD_RESOURCES, CHILD_INDEXES):
        kopf.on.event(group, version, plural, id=f"child-{plural}", registry=registry, labels=CHILD_LABELS)(on_child)
        kopf.index(group, version, plural, id=index_id, registry=registry, labels=CHILD_LABELS)(index_child)

    @kopf.on.event("", "v1", "pods", id="agent-pods", registry=registry, labels=CHILD_LABELS)
    async def on_pod(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        meta = body.metadata
        # The watch's label selector guarantees the Livestream label; a pod without a component is
        # no agent of a role and keys as "".
        key = (
            meta.namespace or "",
            meta.labels.get(LABEL_LIVESTREAM) or "",
            meta.labels.get("app.kubernetes.io/component") or "",
        )
        problem = None if event.get("type") == "DELETED" else pod_problem(body)
        if note_pod_problem(rt, key, meta.name, problem):
            # The Ready condition says it now rather than at the next poll.
            rt.wake(key[0], key[1], "agent pod problem changed", reapply=False)
        if not pod_addresses:
            return
        status = body.status
        ip = status.get("podIP")
        alive = event.get("type") != "DELETED" and not meta.deletion_timestamp and status.get("phase") == "Running"
        pods = rt.agent_pods.setdefault(key, {})
        if alive and ip:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
            pods[meta.name] = AgentPod(
                ready=ready, created=meta.creation_timestamp or "", ip=ip, host_ip=status.get("hostIP")
            )
        else:
            pods.pop(meta.name, None)
        agent = current_agent_pod(pods.values())
        if agent is None:
            del rt.agent_pods[key]
            # With Recreate, the replacement may be listed first: only the address of a pod that
            # is gone is forgotten.
            rt.pod_ips.pop(key, None)
            # The node is kept: while the replacement starts, the last node's address is still what
            # encoders outside should dial (the in-cluster URL never works for them), and a
            # replacement on another node re-renders as "moved". Forgotten with the Livestream.
            return
        changed = rt.pod_ips.get(key) != agent.ip
        rt.pod_ips[key] = agent.ip
        # The node's address is where a NodePort ingest answers (status.ingest).
        moved = False
        if agent.host_ip and rt.host_ips.get(key) != agent.host_ip:
            rt.host_ips[key] = agent.host_ip
            moved = True
        if moved and rt.config.ingest_service_type == "NodePort" and role_of(key[2] or "") == "ingest":
            # Re-render: the publish URLs in the credentials Secret name the node.
            rt.wake(key[0], key[1], "ingest pod moved to another node")
        elif changed or moved:
            rt.wake(key[0], key[1], "agent pod address changed", reapply=False)
