"""Rendered children against a real kube-apiserver: schema validation, PodSecurity "restricted"
admission, and server-side apply idempotence (re-applying the same render changes nothing)."""

from __future__ import annotations

import json
import time
from typing import Optional

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from onair.api.calltype import CallType
from onair.api.operator_config import OperatorConfig
from onair.api.meta import MANAGER
from onair.render.children import RenderedChildren, render_children
from onair.render.credentials import Credentials

pytestmark = pytest.mark.cluster

CREDS = Credentials(
    stream_key="streamkey0123",
    srt_passphrase="srtpassphrase0123",
    whip_token="whiptoken0123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)
UID = "6f1c1f8e-0000-4000-8000-000000000002"
PLURALS = {
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Deployment": "deployments",
    "NetworkPolicy": "networkpolicies",
    "Ingress": "ingresses",
    "HTTPRoute": "httproutes",
}


def render(
    namespace: str, settings: Optional[dict] = None, config: Optional[OperatorConfig] = None, uid: str = UID, **spec
) -> RenderedChildren:
    ls = {"metadata": {"name": "show", "namespace": namespace, "uid": uid}, "spec": {"callType": "livestream", **spec}}
    ct = CallType.model_validate({"spec": {"settings": settings or {}}})
    return render_children(ls, ct, config or OperatorConfig(), CREDS)


def path(obj: dict) -> str:
    group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    return f"{group}/namespaces/{obj['metadata']['namespace']}/{PLURALS[obj['kind']]}/{obj['metadata']['name']}"


def request(
    api: client.ApiClient,
    method: str,
    url_path: str,
    body: Optional[dict] = None,
    query: Optional[list] = None,
    content_type: str = "application/json",
) -> dict:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    _, url, headers, payload, _ = api.param_serialize(
        method, url_path, query_params=query, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=10)
    data = resp.read()
    if not 200 <= resp.status < 300:
        raise ApiException(http_resp=resp)
    return json.loads(data)


def apply(api: client.ApiClient, obj: dict, dry_run: bool = False) -> dict:
    query = [("fieldManager", MANAGER), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
    return request(api, "PATCH", path(obj), obj, query, "application/apply-patch+yaml")


def restrict(api: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(api).patch_namespace(
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


VARIANTS = {
    "default": {},
    "backup-tls-loadbalancer": {
        "settings": {"ingest": {"backup": True}},
        "config": OperatorConfig(
            ingest_tls_secret="ingest-tls",
            ingest_service_type="LoadBalancer",
            image_pull_secrets=["regcred"],
            storage_class="standard",
            agent_metrics_from=[
                {
                    "namespaceSelector": {"matchLabels": {"team": "mon"}},
                    "podSelector": {"matchLabels": {"app": "prometheus"}},
                },
                {"ipBlock": {"cidr": "10.0.0.0/8"}},
            ],
        ),
    },
    "ingress-nodeport": {
        "settings": {"ingest": {"backup": True, "protocols": ["rtmp", "srt", "whip"]}},
        "config": OperatorConfig(
            playback_route="ingress",
            playback_host_template="{name}.{namespace}.live.example.com",
            playback_ingress_class="traefik",
            playback_tls_secret_template="{name}-tls",
            playback_route_annotations={"cert-manager.io/cluster-issuer": "letsencrypt"},
            ingest_service_type="NodePort",
            ingest_external_traffic_policy="Local",
            ingest_service_annotations={"example.com/exposed": "true"},
            ingest_node_ports={"main": {"rtmp": 30935, "srt": 30900, "whip": 30980}},
        ),
    },
    "pull-transcoded-recording": {
        "settings": {"recording": {"mode": "auto-on", "type": "transcoded"}},
        "source": {"mode": "pull", "uris": ["https://example.org/live.m3u8"]},
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_api_server_accepts_every_rendered_object_and_restricted_pods(kube_api, namespace, variant):
    restrict(kube_api, namespace)
    rendered = render(namespace, **VARIANTS[variant])
    for obj in rendered.objects + rendered.keep:
        try:
            apply(kube_api, obj, dry_run=True)
        except ApiException as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} rejected: {exc.body}")
    core = client.CoreV1Api(kube_api)
    for dep in (o for o in rendered.objects if o["kind"] == "Deployment"):
        template = dep["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": dep["metadata"]["name"], "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as exc:
            pytest.fail(f"pod of {dep['metadata']['name']} violates PodSecurity restricted: {exc.body}")


@pytest.fixture(scope="module")
def gateway_api(kube_api):
    """The Gateway API's standard CRDs at the pinned version (onair.localcluster.versions)."""
    import yaml

    from onair.localcluster import build

    ext = client.ApiextensionsV1Api(kube_api)
    for path_ in build.gateway_api_crds():
        crd = yaml.safe_load(path_.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("httproutes.gateway.networking.k8s.io")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return
        time.sleep(0.2)
    pytest.fail("the HTTPRoute CRD never became Established")


@pytest.mark.parametrize("path_template", ["/", "/{namespace}/{name}"])
def test_api_server_accepts_the_rendered_httproute(kube_api, namespace, gateway_api, path_template):
    config = OperatorConfig(
        playback_route="httproute",
        playback_host_template="live.example.com",
        playback_path_template=path_template,
        playback_gateway_name="public",
        playback_gateway_namespace="gateways",
        playback_gateway_section_name="https",
        playback_https=True,
    )
    [route] = [o for o in render(namespace, config=config).objects if o["kind"] == "HTTPRoute"]
    try:
        stored = apply(kube_api, route)
    except ApiException as exc:
        pytest.fail(f"HTTPRoute rejected: {exc.body}")
    assert stored["spec"]["rules"][0]["backendRefs"][0]["port"] == 8081
    assert stored["spec"]["parentRefs"][0]["name"] == "public"


def test_api_server_keeps_the_fixed_node_ports_and_allocates_the_others(kube_api, namespace):
    config = VARIANTS["ingress-nodeport"]["config"]
    # A real owner: the garbage collector deletes children of a missing one (and a re-created
    # Service gets new nodePorts).
    uid = create_owner(kube_api, namespace)
    rendered = render(
        namespace, settings={"ingest": {"backup": True, "protocols": ["rtmp", "srt"]}}, config=config, uid=uid
    )
    stored = {}
    for svc in (o for o in rendered.objects if o["kind"] == "Service"):
        stored[svc["metadata"]["name"]] = apply(kube_api, svc)
    main = {p["name"]: p for p in stored["show-ingest"]["spec"]["ports"]}
    assert (main["rtmp"]["nodePort"], main["srt"]["nodePort"]) == (30935, 30900)
    assert main["srt"]["protocol"] == "UDP"
    assert stored["show-ingest"]["spec"]["externalTrafficPolicy"] == "Local"
    backup = {p["name"]: p for p in stored["show-ingest-backup"]["spec"]["ports"]}
    assert all(30000 <= p["nodePort"] <= 32767 for p in backup.values())
    # No node address known to a pure render: the in-cluster URL (cluster DNS, Service port).
    assert rendered.urls.ingest.rtmp == f"rtmp://show-ingest.{namespace}.svc:1935/live"
    # Re-applying the same render keeps the allocated ports (the operator does not own them).
    again = apply(
        kube_api,
        next(o for o in rendered.objects if o["kind"] == "Service" and o["metadata"]["name"] == "show-ingest-backup"),
    )
    assert {p["name"]: p["nodePort"] for p in again["spec"]["ports"]} == {n: p["nodePort"] for n, p in backup.items()}


def test_pod_security_admission_is_really_enforcing(kube_api, namespace):
    """Guards the test above: a root pod is refused in the same kind of namespace."""
    restrict(kube_api, namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
    }
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(kube_api).create_namespaced_pod(namespace, pod, dry_run="All")
    assert info.value.status == 403 and "PodSecurity" in info.value.body


def versions(api: client.ApiClient, objects: list[dict]) -> dict[str, tuple]:
    """What an apply can move: the spec generation and the operator's managedFields entry (its
    timestamp changes on every apply that changes anything). resourceVersion is no use: the
    Deployment controller bumps it with status updates, so it only counts for kinds no controller
    writes to here."""
    out = {}
    for obj in objects:
        meta = request(api, "GET", path(obj))["metadata"]
        ours = [m for m in meta["managedFields"] if m["manager"] == MANAGER and m["operation"] == "Apply"]
        rv = meta["resourceVersion"] if obj["kind"] in ("ConfigMap", "Secret", "Service") else None
        out[f"{obj['kind']}/{obj['metadata']['name']}"] = (meta.get("generation"), rv, json.dumps(ours, sort_keys=True))
    return out


def create_owner(api: client.ApiClient, namespace: str) -> str:
    """A real Livestream to own the children: the garbage collector deletes objects whose owner
    does not exist. Nothing reconciles it here (no operator runs in this test)."""
    body = {
        "apiVersion": "onair.dev/v1alpha1",
        "kind": "Livestream",
        "metadata": {"name": "show"},
        "spec": {"callType": "livestream"},
    }
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        "onair.dev", "v1alpha1", namespace, "livestreams", body
    )
    return created["metadata"]["uid"]


def test_reapplying_the_same_render_is_a_no_op_and_a_change_touches_only_its_objects(kube_api, namespace):
    uid = create_owner(kube_api, namespace)
    first = render(namespace, settings={"ingest": {"backup": True}}, uid=uid)
    for obj in first.objects:
        apply(kube_api, obj)
    before = versions(kube_api, first.objects)

    again = render(namespace, settings={"ingest": {"backup": True}}, uid=uid)
    for obj in again.objects:
        apply(kube_api, obj)
    assert versions(kube_api, again.objects) == before

    # A shorter DVR window changes the origin's config (and so its pod template) and nothing else.
    changed = render(namespace, settings={"ingest": {"backup": True}, "dvr": {"durationSeconds": 600}}, uid=uid)
    for obj in changed.objects:
        if obj["kind"] != "PersistentVolumeClaim":  # create-only
            apply(kube_api, obj)
    after = versions(kube_api, changed.objects)
    moved = {k for k in after if after[k] != before[k]}
    assert moved == {"ConfigMap/show-origin", "Deployment/show-origin"}
