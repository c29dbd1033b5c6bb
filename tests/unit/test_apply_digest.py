"""The manifest digest and the rule that skips applying a child (onair.controller.apply)."""
from __future__ import annotations

from onair.api.meta import MANIFEST_DIGEST_ANNOTATION
from onair.controller.apply import KnownChild, manifest_digest, up_to_date, with_digest

CM = {"apiVersion": "v1", "kind": "ConfigMap",
      "metadata": {"name": "show-origin", "namespace": "ns", "labels": {"a": "1", "b": "2"}},
      "data": {"config.json": "{}"}}
KEY = ("ConfigMap", "show-origin")


def test_digest_ignores_key_order_and_its_own_annotation_but_not_content():
    digest = manifest_digest(CM)
    reordered = {"data": {"config.json": "{}"}, "kind": "ConfigMap", "apiVersion": "v1",
                 "metadata": {"labels": {"b": "2", "a": "1"}, "namespace": "ns", "name": "show-origin"}}
    assert manifest_digest(reordered) == digest
    stamped = with_digest(CM, digest)
    assert stamped["metadata"]["annotations"] == {MANIFEST_DIGEST_ANNOTATION: digest}
    assert manifest_digest(stamped) == digest
    assert "annotations" not in CM["metadata"]  # the rendered manifest is left as it was
    assert manifest_digest({**CM, "data": {"config.json": "{ }"}}) != digest
    other_annotation = {**CM, "metadata": {**CM["metadata"], "annotations": {"x": "y"}}}
    assert manifest_digest(other_annotation) != digest


def known(digest, marker="rv7", deleting=False):
    return {KEY: KnownChild(kind="ConfigMap", name="show-origin", controller_uid="u", deleting=deleting,
                            marker=marker, digest=digest)}


def test_up_to_date_only_when_memory_cache_and_live_object_all_agree():
    digest = manifest_digest(CM)
    before, applied = {KEY: "rv7"}, {KEY: digest}
    assert up_to_date(KEY, digest, before, applied, known(digest))
    # A changed manifest, or nothing applied by this process (after a restart): apply.
    assert not up_to_date(KEY, "other", before, applied, known(digest))
    assert not up_to_date(KEY, digest, {}, {}, known(digest))
    # Deleted, being deleted, changed by someone else, or no cache to tell: apply.
    assert not up_to_date(KEY, digest, before, applied, {})
    assert not up_to_date(KEY, digest, before, applied, known(digest, deleting=True))
    assert not up_to_date(KEY, digest, before, applied, known(digest, marker="rv8"))
    assert not up_to_date(KEY, digest, before, applied, known("someone-else's"))
    assert not up_to_date(KEY, digest, before, applied, None)
