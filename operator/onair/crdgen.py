"""Generate the CRDs in ``crds/`` from the pydantic API models (their only source).

The pydantic JSON schema is rewritten into a Kubernetes *structural* schema: references
inlined, ``Optional`` unions collapsed, no ``default`` anywhere (defaults are resolved in code so
GitOps sees no drift), free-form maps marked ``x-kubernetes-preserve-unknown-fields``, and the
CEL rules the models carry kept as ``x-kubernetes-validations``.

``onair crds`` writes the files; ``onair crds --check`` exits 1 when they are stale.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from onair.api import GROUP, VERSION, CallType, Livestream, Recording
from onair.dicts import deep_merge

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
_DROP = {"title", "default", "additionalProperties", "$defs", "discriminator"}


def _resolve(schema: dict, defs: dict) -> dict:
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _resolve({**target, **rest}, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        outer = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) != 1:
            raise ValueError(f"unions are not structural: {schema}")
        inner = _resolve(options[0], defs)
        # Field-level extras (description, items overrides, CEL) sit beside anyOf: fold them in.
        return deep_merge(inner, _resolve_children(outer, defs))
    return _resolve_children(schema, defs)


def _resolve_children(schema: dict, defs: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    # dict[str, X] arrives as additionalProperties: X; dict[str, Any] as additionalProperties: true.
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict) and "properties" not in schema:
        out["additionalProperties"] = _resolve(addl, defs)
    return out


def _clean(schema: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP and not (
            key == "additionalProperties" and isinstance(value, dict) and "properties" not in schema
        ):
            continue
        if key == "properties":
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _clean(value)
        else:
            out[key] = value
    if out.get("format") == "date-time":
        out["type"] = "string"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


def structural_schema(model) -> dict:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    resolved = _clean(_resolve(raw, defs))
    props = resolved["properties"]
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    resolved["required"] = [r for r in resolved.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
    if not resolved["required"]:
        resolved.pop("required")
    return resolved


def _crd(
    model,
    *,
    plural: str,
    singular: str,
    kind: str,
    scope: str,
    short_names: list[str],
    columns: list[dict],
    description: str,
) -> dict:
    schema = structural_schema(model)
    schema["description"] = description
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "onair", "app.kubernetes.io/part-of": "onair"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": singular,
                "kind": kind,
                "shortNames": short_names,
                "categories": ["onair"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crds() -> dict[str, dict]:
    return {
        f"{GROUP}_calltypes.yaml": _crd(
            CallType,
            plural="calltypes",
            singular="calltype",
            kind="CallType",
            scope="Cluster",
            short_names=["ct"],
            description="CallType: cluster-wide presets (backstage, ingest, broadcasting, DVR, recording) "
            "and role grants that Livestreams refer to by name, like a StorageClass.",
            columns=[
                {"name": "Broadcasting", "type": "string", "jsonPath": ".spec.settings.broadcasting.mode"},
                {"name": "Recording", "type": "string", "jsonPath": ".spec.settings.recording.mode"},
                {"name": "Livestreams", "type": "integer", "jsonPath": ".status.livestreams"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
        f"{GROUP}_livestreams.yaml": _crd(
            Livestream,
            plural="livestreams",
            singular="livestream",
            kind="Livestream",
            scope="Namespaced",
            short_names=["ls", "lstream"],
            description="Livestream: one stream or event. Encoders push to status.ingest (credentials in "
            "status.credentialsSecret); viewers play status.playback.",
            columns=[
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Live", "type": "boolean", "jsonPath": ".status.live"},
                {"name": "Backup", "type": "boolean", "jsonPath": ".status.backupLive"},
                {"name": "Broadcasting", "type": "boolean", "jsonPath": ".status.broadcasting"},
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Playback URL", "type": "string", "jsonPath": ".status.playback.hlsCmaf"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
        f"{GROUP}_recordings.yaml": _crd(
            Recording,
            plural="recordings",
            singular="recording",
            kind="Recording",
            scope="Namespaced",
            short_names=["rec"],
            description="Recording: one finished recording session of a Livestream (its parts on the recordings "
            "volume and in object storage). Created by the operator, owned by nothing: it outlives "
            "the Livestream. Deleting it deletes its media.",
            columns=[
                {"name": "Livestream", "type": "string", "jsonPath": ".spec.livestream.name"},
                {"name": "Started", "type": "string", "format": "date-time", "jsonPath": ".spec.startedAt"},
                {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
                {"name": "Size", "type": "string", "jsonPath": ".status.size"},
                {"name": "Storage", "type": "string", "jsonPath": ".status.storage"},
                {"name": "Source", "type": "string", "jsonPath": ".spec.source", "priority": 1},
                {"name": "End reason", "type": "string", "jsonPath": ".spec.endReason", "priority": 1},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        ),
    }


def render(name: str, crd: dict) -> str:
    header = "# Generated by `onair crds` from operator/onair/api. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="onair crds")
    parser.add_argument("--out", type=Path, default=REPO_CRDS)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    args = parser.parse_args(argv)
    stale = []
    for name, crd in crds().items():
        path = args.out / name
        text = render(name, crd)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale CRDs (run `onair crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
