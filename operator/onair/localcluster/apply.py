"""Apply YAML manifests (CRDs and custom resources) with the Python client.

Shared by `onair dev` and the pytest fixture. Uses the dynamic client with server-side apply,
so it handles arbitrary kinds (CallType objects, not just built-ins) and is idempotent,
without depending on a kubectl binary being installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import yaml

FIELD_MANAGER = "onair-localcluster"


def api_client(kubeconfig: Path | str):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


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


def apply_documents(api, docs: list[dict[str, Any]], *, default_namespace: str = "default") -> list[str]:
    """Server-side apply every document; CRDs first, waited for until usable, then the rest
    (so custom resources in the same batch resolve). Returns 'Kind/name' per object."""
    from kubernetes import dynamic

    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
    applied: list[str] = []
    dyn = dynamic.DynamicClient(api)
    for group in (crds, rest):
        for doc in group:
            res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            kwargs: dict[str, Any] = {}
            if res.namespaced:
                kwargs["namespace"] = doc.get("metadata", {}).get("namespace") or default_namespace
            res.server_side_apply(body=doc, name=doc["metadata"]["name"], field_manager=FIELD_MANAGER,
                                  force_conflicts=True, **kwargs)
            applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
        if group is crds and crds:
            # Callers (and the custom resources below) expect usable CRDs on return.
            wait_crds_established(api, [c["metadata"]["name"] for c in crds])
            dyn = dynamic.DynamicClient(api)  # fresh discovery now that the new kinds exist
    return applied


def apply_files(api, paths: Iterable[Path], **kw: Any) -> list[str]:
    return apply_documents(api, load_documents(paths), **kw)


def wait_crds_established(api, names: Iterable[str], timeout: float = 60.0) -> None:
    """Block until each CRD reports Established=True and NamesAccepted, and a LIST of every
    served version succeeds.

    Established alone is not enough: right after it, the watch cache for the new resource is
    still initializing and LIST/WATCH answer 429 "storage is (re)initializing" for a moment,
    which a test (or the operator's first watch) would otherwise see.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api)
    objs = client.CustomObjectsApi(api)
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for name in sorted(pending):
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            if conds.get("Established") != "True" or conds.get("NamesAccepted") != "True":
                continue
            try:
                for v in crd.spec.versions:
                    if v.served:
                        objs.list_cluster_custom_object(crd.spec.group, v.name, crd.spec.names.plural, limit=1)
            except ApiException as e:
                if e.status in (404, 429, 503):
                    continue
                raise
            pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(0.1)
