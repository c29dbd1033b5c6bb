"""Ways in from outside the cluster: the playback route (Ingress or HTTPRoute), the ingest Service's
exposure, and the public URLs status shows (pure rendering; the API server's view is in
tests/cluster/test_render_apiserver.py)."""

import pytest

from onair.api.operator_config import OperatorConfig
from tests.unit.test_render_children import by_kind, livestream, render

INGRESS = dict(playback_route="ingress", playback_host_template="{name}.{namespace}.live.example.com")
ROUTE = dict(
    playback_route="httproute",
    playback_host_template="live.example.com",
    playback_path_template="/{namespace}/{name}",
    playback_gateway_name="public",
    playback_gateway_namespace="gateways",
    playback_gateway_section_name="https",
    playback_https=True,
)


def test_no_route_by_default_and_status_keeps_the_in_cluster_urls():
    out = render()
    assert not by_kind(out, "Ingress") and not by_kind(out, "HTTPRoute")
    assert out.urls.playback.hls_cmaf == "http://show-origin.media.svc:8081/hls/cmaf/master.m3u8"


def test_ingress_routes_the_livestreams_host_to_the_origins_public_port_only():
    out = render(
        config=OperatorConfig(
            **INGRESS,
            playback_ingress_class="traefik",
            playback_tls_secret_template="{name}-tls",
            playback_route_annotations={"cert-manager.io/cluster-issuer": "le"},
        )
    )
    ing = by_kind(out, "Ingress")["show-playback"]
    assert ing["metadata"]["ownerReferences"][0]["kind"] == "Livestream"
    assert ing["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "le"}
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert ing["spec"]["tls"] == [{"hosts": ["show.media.live.example.com"], "secretName": "show-tls"}]
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "show.media.live.example.com"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    # The Service port named http is the public one (8081); upload (8082) and agent (8080) never.
    assert path["backend"] == {"service": {"name": "show-origin", "port": {"name": "http"}}}
    origin_ports = {p["name"]: p["port"] for p in by_kind(out, "Service")["show-origin"]["spec"]["ports"]}
    assert origin_ports["http"] == 8081
    assert out.urls.playback.hls_cmaf == "https://show.media.live.example.com/hls/cmaf/master.m3u8"
    assert out.urls.playback.player == "https://show.media.live.example.com/player"


def test_httproute_attaches_to_the_gateway_and_strips_the_path_prefix():
    out = render(config=OperatorConfig(**ROUTE))
    route = by_kind(out, "HTTPRoute")["show-playback"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["live.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/media/show"}}]
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "show-origin", "port": 8081}]
    assert rule["filters"] == [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    ]
    assert out.urls.playback.dash == "https://live.example.com/media/show/dash/manifest.mpd"


def test_httproute_on_a_host_of_its_own_needs_no_rewrite():
    out = render(
        config=OperatorConfig(
            **{**ROUTE, "playback_path_template": "/", "playback_host_template": "{name}.live.example.com"}
        )
    )
    [rule] = by_kind(out, "HTTPRoute")["show-playback"]["spec"]["rules"]
    assert "filters" not in rule and rule["matches"][0]["path"]["value"] == "/"
    assert out.urls.playback.player == "https://show.live.example.com/player"


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"ONAIR_PLAYBACK_ROUTE": "ingress"}, "needs ONAIR_PLAYBACK_HOST_TEMPLATE"),
        (
            {
                "ONAIR_PLAYBACK_ROUTE": "ingress",
                "ONAIR_PLAYBACK_HOST_TEMPLATE": "live.example.com",
                "ONAIR_PLAYBACK_PATH_TEMPLATE": "/{namespace}/{name}",
            },
            "an Ingress cannot strip a prefix",
        ),
        (
            {"ONAIR_PLAYBACK_ROUTE": "httproute", "ONAIR_PLAYBACK_HOST_TEMPLATE": "{name}.example.com"},
            "needs ONAIR_PLAYBACK_GATEWAY_NAME",
        ),
        ({"ONAIR_PLAYBACK_ROUTE": "gateway"}, "ONAIR_PLAYBACK_ROUTE"),
        (
            {"ONAIR_PLAYBACK_ROUTE": "ingress", "ONAIR_PLAYBACK_HOST_TEMPLATE": "{stream}.example.com"},
            "ONAIR_PLAYBACK_HOST_TEMPLATE",
        ),
        ({"ONAIR_INGEST_NODE_PORTS": '{"main": {"rtmpx": 30935}}'}, "ingest Service's ports are"),
        ({"ONAIR_INGEST_NODE_PORTS": '{"primary": {"rtmp": 30935}}'}, 'use "main"'),
        ({"ONAIR_INGEST_NODE_PORTS": "rtmp=30935"}, "must be JSON"),
    ],
)
def test_an_incomplete_route_or_exposure_config_says_what_to_set(env, needle):
    with pytest.raises(ValueError, match="(?s)" + needle.replace("(", r"\(")):
        OperatorConfig.from_env(env)


def test_cluster_ip_ingest_is_unchanged_by_default():
    svc = by_kind(render(), "Service")["show-ingest"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in svc["spec"] and "annotations" not in svc["metadata"]
    assert all("nodePort" not in p for p in svc["spec"]["ports"])


def test_node_port_ingest_has_stable_named_ports_and_the_urls_encoders_dial():
    config = OperatorConfig(
        ingest_service_type="NodePort",
        ingest_external_traffic_policy="Local",
        ingest_host_template="node1.example.com",
        ingest_node_ports={"main": {"rtmp": 30935, "srt": 30900}},
    )
    out = render(livestream(settingsOverride={"ingest": {"protocols": ["rtmp", "srt"], "backup": True}}), config=config)
    main, backup = by_kind(out, "Service")["show-ingest"], by_kind(out, "Service")["show-ingest-backup"]
    assert main["spec"]["type"] == "NodePort" and main["spec"]["externalTrafficPolicy"] == "Local"
    ports = {p["name"]: p for p in main["spec"]["ports"]}
    assert ports["rtmp"]["nodePort"] == 30935 and ports["rtmp"]["protocol"] == "TCP"
    assert ports["srt"]["nodePort"] == 30900 and ports["srt"]["protocol"] == "UDP"
    assert all("nodePort" not in p for p in backup["spec"]["ports"])  # allocated by Kubernetes
    assert out.urls.ingest.rtmp == "rtmp://node1.example.com:30935/live"
    assert out.urls.ingest.srt.startswith("srt://node1.example.com:30900")


def test_load_balancer_ingest_carries_the_annotations_and_service_ports():
    config = OperatorConfig(
        ingest_service_type="LoadBalancer",
        ingest_external_traffic_policy="Local",
        ingest_host_template="{name}-{slot}.ingest.example.com",
        ingest_service_annotations={"metallb.universe.tf/address-pool": "public"},
        ingest_node_ports={"main": {"rtmp": 30935}},
    )
    out = render(config=config)
    svc = by_kind(out, "Service")["show-ingest"]
    assert svc["metadata"]["annotations"] == {"metallb.universe.tf/address-pool": "public"}
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert out.urls.ingest.rtmp == "rtmp://show-main.ingest.example.com:1935/live"


def _urls(config, exposure=None, **spec):
    from onair.api.livestream import LivestreamSpec
    from onair.render.urls import render_urls

    out = render(livestream(**spec), config=config)
    return render_urls(
        "show",
        "media",
        LivestreamSpec.model_validate({"callType": "livestream", **spec}),
        out.effective,
        config,
        exposure,
    )


def test_node_port_urls_use_the_allocated_ports_on_the_ingest_pods_node():
    from onair.render.urls import ingest_exposure

    config = OperatorConfig(ingest_service_type="NodePort", ingest_node_ports={"main": {"srt": 30900}})
    service = {
        "spec": {
            "ports": [
                {"name": "rtmp", "port": 1935, "nodePort": 31935},
                {"name": "srt", "port": 9998, "nodePort": 30900, "protocol": "UDP"},
            ]
        }
    }
    # Before Kubernetes allocated anything (or the pod has a node): the in-cluster URL.
    assert _urls(config).ingest.rtmp == "rtmp://show-ingest.media.svc:1935/live"
    assert (
        _urls(config, {"main": ingest_exposure(service, None)}).ingest.rtmp == "rtmp://show-ingest.media.svc:1935/live"
    )
    urls = _urls(config, {"main": ingest_exposure(service, "192.0.2.10")})
    assert urls.ingest.rtmp == "rtmp://192.0.2.10:31935/live"
    assert urls.ingest.srt.startswith("srt://192.0.2.10:30900")


def test_load_balancer_urls_use_its_address_unless_a_host_template_names_it():
    from onair.render.urls import ingest_exposure

    config = OperatorConfig(ingest_service_type="LoadBalancer")
    pending = {"spec": {"ports": [{"name": "rtmp", "port": 1935, "nodePort": 31935}]}, "status": {"loadBalancer": {}}}
    assert (
        _urls(config, {"main": ingest_exposure(pending, "10.0.0.5")}).ingest.rtmp
        == "rtmp://show-ingest.media.svc:1935/live"
    )
    ready = {**pending, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}
    assert _urls(config, {"main": ingest_exposure(ready, "10.0.0.5")}).ingest.rtmp == "rtmp://203.0.113.7:1935/live"
    named = OperatorConfig(ingest_service_type="LoadBalancer", ingest_host_template="{name}.ingest.example.com")
    assert (
        _urls(named, {"main": ingest_exposure(ready, None)}).ingest.rtmp == "rtmp://show.ingest.example.com:1935/live"
    )


def test_every_child_kind_is_watched_or_looked_for_after_a_start():
    """A kind in neither list would never be pruned once the operator restarted."""
    from onair.controller.apply import UNWATCHED_CHILD_KINDS
    from onair.kube import KINDS
    from onair.controller.kopf_settings import CHILD_RESOURCES
    from onair.render.children import CHILD_KINDS

    watched = {(f"{g}/{v}" if g else v, plural) for g, v, plural in CHILD_RESOURCES}
    for api_version, kind in CHILD_KINDS:
        plural = KINDS[(api_version, kind)].plural
        assert ((api_version, plural) in watched) != (kind in UNWATCHED_CHILD_KINDS), kind
