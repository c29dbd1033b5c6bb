"""One Deployment per agent: the pod (security contexts, kubelet probes, grace), the volumes and
files each role may read, and the rollout strategy."""

from __future__ import annotations

import hashlib
import math
from typing import Mapping

from pydantic import BaseModel

from onair import roles
from onair.api.agent import ORIGIN_FINISH_SECONDS, IngestConfig, OriginConfig, RecorderConfig, TranscoderConfig
from onair.api.meta import LABEL_ROLE, labels
from onair.api.settings import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, CallSettings
from onair.api.operator_config import OperatorConfig
from onair.render import credentials as creds_mod
from onair.render import rollout
from onair.render.effective import origin_replicas, recording_storage
from onair.render.agent_configs import (
    CONFIG_KEY,
    S3_SECRET_DIR,
    TLS_DIR,
    TURN_DIR,
    TURN_SECRET_KEY,
    config_json,
    ingest_tls,
    secret_file,
)
from onair.render.child_names import (
    ORIGIN_PEERS_KEY,
    child_meta,
    child_name,
    recordings_claim,
    role_of,
    selector_labels,
)


CONFIG_HASH_ANNOTATION = "onair.dev/config-sha256"
UID = 10001


# Which credential files each role may read: least privilege, and the convenience publish URLs
# never reach a pod. The read token is added for a role whose config names it (``_secret_keys``):
# a recorder or transcoder reading a third-party pull source never gets it. Every agent checks the
# agent token the operator calls it with.
_SECRET_KEYS: dict[str, tuple[str, ...]] = {
    # The playback secret also signs members' personal publish tokens, which the ingest verifies.
    "ingest": (
        creds_mod.STREAM_KEY,
        creds_mod.SRT_PASSPHRASE,
        creds_mod.WHIP_TOKEN,
        creds_mod.PLAYBACK_SECRET,
        creds_mod.AGENT_TOKEN,
    ),
    "transcoder": (creds_mod.UPLOAD_TOKEN, creds_mod.AGENT_TOKEN),
    "origin": (creds_mod.PLAYBACK_SECRET, creds_mod.UPLOAD_TOKEN, creds_mod.AGENT_TOKEN),
    "recorder": (creds_mod.AGENT_TOKEN,),
}
# Grace before SIGKILL: the recorder finalises its MP4 on SIGTERM, the others just stop; the
# origin's is its drain and the requests then in flight on top of this (``grace_seconds``).
_GRACE_SECONDS = {"ingest": 15, "transcoder": 30, "origin": 15, "recorder": 60}


def grace_seconds(role: str, agent: BaseModel) -> int:
    """The pod's terminationGracePeriodSeconds: an origin serves viewers through its drain (out of
    its Service's endpoints) and finishes the requests in flight before it stops, and a SIGKILL
    meanwhile would cut them. Draining in the agent rather than in a preStop sleep: the agent
    says not-ready at once and closes keep-alive connections, and ``onair dev`` (no kubelet)
    drains the same way."""
    if isinstance(agent, OriginConfig):
        return math.ceil(agent.drain_seconds + ORIGIN_FINISH_SECONDS) + _GRACE_SECONDS[role]
    return _GRACE_SECONDS[role]


def pod_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _kubelet_probe(period: int, failures: int, path: str = "/healthz") -> dict:
    return {
        "httpGet": {"path": path, "port": "agent"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _volumes(
    name: str, key: str, agent: BaseModel, effective: CallSettings, config: OperatorConfig
) -> tuple[list[dict], list[dict]]:
    role = role_of(key)
    volumes: list[dict] = [
        {
            "name": "config",
            "configMap": {"name": child_name(name, key), "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    # subPath: the config file sits next to the secret directory; agents read it once at start
    # and the config hash annotation restarts the pod when it changes.
    mounts: list[dict] = [
        {"name": "config", "mountPath": roles.CONFIG_PATH, "subPath": CONFIG_KEY, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    secret_keys = _secret_keys(role, agent)
    if secret_keys:
        volumes.append(
            {
                "name": "credentials",
                "secret": {
                    "secretName": creds_mod.secret_name(name),
                    "defaultMode": 0o440,
                    "items": [{"key": k, "path": k} for k in secret_keys],
                },
            }
        )
        mounts.append({"name": "credentials", "mountPath": roles.SECRET_DIR, "readOnly": True})
    if role == "ingest" and ingest_tls(config):
        volumes.append(
            {
                "name": "tls",
                "secret": {
                    "secretName": config.ingest_tls_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
                },
            }
        )
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    if getattr(agent, "whip_turn_secret_file", None) or getattr(agent, "whep_turn_secret_file", None):
        volumes.append(
            {
                "name": "turn",
                "secret": {
                    "secretName": child_name(name, "turn"),
                    "defaultMode": 0o440,
                    "items": [{"key": TURN_SECRET_KEY, "path": TURN_SECRET_KEY}],
                },
            }
        )
        mounts.append({"name": "turn", "mountPath": TURN_DIR, "readOnly": True})
    if isinstance(agent, (IngestConfig, TranscoderConfig)):
        volumes.append({"name": "work", "emptyDir": {}})
        mounts.append({"name": "work", "mountPath": agent.work_dir})
    if isinstance(agent, OriginConfig):
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": child_name(name, "dvr")}})
        mounts.append({"name": "data", "mountPath": agent.data_dir})
    if isinstance(agent, RecorderConfig):
        volumes.append(
            {"name": "recordings", "persistentVolumeClaim": {"claimName": recordings_claim(name, effective)}}
        )
        mounts.append({"name": "recordings", "mountPath": agent.output_dir})
        storage = recording_storage(effective)
        if storage.s3 and storage.s3.credentials_secret:
            # Optional: a missing Secret must not keep the recorder (and the recording) from
            # starting; the recorder reports it in /status and the kubelet fills the files in
            # once the Secret exists.
            volumes.append(
                {
                    "name": "s3-credentials",
                    "secret": {
                        "secretName": storage.s3.credentials_secret,
                        "defaultMode": 0o440,
                        "optional": True,
                        "items": [{"key": k, "path": k} for k in (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY)],
                    },
                }
            )
            mounts.append({"name": "s3-credentials", "mountPath": S3_SECRET_DIR, "readOnly": True})
    return volumes, mounts


def _secret_keys(role: str, agent: BaseModel) -> tuple[str, ...]:
    keys = _SECRET_KEYS[role]
    if getattr(agent, "read_token_file", None) == secret_file(creds_mod.READ_TOKEN):
        keys += (creds_mod.READ_TOKEN,)
    return keys


def _spread(name: str) -> dict:
    """Main and backup ingest on different nodes and zones when the cluster has them.

    ScheduleAnyway/preferred: a one-node cluster still runs both (a backup on the same node still
    covers a crashed or frozen encoder connection).
    """
    ingest_pods = {"matchLabels": {"app.kubernetes.io/instance": name, LABEL_ROLE: "ingest"}}
    return {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": ingest_pods}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": weight, "podAffinityTerm": {"topologyKey": key, "labelSelector": ingest_pods}}
                    for weight, key in ((100, "kubernetes.io/hostname"), (50, "topology.kubernetes.io/zone"))
                ]
            }
        },
    }


def _pod_template(
    ls_meta: Mapping, key: str, agent: BaseModel, effective: CallSettings, config: OperatorConfig
) -> tuple[dict, dict]:
    """The pod template and the workload's metadata (with the template hash rollouts key on)."""
    name = ls_meta["name"]
    role = roles.MEDIA_ROLES[role_of(key)]
    volumes, mounts = _volumes(name, key, agent, effective, config)
    if origin_replicas(effective) > 1 and role.name == "origin":
        # Each replica's own volume, from the StatefulSet's volumeClaimTemplates.
        volumes = [v for v in volumes if v["name"] != "data"]
    container: dict = {
        "name": role.name,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(role.command),
        "args": role.args(),
        "ports": [{"name": p.name, "containerPort": p.number, "protocol": p.protocol} for p in role.ports],
        "resources": config.resources_for(role.name).manifest(),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        # Readiness and liveness wait for the first answer, asked every second: a (re)started
        # agent joins its Service (encoders, viewers) a second after it listens instead of at
        # the next 5 s readiness period, and a slow start is never a liveness failure.
        "startupProbe": _kubelet_probe(1, 120),
        "readinessProbe": _kubelet_probe(5, 3, role.readiness_path),
        "livenessProbe": _kubelet_probe(10, 6),
    }
    pod_labels = {**labels(name, key), LABEL_ROLE: role.name}
    pod_spec: dict = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": grace_seconds(role.name, agent),
        "containers": [container],
        "volumes": volumes,
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    if role.name == "ingest":
        pod_spec.update(_spread(name))
    digest = hashlib.sha256(config_json(agent).encode()).hexdigest()
    template = {"metadata": {"labels": pod_labels, "annotations": {CONFIG_HASH_ANNOTATION: digest}}, "spec": pod_spec}
    metadata = child_meta(ls_meta, child_name(name, key), key)
    # Whether applying this starts a rollout (onair.render.rollout staggers the ingest slots').
    metadata["annotations"] = {rollout.TEMPLATE_HASH_ANNOTATION: rollout.template_hash(template)}
    return template, metadata


def render_deployment(
    ls_meta: Mapping, key: str, agent: BaseModel, effective: CallSettings, config: OperatorConfig
) -> dict:
    name = ls_meta["name"]
    role = roles.MEDIA_ROLES[role_of(key)]
    if role.name == "origin" and origin_replicas(effective) > 1:
        return render_origin_statefulset(ls_meta, agent, effective, config)
    template, metadata = _pod_template(ls_meta, key, agent, effective, config)
    if role.name == "ingest":
        # The new pod starts next to the old one and the old one goes only once the new one is
        # Ready: the slot's Service always has a pod that takes the encoder's reconnect at once.
        # Two pods of one slot for a moment are harmless (nothing shared but the Service; the
        # publisher and the transcoder's read stay on the old pod until it stops).
        strategy: dict = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    else:
        # One pod at a time: a second origin/recorder could not mount the RWO volume, and two
        # transcoders would race for the same outputs.
        strategy = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": strategy,
            "selector": {"matchLabels": selector_labels(name, key)},
            "template": template,
        },
    }


def render_origin_statefulset(
    ls_meta: Mapping, agent: BaseModel, effective: CallSettings, config: OperatorConfig
) -> dict:
    """``origin.replicas`` > 1: a StatefulSet, so that each replica keeps a volume of its own across
    restarts (its DVR) and a stable name its peers and the transcoder reach it by
    (``<ls>-origin-<i>.<ls>-origin-peers``, see ``agent_configs.origin_replica_upload_urls``).

    Pods start in parallel (a new stream has nothing to copy), but a rolling update replaces one
    pod at a time and waits until the new one is Ready, which it is only once it copied a peer's
    DVR (``agent/origin/replicas.py``): the others serve meanwhile. One replica keeps today's
    Deployment with its RWO claim: a StatefulSet cannot take over that claim, and one pod needs
    no peer.
    """
    name = ls_meta["name"]
    template, metadata = _pod_template(ls_meta, "origin", agent, effective, config)
    claim: dict = {
        "metadata": {"name": "data", "labels": selector_labels(name, "origin")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": config.dvr_volume_size}}},
    }
    if config.storage_class:
        claim["spec"]["storageClassName"] = config.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "replicas": origin_replicas(effective),
            "serviceName": child_name(name, ORIGIN_PEERS_KEY),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name, "origin")},
            "template": template,
            "volumeClaimTemplates": [claim],
            # The replicas' volumes go with the StatefulSet (the Livestream deleted, or back to one replica).
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
        },
    }
