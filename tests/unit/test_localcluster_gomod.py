"""The wrapper-module replace lines are generated from upstream go.mod text; pin that logic."""

from __future__ import annotations

import pytest

from onair.localcluster import build

K8S_GOMOD = """\
// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
	k8s.io/apimachinery v0.0.0 // indirect
	k8s.io/client-go v0.0.0
	k8s.io/klog/v2 v2.130.1
	k8s.io/kube-openapi v0.0.0-20250910181357-589584f1c912
)

require k8s.io/kms v0.0.0

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	k8s.io/client-go => ./staging/src/k8s.io/client-go
)

replace k8s.io/kms => ./staging/src/k8s.io/kms
replace github.com/onsi/ginkgo v1.2.3 => github.com/onsi/ginkgo v1.2.4 // pinned upstream
"""

ETCD_GOMOD = """\
module go.etcd.io/etcd/server/v3

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 v3.6.16
	go.etcd.io/etcd/client/v3 v3.6.16
)

replace (
	go.etcd.io/etcd/api/v3 => ../api
	go.etcd.io/etcd/client/v3 => ../client/v3
)

// Bad imports are sometimes causing attempts to pull that code.
// This makes the error more explicit.
replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_staging_version():
    assert build.staging_version("v1.35.4") == "v0.35.4"
    assert build.staging_version("v1.36.0-rc.1") == "v0.36.0-rc.1"
    with pytest.raises(ValueError):
        build.staging_version("v2.0.0")


def test_parse_gomod_blocks_and_single_lines():
    mod = build.parse_gomod(K8S_GOMOD)
    assert mod.module == "k8s.io/kubernetes"
    assert mod.go == "1.25.0"
    assert mod.godebug == ["default=go1.25"]
    assert mod.require["k8s.io/apimachinery"] == "v0.0.0"
    assert mod.require["k8s.io/kms"] == "v0.0.0"
    assert ("k8s.io/kms", "", "./staging/src/k8s.io/kms", "") in mod.replace
    assert ("github.com/onsi/ginkgo", "v1.2.3", "github.com/onsi/ginkgo", "v1.2.4") in mod.replace


def test_kubernetes_replace_lines_map_staging_to_published_tags():
    lines = build.replace_lines(K8S_GOMOD, lambda _p: build.staging_version("v1.35.4"))
    assert lines == [
        "github.com/onsi/ginkgo v1.2.3 => github.com/onsi/ginkgo v1.2.4",
        "k8s.io/api => k8s.io/api v0.35.4",
        "k8s.io/apimachinery => k8s.io/apimachinery v0.35.4",
        "k8s.io/client-go => k8s.io/client-go v0.35.4",
        "k8s.io/kms => k8s.io/kms v0.35.4",
    ]


def test_v000_staging_requirement_without_replace_still_gets_one():
    text = "module k8s.io/kubernetes\n\nrequire k8s.io/kubelet v0.0.0\n"
    assert build.replace_lines(text, lambda _p: "v0.35.4") == ["k8s.io/kubelet => k8s.io/kubelet v0.35.4"]


def test_etcd_guard_replacements_are_not_copied():
    lines = build.replace_lines(ETCD_GOMOD, lambda _p: "v3.6.16")
    assert lines == [
        "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.16",
        "go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v3.6.16",
    ]


def test_wrapper_gomod_requires_pin_and_keeps_godebug():
    up = build.parse_gomod(K8S_GOMOD)
    text = build.wrapper_gomod(up, K8S_GOMOD, "k8s.io/kubernetes", "v1.35.4", lambda _p: "v0.35.4")
    assert "\ngo 1.25.0\n" in text
    assert "\ngodebug default=go1.25\n" in text
    assert "\nrequire k8s.io/kubernetes v1.35.4\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.35.4\n" in text
    # the wrapper must itself parse back to the same replacements
    again = build.parse_gomod(text)
    assert ("k8s.io/api", "", "k8s.io/api", "v0.35.4") in again.replace


# The shape of Traefik's go.mod: forks replaced, and a version excluded whose packages would
# otherwise be ambiguous imports. Both only hold in the main module, so the wrapper repeats them.
TRAEFIK_GOMOD = """module github.com/traefik/traefik/v3

go 1.25.0

require (
	github.com/gorilla/mux v1.8.1
	github.com/tencentcloud/tencentcloud-sdk-go v1.0.0 // indirect
)

replace (
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)

// tencentcloud uses monorepo with multimodule but the go.mod files are incomplete.
exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
"""


def test_wrapper_gomod_keeps_upstream_excludes_and_fork_replacements():
    up = build.parse_gomod(TRAEFIK_GOMOD)
    assert up.exclude == ["github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible"]
    text = build.wrapper_gomod(up, TRAEFIK_GOMOD, "github.com/traefik/traefik/v3", "v3.6.12", lambda _p: "v3.6.12")
    assert "\nexclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible\n" in text
    assert "\tgithub.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59\n" in text
    again = build.parse_gomod(text)
    assert again.exclude == up.exclude and again.require == {"github.com/traefik/traefik/v3": "v3.6.12"}


def test_component_key_changes_with_version():
    c = next(c for c in build.components() if c.name == "kubernetes")
    other = build.Component(c.name, c.module, "v1.35.5", c.binaries, c.local_version, c.ldflags)
    assert c.key() != other.key()
    assert c.key() == build.components()[1].key()


# SeaweedFS pins a pseudo-version and replaces a module deleted from its host with a fork; the
# replacement only holds in the main module, so the wrapper must repeat it.
SEAWEEDFS_GOMOD = """module github.com/seaweedfs/seaweedfs

go 1.26.6

require github.com/tyler-smith/go-bip39 v1.1.0 // indirect

// replace github.com/seaweedfs/raft => /Users/someone/go/src/github.com/seaweedfs/raft

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
"""


def test_seaweedfs_wrapper_keeps_the_fork_replacement_and_builds_weed():
    up = build.parse_gomod(SEAWEEDFS_GOMOD)
    comp = next(c for c in build.components() if c.name == "seaweedfs")
    assert comp.binaries == {"weed": "github.com/seaweedfs/seaweedfs/weed"}
    assert build.binary_paths()["weed"].name == "weed"
    text = build.wrapper_gomod(up, SEAWEEDFS_GOMOD, comp.module, comp.version, comp.local_version)
    assert f"\nrequire github.com/seaweedfs/seaweedfs {comp.version}\n" in text
    assert "\tgithub.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0\n" in text
    assert "/Users/" not in text
