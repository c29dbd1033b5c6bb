"""Pinned upstream versions of the local control plane.

This is the only place versions live: the build cache is keyed by them, so bumping a value
here is all it takes to get a fresh build on the next `onair localcluster build`.
"""

from __future__ import annotations

# k8s.io/kubernetes release tag. Its staging modules (k8s.io/api, ...) are published as
# v0.<minor>.<patch>, which build.py derives from this value.
# 1.35.x: go directive 1.25, builds with the go1.26 toolchain we have; 1.36 needs go1.26.0+
# everywhere and is too fresh for the operator's client library matrix.
KUBERNETES_VERSION = "v1.35.4"

# etcd server for 1.35: upstream kubernetes 1.35 tests against etcd 3.6.x.
ETCD_VERSION = "v3.6.16"

# helm v3 (cmd/helm) for chart tests.
HELM_VERSION = "v3.22.0"

# Oldest Go toolchain known to build all of the above (etcd 3.6.16 and helm 3.22 declare go 1.26.0).
MIN_GO_VERSION = (1, 26)

# Cluster DNS for the local node (onair.localcluster.node): the github.com/coredns/coredns main
# package. 1.14.x declares go 1.25, so it builds with the same toolchain as kubernetes 1.35.
COREDNS_VERSION = "v1.14.2"

# The PersistentVolume provisioner k3s and kind ship (hostPath volumes under a node
# directory, WaitForFirstConsumer); the newest tag the Go module proxy has.
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"

# Gateway API CRDs (config/crd/standard of the sigs.k8s.io/gateway-api Go module), installed by the
# tests that check the operator's HTTPRoutes against the real API server. The version Traefik
# (below) is built against: its Gateway provider watches BackendTLSPolicy v1, which entered the
# standard channel in v1.4, and waits for every informer, so older CRDs leave it never ready.
GATEWAY_API_VERSION = "v1.4.0"

# The node's HTTP entry point (Ingress + Gateway API) that playback routes are tested through.
# v3.6.x is the newest line whose module builds as published: from v3.7 its go.mod replaces
# github.com/traefik/traefik/dynamic/ext with a nested module (./pkg/config/dynamic/ext) that
# the module zip leaves out and the proxy does not serve. 3.6 declares go 1.25.
TRAEFIK_VERSION = "v3.6.12"

# The S3-compatible object store the recording upload is tested against (tests/fixtures/s3.py):
# the weed command of SeaweedFS, one process serving master, volume, filer and S3 API. SeaweedFS
# publishes no semantic-version module tags, so the pin is the pseudo-version of a commit the
# Go module proxy serves; it declares go 1.26.6.
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
