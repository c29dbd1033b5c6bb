"""The names onair stamps on Kubernetes objects: its API group and version, the labels of the
objects it owns, and the field manager of its server-side applies. One home, because the
operator, its watches, the chart, `onair dev` and the tests must all spell them the same.
"""

from __future__ import annotations

from typing import Mapping

GROUP = "onair.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# app.kubernetes.io/managed-by of every child, and the field manager of the operator's applies.
MANAGER = "onair-operator"
LABEL_LIVESTREAM = f"{GROUP}/livestream"
LABEL_ROLE = f"{GROUP}/role"
LABEL_RECORDINGS_OF = f"{GROUP}/recordings-of"
# On every applied child: the sha256 of its manifest as rendered (onair.controller.apply.manifest_digest).
MANIFEST_DIGEST_ANNOTATION = f"{GROUP}/manifest-sha256"


def child_selector(name: str) -> dict[str, str]:
    """Labels every owned child of Livestream ``name`` carries (and the kept PVC does not)."""
    return {"app.kubernetes.io/managed-by": MANAGER, LABEL_LIVESTREAM: name}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "onair",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "onair",
        **child_selector(name),
    }


def owner_reference(meta: Mapping) -> dict:
    """The Livestream as the controlling owner of a child (garbage-collected with it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Livestream",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
