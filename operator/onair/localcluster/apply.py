"""Apply YAML manifests (CRDs and custom resources) through onair.kube.

Shared by `onair dev`, the local cluster and the pytest fixtures. Server-side apply of any kind
(built-in ones by lightkube's REST names, custom ones by their CRDs), idempotent, without
depending on a kubectl binary being installed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from onair.kube import CRD, Kind, KubeError, SyncKube, builtin_kind, kinds_of_crd, load_config

FIELD_MANAGER = "onair-localcluster"


def client(kubeconfig: Path | str) -> SyncKube:
    return SyncKube(load_config(str(kubeconfig)))


def load_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in paths:
        for doc in yaml.safe_load_all(Path(p).read_text()):
            if not doc:
                continue
            if doc.get("kind") == "List":
                docs += [d for d in doc.get("items", []) if d]
            else:
                docs.append(doc)
    return docs


def yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def apply_documents(kube: SyncKube, docs: list[dict[str, Any]], *, default_namespace: str = "default") -> list[str]:
    """Server-side apply every document; CRDs first, waited for until usable, then the rest
    (so custom resources in the same batch resolve). Returns 'Kind/name' per object."""
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
    applied: list[str] = []
    custom: Optional[dict[tuple[str, str], Kind]] = None
    for doc in crds:
        _apply(kube, CRD, doc, default_namespace)
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    if crds:
        # Callers (and the custom resources below) expect usable CRDs on return.
        wait_crds_established(kube, [c["metadata"]["name"] for c in crds])
    for doc in rest:
        kind = builtin_kind(doc["apiVersion"], doc["kind"])
        if kind is None:
            if custom is None:  # the cluster's CRDs, read once per batch
                custom = {(k.api_version, k.kind): k for crd in kube.list(CRD, None) for k in kinds_of_crd(crd)}
            kind = custom.get((doc["apiVersion"], doc["kind"]))
            if kind is None:
                raise ValueError(f"the cluster serves no {doc['kind']} {doc['apiVersion']} (is its CRD installed?)")
        _apply(kube, kind, doc, default_namespace)
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return applied


def _apply(kube: SyncKube, kind: Kind, doc: dict[str, Any], default_namespace: str) -> None:
    if kind.namespaced and not doc["metadata"].get("namespace"):
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": default_namespace}}
    kube.apply(doc, field_manager=FIELD_MANAGER, kind=kind)


def apply_files(kube: SyncKube, paths: Iterable[Path], **kw: Any) -> list[str]:
    return apply_documents(kube, load_documents(paths), **kw)


def wait_crds_established(kube: SyncKube, names: Iterable[str], timeout: float = 60.0) -> None:
    """Block until each CRD reports Established=True and NamesAccepted, and a LIST of every
    served version succeeds.

    Established alone is not enough: right after it, the watch cache for the new resource is
    still initializing and LIST/WATCH answer 429 "storage is (re)initializing" for a moment,
    which a test (or the operator's first watch) would otherwise see.
    """
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for name in sorted(pending):
            crd = kube.get(CRD, None, name) or {}
            conds = {c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") != "True" or conds.get("NamesAccepted") != "True":
                continue
            try:
                for kind in kinds_of_crd(crd):
                    kube.list(kind, None)
            except KubeError as e:
                if e.status in (404, 429, 503):
                    continue
                raise
            pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(0.1)
