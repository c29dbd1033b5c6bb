"""The CRDs are generated from the models and must be committed fresh."""

from pathlib import Path


from onair import crdgen

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models():
    for name, crd in crdgen.crds().items():
        path = ROOT / "crds" / name
        assert path.exists(), f"{path} missing: run `onair crds`"
        assert path.read_text() == crdgen.render(name, crd), f"{path} is stale: run `onair crds` and commit"


def _walk(schema, path="$"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}[{key}]")


def test_schemas_are_structural_and_default_free():
    for name, crd in crdgen.crds().items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "default" not in node, f"{name} {path}: defaults belong in code, not the schema"
            assert "$ref" not in node and "anyOf" not in node, f"{name} {path}: not structural"
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{name} {path}: no type"
            assert not ("properties" in node and "additionalProperties" in node), f"{name} {path}"


def test_livestream_schema_carries_cross_field_rules_and_printer_columns():
    crd = crdgen.crds()["onair.dev_livestreams.yaml"]
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["properties"]["source"]["x-kubernetes-validations"]]
    assert any("pull" in r and "uris" in r for r in rules)
    assert spec["properties"]["callType"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Phase", "Live", "Backup"]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["scope"] == "Namespaced"
    assert crdgen.crds()["onair.dev_calltypes.yaml"]["spec"]["scope"] == "Cluster"


def test_check_mode_reports_stale(tmp_path, capsys):
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "onair.dev_livestreams.yaml").write_text("stale")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
