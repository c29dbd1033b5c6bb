"""Make the cluster hold exactly the rendered children of one Livestream.

* ``objects``: server-side apply (field manager ``onair-operator``, force), except the kinds
  ``render.children.create_only`` names (PVCs: mostly immutable once bound), created when absent;
* ``keep`` (the recordings PVC): created when absent, never updated, never deleted;
* prune: owned children (``child_selector`` labels *and* a controller ownerReference to this
  Livestream's uid) that are no longer rendered, e.g. the backup ingest after ``ingest.backup``
  is turned off. The ownerReference check means a user's object that merely copies our labels
  is never deleted.

What the operator's watches already know (``known``: this Livestream's labelled children from
the watch cache) saves round trips: a PVC the cache has is not asked for again, and the prune
LISTs run only for kinds where the cache or the operator's own earlier writes show an owned
child that is no longer rendered (usually none: a new Livestream has nothing to prune). The
LIST, not the cache, still decides what is deleted (with the listed uid as precondition).

A child whose manifest is the one this process last applied successfully (same digest), and
which the watch cache shows exactly as that apply left it (same version marker, same digest
annotation), is not sent again: a spec edit that changes no child (most ``spec.phase`` edits)
costs no API request. A child deleted or edited by someone else fails that test (and the watch
event forgets its digest, see ``ChildLedger``), so it is applied. After an operator restart
nothing is remembered: a child is skipped when the live object carries the digest and its
managedFields show no write of anyone else after the operator's last apply (the annotation alone
survives a ``kubectl edit``). The periodic resync applies everything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from onair.api.meta import MANAGER, MANIFEST_DIGEST_ANNOTATION, child_selector
from onair.render import children as rc

from onair.kube import KINDS, Kube, KubeError, kind_of


@dataclass
class ApplyResult:
    # (kind, name) -> the version marker the operator last wrote (see ``version_marker``)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    # (kind, name) -> manifest digest of every child applied (or found unchanged) by this call
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)  # not sent: same digest as last applied


@dataclass(frozen=True)
class KnownChild:
    """What the watch cache holds about one labelled child (see ``owned.index_child``)."""

    kind: str
    name: str
    controller_uid: Optional[str]
    deleting: bool
    marker: str
    digest: Optional[str] = None  # its MANIFEST_DIGEST_ANNOTATION
    # Nobody but the operator wrote the object since its last apply (see ``untouched_since_apply``).
    untouched: bool = False


def owned_by(obj: Mapping, uid: str) -> bool:
    """``obj`` is controlled by the object ``uid`` (a plain owner reference is not enough)."""
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def untouched_since_apply(meta: Mapping) -> bool:
    """Whether the operator's server-side apply is the newest write to the object (status aside),
    from its managedFields: every other manager's entry is older (their times have one-second
    resolution, so a write in the same second counts as newer). ``kubectl edit`` or a script's
    patch leaves a newer entry; so does kube-controller-manager's revision annotation on a
    Deployment, which only costs that Deployment a no-op apply."""
    entries = [e for e in meta.get("managedFields") or () if not e.get("subresource")]
    ours = [e for e in entries if e.get("manager") == MANAGER and e.get("operation") == "Apply"]
    if len(ours) != 1 or not ours[0].get("time"):
        return False
    applied_at = ours[0]["time"]  # RFC 3339 in UTC: orders as text
    return all((e.get("time") or "") < applied_at for e in entries if e is not ours[0])


def manifest_digest(obj: Mapping) -> str:
    """sha256 of a rendered manifest, independent of key order (and of the annotation it goes into)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != MANIFEST_DIGEST_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    canonical = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_digest(obj: dict, digest: str) -> dict:
    meta = obj.get("metadata") or {}
    return {
        **obj,
        "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}), MANIFEST_DIGEST_ANNOTATION: digest}},
    }


def up_to_date(
    key: tuple[str, str],
    digest: str,
    before: Mapping[tuple[str, str], str],
    applied_digests: Mapping[tuple[str, str], str],
    known: Optional[Mapping[tuple[str, str], KnownChild]],
) -> Optional[str]:
    """The child's version marker when the cluster holds exactly what applying this manifest would
    leave, else None (no cache: unknown). Either this process applied the same digest and the watch
    cache shows the child unchanged since; or this process has no record of the child (it just
    started) and the live object carries this digest with no write of anyone else after the
    operator's last apply."""
    seen = known.get(key) if known is not None else None
    if seen is None or seen.deleting or seen.digest != digest:
        return None
    if key in before:
        return seen.marker if applied_digests.get(key) == digest and before[key] == seen.marker else None
    return seen.marker if seen.untouched else None


# What runs pods: the origin is a StatefulSet with several replicas.
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def version_marker(obj: Mapping) -> str:
    """What identifies "the state we wrote": a Deployment's generation (its status churns the
    resourceVersion while pods roll), every other kind's resourceVersion."""
    meta = obj.get("metadata") or {}
    if obj.get("kind") in WORKLOAD_KINDS:
        return f"g{meta.get('generation')}"
    return f"rv{meta.get('resourceVersion')}"


def _label(obj: Mapping) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


async def _apply_one(
    kube: Kube,
    obj: dict,
    result: ApplyResult,
    before: Mapping[tuple[str, str], str],
    known: Optional[Mapping[tuple[str, str], KnownChild]],
    applied_digests: Mapping[tuple[str, str], str],
) -> None:
    key = (obj["kind"], obj["metadata"]["name"])
    if rc.create_only(obj):
        seen = known.get(key) if known is not None else None
        if seen is not None:
            result.versions[key] = seen.marker
            return
        # The cache says absent: try to create at once (a stale cache only costs a 409).
        created = await kube.create_if_absent(obj, check_first=known is None)
        if created is not None:
            result.created.append(_label(obj))
            result.versions[key] = version_marker(created)
        else:
            current = await kube.get(kind_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if current is not None:
                result.versions[key] = version_marker(current)
        return
    digest = manifest_digest(obj)
    unchanged = up_to_date(key, digest, before, applied_digests, known)
    if unchanged is not None:
        result.unchanged.append(_label(obj))
        result.versions[key], result.digests[key] = unchanged, digest
        return
    applied = await kube.apply(with_digest(obj, digest))
    marker = version_marker(applied)
    if before.get(key) != marker:
        result.changed.append(_label(obj))
    result.versions[key], result.digests[key] = marker, digest


async def _keep_one(kube: Kube, obj: dict, result: ApplyResult, check_first: bool) -> None:
    if await kube.create_if_absent(obj, check_first=check_first) is not None:
        result.created.append(_label(obj))


async def apply_children(
    kube: Kube,
    rendered: rc.RenderedChildren,
    owner_meta: Mapping,
    previous_versions: Mapping[tuple[str, str], str] | None = None,
    known: Optional[Mapping[tuple[str, str], KnownChild]] = None,
    applied_digests: Optional[Mapping[tuple[str, str], str]] = None,
) -> ApplyResult:
    """Apply, create and prune; raises the first KubeError after attempting every object.

    ``known``: this Livestream's labelled children as the watch cache has them; None without a
    cache (every question then goes to the API server, and every child is applied).
    ``applied_digests``: the ``ApplyResult.digests`` this process recorded for them so far."""
    result = ApplyResult()
    before = dict(previous_versions or {})
    # Deployments last: one created before a Secret, ConfigMap or claim it mounts would make a
    # real kubelet wait (and log) until they appear. Everything else is independent.
    first = [o for o in rendered.objects if o["kind"] not in WORKLOAD_KINDS]
    last = [o for o in rendered.objects if o["kind"] in WORKLOAD_KINDS]
    # The kept PVC is not labelled as a child, so no cache knows it: a Livestream the operator
    # has never written anything for (and the cache has nothing of) tries to create it at once.
    new = known is not None and not known and not before
    errors: list[KubeError] = []
    for rank, batch in enumerate((first, last)):
        steps = [_apply_one(kube, o, result, before, known, applied_digests or {}) for o in batch]
        if rank == 0:
            steps += [_keep_one(kube, o, result, check_first=not new) for o in rendered.keep]
        outcomes = await asyncio.gather(*steps, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, KubeError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
    if errors:
        raise errors[0]
    candidates = None
    if known is not None:
        uid = owner_meta["uid"]
        candidates = set(before) | {
            key for key, child in known.items() if child.controller_uid == uid and not child.deleting
        }
        if not before:
            # Kinds no watch feeds the cache with: looked for once per Livestream and operator
            # start, so a route switched off while the operator was down is still pruned.
            candidates |= {(kind, "") for kind in UNWATCHED_CHILD_KINDS}
    result.pruned = await prune(kube, rendered, owner_meta, candidates)
    return result


# HTTPRoute: the Gateway API is optional, and a watch on a kind the cluster does not serve would
# fail the operator (onair.controller.kopf_settings.CHILD_RESOURCES lists the watched ones).
UNWATCHED_CHILD_KINDS = ("HTTPRoute",)


async def _list_served(kube: Kube, kind, namespace: str, selector: Mapping[str, str]) -> list[dict]:
    """A kind whose API the cluster does not serve (HTTPRoute without the Gateway API CRDs) has no
    children to prune: 404 on the collection is an empty list, not a failed reconcile."""
    try:
        return await kube.list(kind, namespace, selector)
    except KubeError as exc:
        if exc.status == 404 and kind.api_version not in ("v1", "apps/v1", "networking.k8s.io/v1"):
            return []
        raise


async def prune(
    kube: Kube,
    rendered: rc.RenderedChildren,
    owner_meta: Mapping,
    candidates: Optional[Iterable[tuple[str, str]]] = None,
) -> list[str]:
    """Delete owned children that are no longer rendered.

    ``candidates``: (kind, name) of every owned child that may exist; only kinds with a candidate
    that is not rendered are listed. None: list every kind."""
    namespace, name, uid = owner_meta["namespace"], owner_meta["name"], owner_meta["uid"]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    kinds = rc.CHILD_KINDS
    if candidates is not None:
        stale = {kind for kind, obj in candidates if (kind, obj) not in wanted}
        kinds = tuple(k for k in rc.CHILD_KINDS if k[1] in stale)
        if not kinds:
            return []
    selector = child_selector(name)
    pruned: list[str] = []
    listings = await asyncio.gather(*(_list_served(kube, KINDS[k], namespace, selector) for k in kinds))
    for (api_version, kind), items in zip(kinds, listings):
        for item in items:
            item_name = item["metadata"]["name"]
            if (kind, item_name) in wanted or not owned_by(item, uid):
                continue
            if item["metadata"].get("deletionTimestamp"):
                continue
            if await kube.delete(KINDS[(api_version, kind)], namespace, item_name, uid=item["metadata"].get("uid")):
                pruned.append(f"{kind} {item_name}")
    return pruned
