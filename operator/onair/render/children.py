"""Every Kubernetes object a Livestream owns, rendered from (Livestream, CallType, config, credentials).

Pure and deterministic: the same inputs give byte-identical manifests (sorted JSON in
ConfigMaps, no clocks, no randomness), so re-applying them with server-side apply is a no-op.
The one time-dependent child, the member tokens, takes ``now`` as an input and changes only when
``now`` enters a new 12 h bucket.

Children (``<ls>`` is the Livestream name, at most 45 characters by CEL):

=====================================  =======================================================
``Secret <ls>-credentials``             keys and publish URLs (``onair.render.credentials``)
``Secret <ls>-member-tokens``           playback tokens of members who may join backstage (``onair.render.grants``)
``Secret <ls>-turn``                    the TURN server's shared secret, for the ingest to mint WHIP sessions' TURN credentials
``ConfigMap <ls>-<key>``                ``config.json`` = the role's agent config, per key below
``Deployment <ls>-<key>``               one pod per key: Recreate (one writer per volume), the ingest slots roll
``StatefulSet <ls>-origin``             instead of the origin's Deployment with ``origin.replicas`` > 1: a volume per replica
``Service <ls>-origin-peers``           with ``origin.replicas`` > 1: headless, a DNS name per replica (uploads, DVR copies)
``PodDisruptionBudget <ls>-origin``     with ``origin.replicas`` > 1: at most one replica disrupted at a time
``Service <ls>-ingest[-backup]``        push ports of the enabled protocols (type from config)
``Service <ls>-origin``                 the origin's HTTP port (playback) and upload port (the transcoder's)
``Service <ls>-transcoder``             with ``outputs.webrtc``: the transcoder's agent port, for the origin's WHEP proxy
``NetworkPolicy <ls>-<key>``            who may reach each pod's ports (``render_network_policy``)
``Ingress|HTTPRoute <ls>-playback``     with ``playbackRoute``: the public host to the origin's ``http`` port
``PersistentVolumeClaim <ls>-dvr``      the origin's live/DVR window (owned); with replicas, ``data-<ls>-origin-<i>``
                                        from the StatefulSet's claim template (owned by it)
``PersistentVolumeClaim <ls>-recordings``  in ``keep``: created, never owned, never pruned
=====================================  =======================================================

Keys: ``ingest`` and ``ingest-backup`` (push mode; the backup only with ``ingest.backup``),
``transcoder``, ``origin``, ``recorder`` (unless ``recording.mode`` is disabled). Pull mode
(``spec.source.mode: pull``) renders no ingest at all and hands the URIs to the transcoder.

``spec.active: false`` changes configs and ``Desired`` only: pods, Services and URLs stay.

``ingest.backup`` adds or removes the backup ingest's own objects and sets ``Desired.backup``;
the transcoder's and recorder's configs name the backup ingest either way, so turning it on or off
on a live stream restarts neither (no lost segments, no cut in the recording).

How the controller uses the result:

* apply every object in ``objects`` (server-side apply, field manager ``onair-operator``);
  PersistentVolumeClaims are mostly immutable once bound, so create them when absent and do not
  re-apply them (``create_only(obj)``);
* create every object in ``keep`` when absent and never update or delete it;
* prune: list ``CHILD_KINDS`` with ``child_selector(name)`` and delete those whose
  ``ownerReferences`` name this Livestream's uid but that are not in ``objects`` (e.g. the backup
  ingest after ``ingest.backup`` is turned off). The kept recordings PVC carries no label of
  ``child_selector`` and no ownerReference, so it can never be pruned;
* poll the agents: pods matching ``agent_selectors[key]`` on ``roles.AGENT_PORT``.

A missing CallType is not handled here: the controller calls ``onair.render.resolve.resolve``
first and, on a problem, reports it in status (Stalled) and leaves existing children alone.
``calltype=None`` here means "built-in defaults + override" and is meant for tests and tools.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Optional

from pydantic import BaseModel

from onair.api.agent import IngestConfig
from onair.api.calltype import CallType
from onair.api.meta import LABEL_RECORDINGS_OF, labels, owner_reference
from onair.api.livestream import LivestreamSpec
from onair.api.settings import CallSettings
from onair.api.operator_config import OperatorConfig
from onair.render import credentials as creds_mod
from onair.render import grants
from onair.render.agent_configs import CONFIG_KEY, TURN_SECRET_KEY, config_json, render_agent_configs
from onair.render.child_names import child_meta, child_name, selector_labels
from onair.render.credentials import Credentials
from onair.render.deployments import render_deployment
from onair.render.effective import effective_settings, origin_replicas, recording_storage
from onair.render.network import (
    ingest_readers,
    render_ingest_service,
    render_network_policy,
    render_origin_peers_service,
    render_origin_service,
    render_playback_route,
    render_recorder_service,
    render_transcoder_service,
)
from onair.render.resolve import Resolved
from onair.render.urls import IngestExposure, Urls, render_urls


# (apiVersion, kind) of everything render_children can own, for pruning.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)


@dataclass(frozen=True)
class RenderedChildren:
    objects: list[dict]
    keep: list[dict]
    effective: CallSettings
    urls: Urls
    agent_configs: dict[str, BaseModel]
    agent_selectors: dict[str, dict[str, str]] = field(default_factory=dict)
    credentials_secret: str = ""
    members: grants.MemberAccess = field(default_factory=grants.MemberAccess)
    member_tokens_secret: str = ""  # "" when no member may join backstage (no Secret rendered)
    # When the member tokens must be re-minted (see onair.render.grants); None without tokens.
    tokens_refresh_at: Optional[datetime] = None
    # The parsed spec it was rendered from: the status polls read it instead of parsing again.
    spec: Optional[LivestreamSpec] = None


def create_only(obj: Mapping) -> bool:
    """True for objects the controller should create when absent but never re-apply."""
    return obj.get("kind") == "PersistentVolumeClaim"


def render_configmap(ls_meta: Mapping, key: str, agent: BaseModel) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], key), key),
        "data": {CONFIG_KEY: config_json(agent)},
    }


def _pvc_spec(size: str, storage_class: Optional[str]) -> dict:
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def render_dvr_pvc(ls_meta: Mapping, config: OperatorConfig) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], "dvr"), "dvr"),
        "spec": _pvc_spec(config.dvr_volume_size, config.storage_class),
    }


def render_origin_disruption_budget(ls_meta: Mapping) -> dict:
    """With several origin replicas, a node drain takes at most one at a time: the others serve."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], "origin"), "origin"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(ls_meta["name"], "origin")}},
    }


def render_turn_secret(ls_meta: Mapping, turn_secret: str) -> dict:
    """``<ls>-turn``: the TURN server's shared secret for this Livestream's ingest pods. Re-rendered
    from the operator's file on every reconcile, so a rotated secret reaches them (the kubelet
    updates the mounted file; the ingest reads it per WHIP session)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_meta(ls_meta, child_name(ls_meta["name"], "turn"), "turn"),
        "type": "Opaque",
        "data": {TURN_SECRET_KEY: base64.b64encode(turn_secret.encode()).decode("ascii")},
    }


def render_recordings_pvc(ls_meta: Mapping, effective: CallSettings, config: OperatorConfig) -> dict:
    """Created for the Livestream but not owned by it: deleting the Livestream keeps the recordings.

    Labelled for discovery only; none of ``child_selector``'s labels, so pruning never sees it.
    """
    storage = recording_storage(effective)
    assert storage.size is not None, "DEFAULT_SETTINGS sets the size and a merge cannot unset it"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": child_name(ls_meta["name"], "recordings"),
            "namespace": ls_meta["namespace"],
            "labels": {
                "app.kubernetes.io/name": "onair",
                "app.kubernetes.io/part-of": "onair",
                "app.kubernetes.io/component": "recordings",
                LABEL_RECORDINGS_OF: ls_meta["name"],
            },
        },
        "spec": _pvc_spec(storage.size, storage.storage_class_name or config.storage_class),
    }


# ----------------------------------------------------------------------------- entry point
def render_children(
    livestream: Mapping,
    calltype: Optional[CallType],
    config: OperatorConfig,
    creds: Credentials,
    now: Optional[datetime] = None,
    exposure: Optional[Mapping[str, IngestExposure]] = None,
    turn_secret: Optional[str] = None,
    resolved: Optional[Resolved] = None,
) -> RenderedChildren:
    """Render every child of ``livestream`` (the raw object: ``metadata`` with name, namespace, uid; ``spec``).

    ``now`` renders the member playback tokens (``onair.render.grants``): the controller always
    passes its clock; without it no ``<ls>-member-tokens`` Secret is rendered.

    Raises ``pydantic.ValidationError`` when the spec does not parse (``resolve`` reports that as
    a condition before this is called).

    ``turn_secret``: the content of ``config.whip_turn_secret_file`` (the controller reads it); it
    must be given when that is set and an ingest takes WHIP.

    ``resolved``: what ``onair.render.resolve.resolve`` made of this ``livestream`` and ``calltype``
    (the controller has it already: the spec is then not parsed, nor the settings merged, again).
    """
    meta = livestream["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    if resolved is not None and resolved.spec is not None and resolved.effective is not None:
        spec, effective = resolved.spec, resolved.effective
    else:
        spec = LivestreamSpec.model_validate(livestream["spec"])
        effective = effective_settings(calltype.spec.settings if calltype else None, spec.settings_override)
    # The publish URLs in the credentials Secret are the public ones once ``exposure`` (what
    # Kubernetes assigned to the ingest Services, per slot) is known.
    urls = render_urls(name, namespace, spec, effective, config, exposure)
    agents = render_agent_configs(name, namespace, spec, effective, config)

    objects: list[dict] = [
        creds_mod.render_credentials_secret(
            meta, creds, urls.ingest, labels=labels(name, "credentials"), owner_references=[owner_reference(meta)]
        ),
    ]
    if any(
        getattr(a, "whip_turn_secret_file", None) or getattr(a, "whep_turn_secret_file", None) for a in agents.values()
    ):
        if not turn_secret:
            raise ValueError(
                f"ONAIR_WHIP_TURN_SECRET_FILE {config.whip_turn_secret_file} gave no TURN secret to hand to the ingest"
            )
        objects.append(render_turn_secret(meta, turn_secret))
    for key, agent in agents.items():
        objects.append(render_configmap(meta, key, agent))
    replicas = origin_replicas(effective)
    if replicas == 1:
        objects.append(render_dvr_pvc(meta, config))
    for key, agent in agents.items():
        if isinstance(agent, IngestConfig):
            objects.append(render_ingest_service(meta, key, agent, config))
    objects.append(render_origin_service(meta))
    if replicas > 1:
        objects.append(render_origin_peers_service(meta))
        objects.append(render_origin_disruption_budget(meta))
    if "recorder" in agents:
        objects.append(render_recorder_service(meta))
    if getattr(agents.get("transcoder"), "whep", False):
        objects.append(render_transcoder_service(meta))
    route = render_playback_route(meta, config)
    if route is not None:
        objects.append(route)
    if config.network_policies:
        readers = ingest_readers(agents)
        for key, agent in agents.items():
            objects.append(render_network_policy(meta, key, agent, readers, config))
    for key, agent in agents.items():
        objects.append(render_deployment(meta, key, agent, effective, config))

    access = grants.member_access(spec, calltype)
    tokens_secret = None
    if now is not None:
        tokens_secret = grants.render_member_tokens_secret(
            meta, access.backstage, creds.playback_secret, now, labels(name, grants.COMPONENT), [owner_reference(meta)]
        )
    if tokens_secret is not None:
        objects.insert(1, tokens_secret)

    keep: list[dict] = []
    if "recorder" in agents and not recording_storage(effective).persistent_volume_claim:
        keep.append(render_recordings_pvc(meta, effective, config))

    return RenderedChildren(
        objects=objects,
        keep=keep,
        effective=effective,
        urls=urls,
        agent_configs=agents,
        agent_selectors={key: selector_labels(name, key) for key in agents},
        credentials_secret=creds_mod.secret_name(name),
        members=access,
        member_tokens_secret=tokens_secret["metadata"]["name"] if tokens_secret else "",
        tokens_refresh_at=grants.tokens_refresh_at(now) if tokens_secret and now else None,
        spec=spec,
    )
