"""The capabilities said to have an effect are the ones the code and the policy use, and the docs
list each of them."""

from __future__ import annotations

from pathlib import Path

from onair.api.calltype import EFFECTIVE_CAPABILITIES, Capability
from onair.render.grants import JOIN_BACKSTAGE, PUBLISH_CAPABILITIES

ROOT = Path(__file__).resolve().parents[2]


def test_effective_capabilities_are_used_and_documented():
    policy = (ROOT / "charts/onair/templates/capabilities.yaml").read_text()
    docs = (ROOT / "docs/capabilities.md").read_text()
    assert set(EFFECTIVE_CAPABILITIES) <= set(Capability.__args__)
    for capability in EFFECTIVE_CAPABILITIES:
        assert f"`{capability}`" in docs, capability
        # join-backstage and the send grants act outside Kubernetes (player, ingest), the rest in the policy.
        if capability not in (JOIN_BACKSTAGE, *PUBLISH_CAPABILITIES):
            assert f"'{capability}' in caps" in policy, capability
        assert f"`{capability}`" not in docs.split("## No effect")[1], capability
    # Every other capability is named as having no effect.
    for capability in set(Capability.__args__) - set(EFFECTIVE_CAPABILITIES):
        assert f"`{capability}`" in docs.split("## No effect")[1], capability
