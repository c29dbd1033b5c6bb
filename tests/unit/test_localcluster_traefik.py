"""What onair.localcluster.traefik installs, checked without a cluster (the node test runs it)."""

from __future__ import annotations

from onair.localcluster import traefik


def _by_kind(kind: str) -> list[dict]:
    return [d for d in traefik.documents("onair.local/traefik:v0") if d["kind"] == kind]


def test_gateway_listener_port_is_an_entrypoint_of_traefik():
    # Traefik binds a listener to the entry point whose address ends in the listener's port;
    # any other port leaves the Gateway unprogrammed.
    [gateway] = _by_kind("Gateway")
    [listener] = gateway["spec"]["listeners"]
    assert f"--entryPoints.web.address=:{listener['port']}" in traefik.traefik_args()
    assert listener["protocol"] == "HTTP" and listener["name"] == traefik.GATEWAY_LISTENER
    assert listener["allowedRoutes"] == {"namespaces": {"from": "All"}}
    assert gateway["spec"]["gatewayClassName"] == traefik.GATEWAY_CLASS
    [gateway_class] = _by_kind("GatewayClass")
    assert gateway_class["spec"]["controllerName"] == traefik.GATEWAY_CONTROLLER
    [ingress_class] = _by_kind("IngressClass")
    assert ingress_class["metadata"]["name"] == traefik.INGRESS_CLASS
    assert ingress_class["spec"]["controller"] == traefik.INGRESS_CONTROLLER


def test_the_pod_passes_the_restricted_pod_security_standard():
    [ns] = _by_kind("Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    [deployment] = _by_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    [container] = spec["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert all(p["containerPort"] >= 1024 and "hostPort" not in p for p in container["ports"])
    assert container["imagePullPolicy"] == "Never"


def test_rbac_lets_both_providers_read_routes_and_write_their_status():
    rules = traefik.cluster_role_rules()

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)

    for resource in ("ingresses", "ingressclasses"):
        assert allowed("networking.k8s.io", resource, "watch")
    assert allowed("networking.k8s.io", "ingresses/status", "update")
    for resource in ("gatewayclasses", "gateways", "httproutes", "referencegrants", "backendtlspolicies"):
        assert allowed("gateway.networking.k8s.io", resource, "watch")
        assert allowed("gateway.networking.k8s.io", f"{resource}/status", "update")
    assert allowed("", "services", "watch") and allowed("discovery.k8s.io", "endpointslices", "watch")
    assert allowed("", "namespaces", "watch")
    # The Ingress provider blocks on its Node informer: without this it never handles an Ingress.
    assert allowed("", "nodes", "watch")


def test_statuses_name_the_published_load_balancer_service():
    [service] = _by_kind("Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in service["spec"]["ports"]] == [traefik.HTTP_PORT]
    args = traefik.traefik_args()
    name = service["metadata"]["name"]
    assert f"--providers.kubernetesingress.ingressendpoint.publishedservice={traefik.NAMESPACE}/{name}" in args
    assert f"--providers.kubernetesgateway.statusaddress.service.name={name}" in args
    assert "--global.checkNewVersion=false" in args and "--global.sendAnonymousUsage=false" in args
