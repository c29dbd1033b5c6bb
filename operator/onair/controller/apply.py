"""Make the cluster hold exactly the rendered children of one Livestream.

* ``objects``: server-side apply (field manager ``onair-operator``, force), except the kinds
  ``render.children.create_only`` names (PVCs: mostly immutable once bound), created when absent;
* ``keep`` (the recordings PVC): created when absent, never updated, never deleted;
* prune: owned children (``child_selector`` labels *and* a controller ownerReference to this
  Livestream's uid) that are no longer rendered, e.g. the backup ingest after ``ingest.backup``
  is turned off. The ownerReference check means a user's object that merely copies our labels
  is never deleted.

Re-applying unchanged manifests is a no-op on the API server (no write, resourceVersion kept), so
this runs on every reconcile without churning watches.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Mapping

from onair.render import children as rc

from .kubeapi import KINDS, Kube, KubeError, kind_of, label_selector, owned_by


@dataclass
class ApplyResult:
    # (kind, name) -> the version marker the operator last wrote (see ``version_marker``)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


def version_marker(obj: Mapping) -> str:
    """What identifies "the state we wrote": a Deployment's generation (its status churns the
    resourceVersion while pods roll), every other kind's resourceVersion."""
    meta = obj.get("metadata") or {}
    if obj.get("kind") == "Deployment":
        return f"g{meta.get('generation')}"
    return f"rv{meta.get('resourceVersion')}"


def _label(obj: Mapping) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


async def _apply_one(kube: Kube, obj: dict, result: ApplyResult, before: Mapping[tuple[str, str], str]) -> None:
    key = (obj["kind"], obj["metadata"]["name"])
    if rc.create_only(obj):
        created = await kube.create_if_absent(obj)
        if created is not None:
            result.created.append(_label(obj))
            result.versions[key] = version_marker(created)
        else:
            current = await kube.get(kind_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if current is not None:
                result.versions[key] = version_marker(current)
        return
    applied = await kube.apply(obj)
    marker = version_marker(applied)
    if before.get(key) != marker:
        result.changed.append(_label(obj))
    result.versions[key] = marker


async def apply_children(kube: Kube, rendered: rc.RenderedChildren, owner_meta: Mapping,
                         previous_versions: Mapping[tuple[str, str], str] | None = None) -> ApplyResult:
    """Apply, create and prune; raises the first KubeError after attempting every object."""
    result = ApplyResult()
    before = dict(previous_versions or {})
    # Secrets and ConfigMaps first: a Deployment created before the volume it mounts would make
    # a real kubelet wait (and log) until they appear.
    order = {"Secret": 0, "ConfigMap": 0, "PersistentVolumeClaim": 1, "Service": 2, "Deployment": 3}
    groups: dict[int, list[dict]] = {}
    for obj in rendered.objects:
        groups.setdefault(order.get(obj["kind"], 2), []).append(obj)
    errors: list[KubeError] = []
    for rank in sorted(groups):
        outcomes = await asyncio.gather(*(_apply_one(kube, o, result, before) for o in groups[rank]),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, KubeError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
    for obj in rendered.keep:
        try:
            if await kube.create_if_absent(obj) is not None:
                result.created.append(_label(obj))
        except KubeError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    result.pruned = await prune(kube, rendered, owner_meta)
    return result


async def prune(kube: Kube, rendered: rc.RenderedChildren, owner_meta: Mapping) -> list[str]:
    namespace, name, uid = owner_meta["namespace"], owner_meta["name"], owner_meta["uid"]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    selector = label_selector(rc.child_selector(name))
    pruned: list[str] = []
    listings = await asyncio.gather(*(kube.list(KINDS[k], namespace, selector) for k in rc.CHILD_KINDS))
    for (api_version, kind), items in zip(rc.CHILD_KINDS, listings):
        for item in items:
            item_name = item["metadata"]["name"]
            if (kind, item_name) in wanted or not owned_by(item, uid):
                continue
            if item["metadata"].get("deletionTimestamp"):
                continue
            if await kube.delete(KINDS[(api_version, kind)], namespace, item_name, uid=item["metadata"].get("uid")):
                pruned.append(f"{kind} {item_name}")
    return pruned
