"""The chart on a real API server: every object accepted, built-in CallTypes created, the operator
pod admitted under the restricted Pod Security Standard, and the operator's ServiceAccount able
to do exactly its job (checked with impersonated requests, and by running the real operator with
that account's token).

Cluster-scoped objects a test creates (ClusterRoles, built-in CallTypes) are removed when it
ends: the session cluster is shared with other tests.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

from onair.localcluster import apply
from onair.packaging import manifests
from tests.fixtures.cluster import official_client, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = ("default", "development", "livestream")
NO_BUILTINS = (
    "--set",
    "builtinCallTypes.livestream.enabled=false",
    "--set",
    "builtinCallTypes.default.enabled=false",
    "--set",
    "builtinCallTypes.development.enabled=false",
)


def _helm() -> Path:
    try:
        return manifests.find_helm()
    except manifests.HelmMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build helm: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    return _helm()


def rendered(helm_bin: Path, release: str, namespace: str, *extra: str) -> list[dict]:
    text = manifests.template(*extra, release=release, namespace=namespace, include_crds=True, helm_bin=helm_bin)
    return [d for d in yaml.safe_load_all(text) if d]


# ----------------------------------------------------------------------------- raw API calls


class Api:
    """Raw REST on one ApiClient, returning (HTTP status, decoded body) instead of raising."""

    def __init__(self, api_client) -> None:
        self.client = api_client

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", **query: Any
    ) -> tuple[int, Any]:
        from urllib.parse import urlencode

        from kubernetes.client.exceptions import ApiException

        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self.client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            resp = self.client.call_api(method, url, header_params=headers, body=body, _request_timeout=15)
            data = resp.read()
            status = resp.status
        except ApiException as e:
            return e.status, e.body
        if not 200 <= status < 300:
            return status, data
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = self.call(method, path, body, **kw)
        assert 200 <= status < 300, f"{method} {path}: HTTP {status}: {data!r}"[:600]
        return data

    def forbidden(self, method: str, path: str, body: Any = None, **kw: Any) -> None:
        status, data = self.call(method, path, body, **kw)
        assert status == 403, f"{method} {path} should be forbidden, got HTTP {status}: {data!r}"[:600]


def impersonating(kubeconfig: Path, user: str) -> Api:
    """Admin credentials acting as ``user``: the API server authorizes as that user (and, for a
    ServiceAccount, adds its groups), exactly as `kubectl --as` does."""
    client = official_client(kubeconfig)
    client.set_default_header("Impersonate-User", user)
    return Api(client)


# ----------------------------------------------------------------------------- installing


class Installed:
    def __init__(self, docs: list[dict], namespace: str) -> None:
        self.docs = docs
        self.namespace = namespace

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.of('ServiceAccount')[0]['metadata']['name']}"


@pytest.fixture
def install(local_cluster, kube_api, sync_kube, helm_bin) -> Iterator:
    """install(namespace, *helm_args) applies `helm template` output with server-side apply and
    removes its cluster-scoped objects afterwards."""
    from kubernetes import dynamic

    done: list[Installed] = []

    def _install(namespace: str, *extra: str, release: Optional[str] = None) -> Installed:
        release = release or f"onair-{secrets.token_hex(3)}"
        docs = rendered(helm_bin, release, namespace, *extra)
        applied = apply.apply_documents(sync_kube, docs, default_namespace=namespace)
        assert len(applied) == len(docs)
        inst = Installed(docs, namespace)
        done.append(inst)
        return inst

    yield _install
    dyn = dynamic.DynamicClient(kube_api)
    for inst in done:
        for doc in inst.docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "CallType"):
                res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
                try:
                    res.delete(name=doc["metadata"]["name"])
                except Exception as e:  # noqa: BLE001 - already gone is fine
                    if getattr(e, "status", None) != 404:
                        raise


@pytest.fixture
def other_namespace(kube_api) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = f"t-chart-other-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def restrict(kube_api, namespace: str) -> None:
    from kubernetes import client

    client.CoreV1Api(kube_api).patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )


# ----------------------------------------------------------------------------- tests


def test_rendered_chart_is_accepted_and_the_operator_pod_is_admitted_as_restricted(install, kube_api, namespace):
    from kubernetes import client

    restrict(kube_api, namespace)
    inst = install(namespace)
    assert {d["kind"] for d in inst.docs} == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "CallType",
        "NetworkPolicy",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    # The API server stored the operator's NetworkPolicy as rendered: it selects the operator's pod.
    policy = next(d for d in inst.docs if d["kind"] == "NetworkPolicy")
    stored = client.NetworkingV1Api(kube_api).read_namespaced_network_policy(policy["metadata"]["name"], namespace)
    deployment = next(d for d in inst.docs if d["kind"] == "Deployment")
    assert stored.spec.pod_selector.match_labels == deployment["spec"]["selector"]["matchLabels"]
    assert stored.spec.policy_types == ["Ingress"] and not stored.spec.ingress
    # The operator's metrics Service, as stored, routes to the operator pod's named metrics port.
    service = next(d for d in inst.docs if d["kind"] == "Service")
    stored_svc = client.CoreV1Api(kube_api).read_namespaced_service(service["metadata"]["name"], namespace)
    assert stored_svc.spec.selector == deployment["spec"]["selector"]["matchLabels"]
    assert [(p.name, p.target_port) for p in stored_svc.spec.ports] == [("metrics", "metrics")]

    custom = client.CustomObjectsApi(kube_api)
    for name in BUILTINS:
        stored = custom.get_cluster_custom_object("onair.dev", "v1alpha1", "calltypes", name)
        source = yaml.safe_load((ROOT / "charts/onair/files/calltypes" / f"{name}.yaml").read_text())
        assert stored["spec"] == source["spec"], name  # nothing pruned or defaulted by the schema

    # No kubelet, but the ReplicaSet controller still creates the Pod object, and Pod Security
    # admission (enforce=restricted on this namespace) would refuse it if the template fell short.
    core = client.CoreV1Api(kube_api)
    dep = inst.of("Deployment")[0]["metadata"]["name"]
    selector = ",".join(f"{k}={v}" for k, v in inst.of("Deployment")[0]["spec"]["selector"]["matchLabels"].items())

    def pod_created():
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return pods[0] if pods else None

    def replicaset_failure():
        for rs in client.AppsV1Api(kube_api).list_namespaced_replica_set(namespace, label_selector=selector).items:
            for c in rs.status.conditions or ():
                if c.type == "ReplicaFailure":
                    return c.message
        return None

    try:
        pod = wait_for(pod_created, 30, what=f"a Pod of Deployment {dep}")
    except BaseException:
        pytest.fail(f"no operator Pod was admitted: {replicaset_failure()}")
    assert pod.spec.security_context.run_as_user == 10001
    assert pod.spec.service_account_name == inst.of("ServiceAccount")[0]["metadata"]["name"]


def test_operator_service_account_can_do_exactly_its_job(install, local_cluster, kube_api, namespace, other_namespace):
    inst = install(namespace, *NO_BUILTINS)
    admin = Api(kube_api)
    sa = impersonating(local_cluster.kubeconfig_path, inst.service_account)
    ns = other_namespace  # cluster-wide install: any namespace
    ct = f"chart-ct-{secrets.token_hex(3)}"
    admin.ok(
        "POST",
        "/apis/onair.dev/v1alpha1/calltypes",
        {"apiVersion": "onair.dev/v1alpha1", "kind": "CallType", "metadata": {"name": ct}, "spec": {}},
    )
    try:
        _exercise_operator_calls(admin, sa, ns, ct)
    finally:
        admin.call("DELETE", f"/apis/onair.dev/v1alpha1/calltypes/{ct}")


def _exercise_operator_calls(admin: Api, sa: Api, ns: str, ct: str) -> None:
    ls_path = f"/apis/onair.dev/v1alpha1/namespaces/{ns}/livestreams"
    admin.ok(
        "POST",
        ls_path,
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "Livestream",
            "metadata": {"name": "show"},
            "spec": {"callType": ct},
        },
    )
    merge = "application/merge-patch+json"

    # What kopf does: list and watch the kinds it handles, patch its finalizer and annotations.
    assert sa.ok("GET", ls_path)["items"][0]["metadata"]["name"] == "show"
    sa.ok("GET", ls_path, watch="true", timeoutSeconds=1)
    sa.ok("GET", "/apis/onair.dev/v1alpha1/calltypes", watch="true", timeoutSeconds=1)
    sa.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    sa.ok("GET", "/api/v1/namespaces")
    sa.ok("GET", f"/api/v1/namespaces/{ns}/pods", watch="true", timeoutSeconds=1)
    sa.ok(
        "PATCH",
        f"{ls_path}/show",
        {
            "metadata": {
                "finalizers": ["onair.dev/finalizer"],
                "annotations": {"onair.dev/last-handled-configuration": "{}"},
            }
        },
        content_type=merge,
    )
    sa.ok("PATCH", f"{ls_path}/show", {"metadata": {"finalizers": None}}, content_type=merge)

    # What the operator does itself: status of Livestreams and CallTypes.
    sa.ok(
        "PATCH",
        f"{ls_path}/show/status",
        {"status": {"observedGeneration": 1, "phase": "backstage"}},
        content_type=merge,
    )
    sa.ok(
        "PATCH", f"/apis/onair.dev/v1alpha1/calltypes/{ct}/status", {"status": {"livestreams": 1}}, content_type=merge
    )

    # Children: server-side apply creates them (the API server checks create as well as patch).
    # Labelled for a Livestream that does not exist: an operator left running by an earlier test
    # module in this process reconciles "show" above, and its real children must not be listed here.
    labels = {"app.kubernetes.io/managed-by": "onair-operator", "onair.dev/livestream": "rbac-probe"}
    meta = {"name": "show-x", "namespace": ns, "labels": labels}
    children = {
        f"/api/v1/namespaces/{ns}/configmaps": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"config.json": "{}"},
        },
        f"/api/v1/namespaces/{ns}/secrets": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "stringData": {"streamKey": "k"},
        },
        f"/api/v1/namespaces/{ns}/services": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "rtmp", "port": 1935}]},
        },
        f"/apis/apps/v1/namespaces/{ns}/deployments": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "ghcr.io/onair-dev/onair:0.1.0"}]},
                },
            },
        },
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": "agent"}]}],
            },
        },
        # The playback route (livestreams.playback.route.kind: ingress).
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": {
                "rules": [
                    {
                        "host": "show.live.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "show-origin", "port": {"name": "http"}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    }
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    for path, obj in children.items():
        sa.ok(
            "PATCH",
            f"{path}/show-x",
            obj,
            content_type="application/apply-patch+yaml",
            fieldManager="onair-operator",
            force="true",
        )
        sa.ok("GET", f"{path}/show-x")
        assert [i["metadata"]["name"] for i in sa.ok("GET", path, labelSelector=selector)["items"]] == ["show-x"]
        sa.ok("GET", path, labelSelector=selector, watch="true", timeoutSeconds=1)
    pvc_path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    sa.ok(
        "POST",
        pvc_path,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {**meta, "name": "rbac-probe-dvr"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        fieldManager="onair-operator",
    )
    children[pvc_path] = {}
    for path in children:
        name = "rbac-probe-dvr" if path == pvc_path else "show-x"
        sa.ok(
            "DELETE", f"{path}/{name}", {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        )

    # Recordings: the operator creates them, updates their spec and status, and kopf patches its finalizer
    # onto them; deleting one is the user's decision, never the operator's.
    rec_path = f"/apis/onair.dev/v1alpha1/namespaces/{ns}/recordings"
    sa.ok("GET", rec_path, labelSelector="onair.dev/livestream=show")
    sa.ok("GET", rec_path, watch="true", timeoutSeconds=1)
    sa.ok(
        "POST",
        rec_path,
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "Recording",
            "metadata": {"name": "show-20260714t090005z", "finalizers": ["onair.dev/finalizer"]},
            "spec": {
                "livestream": {"name": "show"},
                "session": f"{ns}_show_20260714T090005Z",
                "startedAt": "2026-07-14T09:00:07Z",
                "endedAt": "2026-07-14T09:10:00Z",
                "durationSeconds": 593.0,
                "sizeBytes": 1,
                "endReason": "recording stopped",
            },
        },
    )
    sa.ok("GET", f"{rec_path}/show-20260714t090005z")
    sa.ok("PATCH", f"{rec_path}/show-20260714t090005z", {"spec": {"sizeBytes": 2}}, content_type=merge)
    sa.ok("PATCH", f"{rec_path}/show-20260714t090005z/status", {"status": {"size": "2B"}}, content_type=merge)
    sa.forbidden("DELETE", f"{rec_path}/show-20260714t090005z", dryRun="All")
    sa.ok("PATCH", f"{rec_path}/show-20260714t090005z", {"metadata": {"finalizers": None}}, content_type=merge)
    admin.ok("DELETE", f"{rec_path}/show-20260714t090005z")
    # The one-shot pod that deletes a Recording's files when no recorder runs (no more power than the
    # Deployments it creates anyway): create, read, delete.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "show-x-delete-media"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "ghcr.io/onair-dev/onair:0.1.0"}]},
    }
    sa.ok("POST", f"/api/v1/namespaces/{ns}/pods", pod, fieldManager="onair-operator", dryRun="All")
    for method in ("GET", "DELETE"):  # authorized: the answer is that there is no such pod, not 403
        assert sa.call(method, f"/api/v1/namespaces/{ns}/pods/show-x-delete-media")[0] == 404

    # Events, both APIs.
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ref = {"apiVersion": "onair.dev/v1alpha1", "kind": "Livestream", "name": "show", "namespace": ns}
    sa.ok(
        "POST",
        f"/api/v1/namespaces/{ns}/events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "onair-"},
            "involvedObject": ref,
            "type": "Normal",
            "reason": "WentLive",
            "message": "m",
            "source": {"component": "onair-operator"},
        },
    )
    sa.ok(
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{ns}/events",
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": "onair-"},
            "regarding": ref,
            "type": "Normal",
            "reason": "WentLive",
            "note": "m",
            "action": "Reconcile",
            "eventTime": now,
            "reportingController": "onair.dev/operator",
            "reportingInstance": "onair-operator-0",
        },
    )

    # And nothing else: each of these is dry-run, so a wrongly granted one changes nothing.
    sa.forbidden("GET", "/api/v1/nodes")
    sa.forbidden(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/livestreams.onair.dev", dryRun="All"
    )
    sa.forbidden(
        "PATCH",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/livestreams.onair.dev",
        {"metadata": {"labels": {"x": "y"}}},
        content_type=merge,
        dryRun="All",
    )
    sa.forbidden(
        "POST",
        ls_path,
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "Livestream",
            "metadata": {"name": "new"},
            "spec": {"callType": ct},
        },
        dryRun="All",
    )
    sa.forbidden("DELETE", f"{ls_path}/show", dryRun="All")
    sa.forbidden(
        "PATCH",
        f"/apis/onair.dev/v1alpha1/calltypes/{ct}",
        {"spec": {"grants": {"user": ["join-call"]}}},
        content_type=merge,
        dryRun="All",
    )
    sa.forbidden("DELETE", f"/apis/onair.dev/v1alpha1/calltypes/{ct}", dryRun="All")
    sa.forbidden("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles")
    sa.forbidden(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "x"}],
        },
        dryRun="All",
    )
    sa.forbidden(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    sa.forbidden(
        "PATCH", f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"x": "y"}}}, content_type=merge, dryRun="All"
    )
    admin.ok("DELETE", f"{ls_path}/show")


def test_watch_namespaces_confines_the_service_account(install, local_cluster, namespace, other_namespace):
    inst = install(namespace, "--set", f"watchNamespaces={{{other_namespace}}}", *NO_BUILTINS)
    assert [r["metadata"]["namespace"] for r in inst.of("Role")] == [other_namespace]
    sa = impersonating(local_cluster.kubeconfig_path, inst.service_account)
    sa.ok("GET", f"/apis/onair.dev/v1alpha1/namespaces/{other_namespace}/livestreams")
    sa.ok("GET", f"/api/v1/namespaces/{other_namespace}/secrets")
    sa.ok("GET", "/apis/onair.dev/v1alpha1/calltypes")  # cluster-scoped presets stay readable
    # Not cluster-wide, and not even its own namespace, which it does not watch.
    for ns_path in ("", f"/namespaces/{namespace}", "/namespaces/kube-system"):
        sa.forbidden("GET", f"/apis/onair.dev/v1alpha1{ns_path}/livestreams")
    sa.forbidden("GET", "/api/v1/namespaces/kube-system/secrets")
    sa.forbidden("GET", "/api/v1/secrets")


def test_helm_installs_upgrades_and_uninstalls_keeping_the_crds(local_cluster, kube_api, helm_bin, namespace):
    from kubernetes import client

    custom = client.CustomObjectsApi(kube_api)
    kc = ["--kubeconfig", str(local_cluster.kubeconfig_path), "--namespace", namespace]
    chart = str(ROOT / "charts" / "onair")
    existing = {
        c["metadata"]["name"] for c in custom.list_cluster_custom_object("onair.dev", "v1alpha1", "calltypes")["items"]
    }
    if existing & set(BUILTINS):
        pytest.skip(f"built-in CallTypes already exist in this cluster: {sorted(existing & set(BUILTINS))}")

    def names() -> set[str]:
        items = custom.list_cluster_custom_object(
            "onair.dev", "v1alpha1", "calltypes", label_selector="onair.dev/builtin=true"
        )["items"]
        return {c["metadata"]["name"] for c in items}

    release = f"chart-{secrets.token_hex(3)}"
    try:
        proc = manifests.helm("install", release, chart, *kc, helm_bin=helm_bin)
        assert proc.returncode == 0, proc.stderr
        assert f"rollout status deployment/{release}-onair-operator" in proc.stdout  # NOTES rendered
        assert names() == set(BUILTINS)

        proc = manifests.helm(
            "upgrade",
            release,
            chart,
            *kc,
            "--set",
            "builtinCallTypes.development.enabled=false",
            "--set",
            "operator.logLevel=verbose",
            helm_bin=helm_bin,
        )
        assert proc.returncode == 0, proc.stderr
        assert names() == {"default", "livestream"}
        dep = client.AppsV1Api(kube_api).read_namespaced_deployment(f"{release}-onair-operator", namespace)
        assert "--verbose" in dep.spec.template.spec.containers[0].args
        proc = manifests.helm("upgrade", release, chart, *kc, "--set", "operator.logLevel=loud", helm_bin=helm_bin)
        assert proc.returncode != 0 and "logLevel" in proc.stderr
    finally:
        proc = manifests.helm("uninstall", release, *kc, "--wait", "--timeout", "60s", helm_bin=helm_bin)
    assert proc.returncode == 0, proc.stderr
    assert names() == set()
    ext = client.ApiextensionsV1Api(kube_api)
    for crd in ("livestreams.onair.dev", "calltypes.onair.dev"):
        assert ext.read_custom_resource_definition(crd).metadata.name == crd  # never deleted by Helm


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_manifests_install_with_the_documented_kubectl_commands(local_cluster, kube_api, tmp_path):
    """The README's three commands, verbatim, against the committed manifests/."""
    from kubernetes import client, dynamic

    custom = client.CustomObjectsApi(kube_api)
    existing = {
        c["metadata"]["name"] for c in custom.list_cluster_custom_object("onair.dev", "v1alpha1", "calltypes")["items"]
    }
    if existing & set(BUILTINS):
        pytest.skip(f"built-in CallTypes already exist in this cluster: {sorted(existing & set(BUILTINS))}")
    env = {**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig_path)}
    commands = [
        ["kubectl", "apply", "--server-side", "-f", "manifests/crds.yaml"],
        [
            "kubectl",
            "wait",
            "--for",
            "condition=Established",
            "crd/livestreams.onair.dev",
            "crd/calltypes.onair.dev",
            "--timeout=60s",
        ],
        ["kubectl", "apply", "--server-side", "-f", "manifests/"],
    ]
    docs = [d for f in sorted((ROOT / "manifests").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    try:
        for cmd in commands:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
        assert {
            c["metadata"]["name"]
            for c in custom.list_cluster_custom_object(
                "onair.dev", "v1alpha1", "calltypes", label_selector="onair.dev/builtin=true"
            )["items"]
        } == set(BUILTINS)
        dep = client.AppsV1Api(kube_api).read_namespaced_deployment("onair-operator", manifests.NAMESPACE)
        assert dep.spec.strategy.type == "Recreate"
    finally:
        dyn = dynamic.DynamicClient(kube_api)
        for doc in docs:
            if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CallType"):
                try:
                    dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"]).delete(
                        name=doc["metadata"]["name"]
                    )
                except Exception as e:  # noqa: BLE001
                    if getattr(e, "status", None) != 404:
                        raise


# ----------------------------------------------------------------------------- the real operator


class _Problems(logging.Handler):
    """Collects every log record that says the API server refused the operator something."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    REFUSED = re.compile(r"(?i)\b403\b|forbidden|not enough permissions")

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.REFUSED.search(text):
            self.records.append(f"{record.name}: {text}")


@pytest.fixture(scope="module")
def private_cluster():
    """A cluster of its own: the session cluster may run the shared (admin) operator, which would
    reconcile these Livestreams too and hide an RBAC gap of the ServiceAccount-run one."""
    if os.environ.get("ONAIR_SKIP_CLUSTER") == "1":
        pytest.skip("ONAIR_SKIP_CLUSTER=1")
    from onair.localcluster.cluster import LocalCluster

    with LocalCluster() as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["cluster-wide", "namespaced"])
def test_the_operator_runs_on_exactly_the_chart_rbac(private_cluster, helm_bin, scope):
    from kubernetes import client

    from onair.api.operator_config import OperatorConfig
    from onair.controller.runner import run_operator

    admin_api = official_client(private_cluster.kubeconfig_path)
    core = client.CoreV1Api(admin_api)
    suffix = secrets.token_hex(3)
    op_ns, work_ns = f"onair-{suffix}", f"work-{suffix}"
    for ns in (op_ns, work_ns):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    extra: tuple[str, ...] = ("--set", f"watchNamespaces={{{work_ns}}}") if scope == "namespaced" else ()
    docs = rendered(helm_bin, f"op-{suffix}", op_ns, *extra)
    apply.apply_documents(apply.client(private_cluster.kubeconfig_path), docs, default_namespace=op_ns)
    sa_name = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    sa_kubeconfig = private_cluster.serviceaccount_kubeconfig(op_ns, sa_name, create=False)

    problems = _Problems()
    loggers = [logging.getLogger(n) for n in ("kopf", "onair")]
    for lg in loggers:
        lg.addHandler(problems)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_operator(
                kubeconfig=str(sa_kubeconfig),
                namespaces=[work_ns] if scope == "namespaced" else None,
                stop_flag=stop,
                ready_flag=ready,
                config=OperatorConfig(status_poll_interval_seconds=1.0),
                agent_timeout=0.5,
            )
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    thread = threading.Thread(target=target, name=f"onair-operator-sa-{scope}", daemon=True)
    thread.start()
    custom = client.CustomObjectsApi(admin_api)
    apps = client.AppsV1Api(admin_api)
    try:
        wait_for(lambda: ready.is_set() or errors, 60, what="operator ready")
        assert not errors, errors
        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            work_ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": "show"},
                "spec": {"callType": "livestream"},
            },
        )

        def reconciled() -> Optional[dict]:
            obj = custom.get_namespaced_custom_object("onair.dev", "v1alpha1", work_ns, "livestreams", "show")
            st = obj.get("status") or {}
            return (
                obj if st.get("observedGeneration") == obj["metadata"]["generation"] and st.get("conditions") else None
            )

        obj = wait_for(reconciled, 60, what="the Livestream reconciled by the ServiceAccount-run operator")
        assert "onair.dev/finalizer" in obj["metadata"]["finalizers"]
        deployments = {d.metadata.name for d in apps.list_namespaced_deployment(work_ns).items}
        assert deployments == {f"show-{r}" for r in ("ingest", "transcoder", "origin", "recorder")}
        wait_for(
            lambda: (
                (
                    custom.get_cluster_custom_object("onair.dev", "v1alpha1", "calltypes", "livestream").get("status")
                    or {}
                ).get("livestreams")
                == 1
            ),
            30,
            what="CallType status.livestreams",
        )

        # A spec change that removes a child: pruning deletes it.
        custom.patch_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            work_ns,
            "livestreams",
            "show",
            {"spec": {"settingsOverride": {"recording": {"mode": "disabled"}}}},
        )
        wait_for(
            lambda: "show-recorder" not in {d.metadata.name for d in apps.list_namespaced_deployment(work_ns).items},
            60,
            what="recorder Deployment pruned",
        )

        # Deletion: the operator removes its finalizer and the Livestream goes away.
        custom.delete_namespaced_custom_object("onair.dev", "v1alpha1", work_ns, "livestreams", "show")

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object("onair.dev", "v1alpha1", work_ns, "livestreams", "show")
            except client.exceptions.ApiException as e:
                return e.status == 404
            return False

        wait_for(gone, 60, what="Livestream deleted (finalizer released)")
        assert not errors, errors
        assert problems.records == [], "the API server refused the operator:\n" + "\n".join(problems.records)
    finally:
        stop.set()
        thread.join(30)
        for lg in loggers:
            lg.removeHandler(problems)
        for ns in (work_ns, op_ns):
            core.delete_namespace(ns, propagation_policy="Background")
        admin_api.close()
    assert not thread.is_alive(), "operator did not stop within 30 s"
