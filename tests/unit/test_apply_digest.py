"""The manifest digest and the rule that skips applying a child (onair.controller.apply)."""

from __future__ import annotations

from onair.api.meta import MANIFEST_DIGEST_ANNOTATION
from onair.controller.apply import KnownChild, manifest_digest, untouched_since_apply, up_to_date, with_digest

CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "show-origin", "namespace": "ns", "labels": {"a": "1", "b": "2"}},
    "data": {"config.json": "{}"},
}
KEY = ("ConfigMap", "show-origin")


def test_digest_ignores_key_order_and_its_own_annotation_but_not_content():
    digest = manifest_digest(CM)
    reordered = {
        "data": {"config.json": "{}"},
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"labels": {"b": "2", "a": "1"}, "namespace": "ns", "name": "show-origin"},
    }
    assert manifest_digest(reordered) == digest
    stamped = with_digest(CM, digest)
    assert stamped["metadata"]["annotations"] == {MANIFEST_DIGEST_ANNOTATION: digest}
    assert manifest_digest(stamped) == digest
    assert "annotations" not in CM["metadata"]  # the rendered manifest is left as it was
    assert manifest_digest({**CM, "data": {"config.json": "{ }"}}) != digest
    other_annotation = {**CM, "metadata": {**CM["metadata"], "annotations": {"x": "y"}}}
    assert manifest_digest(other_annotation) != digest


def known(digest, marker="rv7", deleting=False):
    return {
        KEY: KnownChild(
            kind="ConfigMap", name="show-origin", controller_uid="u", deleting=deleting, marker=marker, digest=digest
        )
    }


def test_up_to_date_only_when_memory_cache_and_live_object_all_agree():
    digest = manifest_digest(CM)
    before, applied = {KEY: "rv7"}, {KEY: digest}
    assert up_to_date(KEY, digest, before, applied, known(digest)) == "rv7"
    # A changed manifest, or nothing applied by this process (after a restart): apply.
    assert None is up_to_date(KEY, "other", before, applied, known(digest))
    assert None is up_to_date(KEY, digest, {}, {}, known(digest))
    # Deleted, being deleted, changed by someone else, or no cache to tell: apply.
    assert None is up_to_date(KEY, digest, before, applied, {})
    assert None is up_to_date(KEY, digest, before, applied, known(digest, deleting=True))
    assert None is up_to_date(KEY, digest, before, applied, known(digest, marker="rv8"))
    assert None is up_to_date(KEY, digest, before, applied, known("someone-else's"))
    assert None is up_to_date(KEY, digest, before, applied, None)


def entry(manager, time, operation="Update", subresource=None):
    out = {"manager": manager, "operation": operation, "time": time}
    if subresource:
        out["subresource"] = subresource
    return out


def test_untouched_when_the_operators_apply_is_the_newest_write_status_aside():
    ours = entry("onair-operator", "2026-12-06T10:00:05Z", "Apply")
    assert untouched_since_apply({"managedFields": [ours]})
    assert untouched_since_apply(
        {
            "managedFields": [
                entry("kubectl-create", "2026-12-06T10:00:04Z"),
                ours,
                entry("kcm", "2026-12-06T10:09:00Z", subresource="status"),
            ]
        }
    )
    # Edited after, or in the same second (times have one-second resolution): not to be trusted.
    assert not untouched_since_apply({"managedFields": [ours, entry("kubectl-edit", "2026-12-06T10:00:06Z")]})
    assert not untouched_since_apply({"managedFields": [ours, entry("kubectl-edit", "2026-12-06T10:00:05Z")]})
    # Never applied by the operator (or its entry gone: someone else took every field).
    assert not untouched_since_apply({"managedFields": [entry("kubectl-edit", "2026-12-06T10:00:06Z")]})
    assert not untouched_since_apply({})


def test_after_a_restart_the_live_object_decides():
    digest = manifest_digest(CM)
    untouched = {
        KEY: KnownChild(
            kind="ConfigMap",
            name="show-origin",
            controller_uid="u",
            deleting=False,
            marker="rv7",
            digest=digest,
            untouched=True,
        )
    }
    edited = {
        KEY: KnownChild(
            kind="ConfigMap",
            name="show-origin",
            controller_uid="u",
            deleting=False,
            marker="rv9",
            digest=digest,
            untouched=False,
        )
    }
    assert up_to_date(KEY, digest, {}, {}, untouched) == "rv7"
    assert up_to_date(KEY, digest, {}, {}, edited) is None
    assert up_to_date(KEY, "other", {}, {}, untouched) is None
    # Once this process recorded the child, only its own record counts (a resync clears the digests).
    assert up_to_date(KEY, digest, {KEY: "rv7"}, {}, untouched) is None
