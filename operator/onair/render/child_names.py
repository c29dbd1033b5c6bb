"""How a Livestream's children are named, labelled and find each other: object names, Service DNS,
the Deployment selector, the metadata every child carries, the ports of a role by name."""

from __future__ import annotations

from typing import Mapping

from onair import roles
from onair.api.meta import labels, owner_reference
from onair.api.settings import CallSettings
from onair.render.effective import recording_storage


def child_name(livestream: str, key: str) -> str:
    return f"{livestream}-{key}"


# The origin replicas' headless Service: a stable DNS name per pod for its peers and the transcoder.
ORIGIN_PEERS_KEY = "origin-peers"


def origin_replica_host(livestream: str, namespace: str, ordinal: int) -> str:
    """Cluster DNS of one origin replica (a StatefulSet pod under ``ORIGIN_PEERS_KEY``)."""
    return f"{child_name(livestream, 'origin')}-{ordinal}.{service_host(livestream, namespace, ORIGIN_PEERS_KEY)}"


def service_host(livestream: str, namespace: str, key: str) -> str:
    """Cluster DNS of a child Service, without the cluster domain (pods resolve it via search)."""
    return f"{child_name(livestream, key)}.{namespace}.svc"


def role_of(key: str) -> str:
    return "ingest" if key.startswith("ingest") else key


def selector_labels(name: str, key: str) -> dict[str, str]:
    """A Deployment's (immutable) selector: never add to it, or existing Deployments cannot update."""
    return {"app.kubernetes.io/name": "onair", "app.kubernetes.io/instance": name, "app.kubernetes.io/component": key}


def child_meta(ls_meta: Mapping, name: str, component: str) -> dict:
    return {
        "name": name,
        "namespace": ls_meta["namespace"],
        "labels": labels(ls_meta["name"], component),
        "ownerReferences": [owner_reference(ls_meta)],
    }


def slot_of(key: str) -> str:
    return "backup" if key == "ingest-backup" else "main"


def port_number(role: roles.MediaRole, port_name: str) -> int:
    return next(p.number for p in role.ports if p.name == port_name)


def recordings_claim(name: str, effective: CallSettings) -> str:
    return recording_storage(effective).persistent_volume_claim or child_name(name, "recordings")
