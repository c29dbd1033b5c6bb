"""The chart as Helm renders it: lint, schema, RBAC, pod security, operator env, manifests/.

Needs the pinned helm binary (`onair localcluster build helm`, which scripts/install-deps runs).
Without it these tests skip on a developer machine and fail in CI, where it is always built.
"""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from onair.packaging import manifests

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "onair"


def _helm() -> Path | None:
    try:
        path = manifests.find_helm()
    except manifests.HelmMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build helm: {e}")
        return None
    return path if path.is_file() else None


HELM = _helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not built yet: run `onair localcluster build helm`")


def render(
    *args: str, namespace: str = "onair-system", crds: bool = False, values: dict | None = None, tmp: Path | None = None
) -> list[dict]:
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args = (*args, "--values", str(path))
    out = manifests.template(*args, namespace=namespace, include_crds=crds, helm_bin=HELM)
    return [d for d in yaml.safe_load_all(out) if d]


def helm_fails(*args: str) -> str:
    proc = manifests.helm("template", "x", str(CHART), "--kube-version", manifests.kube_version(), *args, helm_bin=HELM)
    assert proc.returncode != 0, f"helm accepted {args}"
    return proc.stderr


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


MEMBER_ROLE_SUFFIX = "-livestream-member"  # templates/capabilities.yaml: for people, not the operator


def for_people(doc: dict) -> bool:
    """The member-role ClusterRole and those aggregated into view/edit/admin grant people, not the operator."""
    labels = doc["metadata"].get("labels") or {}
    return doc["kind"] == "ClusterRole" and (
        doc["metadata"]["name"].endswith(MEMBER_ROLE_SUFFIX)
        or any(key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels)
    )


def operator_rbac(docs: list[dict]) -> list[dict]:
    """The chart's objects without the ClusterRoles for people."""
    return [d for d in docs if not for_people(d)]


def only(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


NON_DEFAULT = (
    "--set",
    "watchNamespaces={team-a,team-b}",
    "--set",
    "builtinCallTypes.development.enabled=false",
    "--set",
    "image.digest=sha256:" + "a" * 64,
    "--set",
    "operator.logLevel=debug",
    "--set",
    "livestreams.ingest.serviceType=LoadBalancer",
    "--set",
    "livestreams.resources.transcoder.limits.cpu=6",
    "--set",
    "serviceAccount.name=streams",
    "--set",
    "fullnameOverride=media",
)


# ----------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize(
    "extra", [(), NON_DEFAULT, ("--set", "rbac.create=false", "--set", "serviceAccount.create=false")]
)
def test_helm_lint_passes(extra):
    proc = manifests.helm(
        "lint", "--strict", str(CHART), "--kube-version", manifests.kube_version(), *extra, helm_bin=HELM
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, complaint",
    [
        (("--set", "operator.logLevel=loud"), "logLevel"),
        (("--set", "watchNamespace={a}"), "watchNamespace"),
        (("--set", "builtinCallTypes.audio_room.enabled=true"), "audio_room"),
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "livestreams.resources.encoder.limits.cpu=1"), "encoder"),
        (("--set", "watchNamespaces={Bad_Name}"), "watchNamespaces"),
        (("--set", "livestreams.playback.trustedProxies={ingress-controller}"), "trustedProxies"),
    ],
)
def test_schema_rejects_bad_values_in_helm(args, complaint):
    err = helm_fails(*args)
    assert "schema" in err and complaint in err, err


# ----------------------------------------------------------------------------- RBAC

NAMESPACED = {
    ("onair.dev", "livestreams"): {"get", "list", "watch", "patch"},
    ("onair.dev", "livestreams/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "create", "delete"},
    ("onair.dev", "recordings"): {"get", "list", "watch", "create", "patch"},
    ("onair.dev", "recordings/status"): {"patch"},
    ("", "events"): {"create"},
    ("events.k8s.io", "events"): {"create"},
}
CLUSTER = {
    ("onair.dev", "calltypes"): {"get", "list", "watch"},
    ("onair.dev", "calltypes/status"): {"patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def all_rule_strings(role: dict) -> list[str]:
    return [s for rule in role["rules"] for key in ("apiGroups", "resources", "verbs") for s in rule.get(key, [])]


@pytest.mark.parametrize("extra", [(), NON_DEFAULT])
def test_rbac_has_no_wildcard_and_no_escalation_verbs(extra):
    docs = render(*extra)
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    assert roles
    for role in roles:
        strings = all_rule_strings(role)
        assert not any("*" in s for s in strings), role["metadata"]["name"]
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(strings)


def test_cluster_wide_rbac_is_exactly_what_the_operator_calls():
    docs = operator_rbac(render())
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == []
    role = only(docs, "ClusterRole")
    assert grants(role) == {**NAMESPACED, **CLUSTER}
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = only(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "onair-system"}
    ]
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_watch_namespaces_gets_a_role_per_namespace_and_keeps_only_cluster_reads_cluster_wide():
    docs = operator_rbac(render("--set", "watchNamespaces={team-a,team-b}", namespace="ops"))
    assert grants(only(docs, "ClusterRole")) == CLUSTER
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert grants(role) == NAMESPACED
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "onair-operator", "namespace": "ops"}]
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_rbac_and_service_account_can_be_brought_along():
    docs = operator_rbac(
        render(
            "--set", "rbac.create=false", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=mine"
        )
    )
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & {
        d["kind"] for d in docs
    }
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# ----------------------------------------------------------------------------- pods

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        if d["kind"] in POD_KINDS:
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d["metadata"]["name"], d["spec"]))
    return out


TURN_ON = (
    "--set",
    "turn.enabled=true",
    "--set",
    "turn.publicHost=turn.example.com",
    "--set",
    "turn.service.type=NodePort",
    "--set",
    "turn.service.nodePort=30478",
)


@pytest.mark.parametrize("extra", [(), NON_DEFAULT, TURN_ON])
def test_every_pod_template_meets_the_restricted_pod_security_standard(extra):
    specs = pod_specs(render(*extra))
    assert specs
    for name, spec in specs:
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("runAsUser") == 10001, name
        assert psc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, (name, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (name, c["name"])
            assert sc.get("capabilities") == {"drop": ["ALL"]}, (name, c["name"])
            assert not sc.get("privileged"), (name, c["name"])
            assert sc.get("runAsUser", 10001) == 10001 and sc.get("runAsNonRoot", True) is True
            assert c["resources"].get("requests") and c["resources"].get("limits"), (name, c["name"])


def test_operator_is_one_recreated_standalone_kopf_replica_with_liveness_probes():
    dep = only(render(), "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/onair-dev/onair:0.1.0"
    # Explicit command: args alone would follow the image's ENTRYPOINT (`onair onair run`).
    assert c["command"] == ["onair"]
    assert c["args"][0] == "run"
    assert "--all-namespaces" in c["args"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    assert {"name": "metrics", "containerPort": 8090, "protocol": "TCP"} in c["ports"]
    # The root filesystem is read-only, so every writable path is a volume.
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in dep["spec"]["selector"]["matchLabels"].items())


@pytest.mark.parametrize(
    "extra",
    [("--set", "watchNamespaces={a,b}", "--set", "operator.logLevel=verbose"), ("--set", "operator.logLevel=debug")],
)
def test_the_run_args_are_accepted_by_onair_run(extra):
    """The real `onair run` parses the chart's args and gets as far as looking for credentials
    (an unknown flag would stop it at argument parsing, with exit code 2)."""
    c = only(render(*extra), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = c["command"] + c["args"]
    assert args[:2] == ["onair", "run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONAIR_") and k != "KUBECONFIG"}
    proc = subprocess.run(
        ["onair", "run", *args[2:], "--kubeconfig", "/nonexistent/kubeconfig"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "unrecognized arguments" not in proc.stderr and "error:" not in proc.stderr.split("credentials")[0], (
        proc.stderr
    )
    assert proc.returncode == 1 and "cannot find cluster credentials" in proc.stderr, proc.stderr


def env_of(docs: list[dict]) -> dict[str, str]:
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_operator_env_is_what_the_operator_config_reads(tmp_path):
    from onair.api.operator_config import OperatorConfig

    docs = render(
        values={
            "image": {"repository": "ghcr.io/onair-dev/onair", "tag": "1.2.3", "pullPolicy": "Always"},
            "livestreams": {
                "imagePullSecrets": ["regcred"],
                "ingest": {
                    "serviceType": "LoadBalancer",
                    "hostTemplate": "{service}.live.example.com",
                    "tlsSecret": "live-tls",
                    "whipIceServers": ["stun:stun.example.com:3478", "turn:turn.example.com"],
                },
                "playback": {"baseUrlTemplate": "https://play.example.com/{namespace}/{name}"},
                "storage": {"storageClass": "fast", "dvrVolumeSize": "20Gi"},
                "resources": {"transcoder": {"limits": {"cpu": 6}, "requests": {"memory": "1Gi"}}},
                "statusPollIntervalSeconds": 2.5,
            },
        },
        tmp=tmp_path,
    )
    env = env_of(docs)
    assert all(k.startswith("ONAIR_") for k in env)
    config = OperatorConfig.from_env(env)
    assert config.image == "ghcr.io/onair-dev/onair:1.2.3"
    assert config.image_pull_policy == "Always"
    assert config.image_pull_secrets == ["regcred"]
    assert config.ingest_service_type == "LoadBalancer"
    assert config.ingest_host("show", "team") == "show-ingest.live.example.com"
    assert config.ingest_tls_secret == "live-tls"
    assert config.whip_ice_servers == ["stun:stun.example.com:3478", "turn:turn.example.com"]
    assert config.playback_base_url("show", "team") == "https://play.example.com/team/show"
    assert config.storage_class == "fast"
    assert config.dvr_volume_size == "20Gi"
    assert config.resources_for("transcoder").limits == {"cpu": "6"}
    assert config.resources_for("transcoder").requests == {"memory": "1Gi"}
    assert config.resources_for("ingest") == OperatorConfig().resources_for("ingest")
    assert config.status_poll_interval_seconds == 2.5


def test_ways_in_values_become_the_operator_config(tmp_path):
    from onair.api.operator_config import OperatorConfig

    env = env_of(
        render(
            values={
                "livestreams": {
                    "ingest": {
                        "serviceType": "NodePort",
                        "hostTemplate": "node1.example.com",
                        "externalTrafficPolicy": "Local",
                        "serviceAnnotations": {"metallb.universe.tf/address-pool": "public"},
                        "nodePorts": {"main": {"rtmp": 30935, "srt": 30900}},
                    },
                    "playback": {
                        "route": {
                            "kind": "httproute",
                            "hostTemplate": "live.example.com",
                            "pathTemplate": "/{namespace}/{name}",
                            "https": True,
                            "annotations": {"example.com/team": "video"},
                            "gateway": {"name": "public", "namespace": "gateways", "sectionName": "https"},
                        },
                        "trustedProxies": ["10.42.0.0/16", "2001:db8::/32"],
                    },
                }
            },
            tmp=tmp_path,
        )
    )
    config = OperatorConfig.from_env(env)
    assert config.ingest_external_traffic_policy == "Local"
    assert config.ingest_service_annotations == {"metallb.universe.tf/address-pool": "public"}
    assert config.ingest_node_ports == {"main": {"rtmp": 30935, "srt": 30900}}
    assert config.playback_route == "httproute"
    assert (config.playback_gateway_name, config.playback_gateway_namespace, config.playback_gateway_section_name) == (
        "public",
        "gateways",
        "https",
    )
    assert config.playback_route_annotations == {"example.com/team": "video"}
    assert config.playback_base_url("show", "team") == "https://live.example.com/team/show"
    assert config.playback_trusted_proxies == ["10.42.0.0/16", "2001:db8::/32"]

    env = env_of(
        render(
            values={
                "livestreams": {
                    "playback": {
                        "route": {
                            "kind": "ingress",
                            "hostTemplate": "{name}.{namespace}.live.example.com",
                            "ingressClassName": "traefik",
                            "tlsSecretTemplate": "{name}-tls",
                        }
                    }
                }
            },
            tmp=tmp_path,
        )
    )
    config = OperatorConfig.from_env(env)
    assert config.playback_ingress_class == "traefik" and config.playback_tls_secret("show", "team") == "show-tls"
    assert config.playback_base_url("show", "team") == "https://show.team.live.example.com"


def test_a_route_without_a_host_is_refused_by_helm():
    assert "hostTemplate is required" in helm_fails("--set", "livestreams.playback.route.kind=ingress")
    assert "kind" in helm_fails("--set", "livestreams.playback.route.kind=gateway")


def test_default_env_keeps_the_operator_defaults_except_the_image_and_who_the_operator_is():
    from onair.api.operator_config import OperatorConfig

    env = env_of(render())
    assert set(env) == {
        "ONAIR_IMAGE",
        "ONAIR_IMAGE_PULL_POLICY",
        "ONAIR_OPERATOR_NAMESPACE",
        "ONAIR_OPERATOR_POD_LABELS",
        "ONAIR_METRICS_PORT",
    }
    config = OperatorConfig.from_env(env)
    defaults = OperatorConfig()
    mine = {"image", "operator_pod_labels", "metrics_port"}
    assert config.metrics_port == 8090 and defaults.metrics_port is None
    assert config.model_dump(exclude=mine) == defaults.model_dump(exclude=mine)
    assert config.image == "ghcr.io/onair-dev/onair:0.1.0"
    assert config.network_policies is True and config.agent_metrics_from == []


def test_media_pod_network_policies_admit_exactly_the_operator_pod(tmp_path):
    """The operator's labels and namespace, as the chart sets them, select the operator's pod: the
    NetworkPolicies it renders for agent ports let this pod in."""
    from onair.api.operator_config import OperatorConfig

    docs = render("--set", "fullnameOverride=media", namespace="streaming")
    config = OperatorConfig.from_env(env_of(docs))
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert config.operator_namespace == "streaming"
    assert config.operator_pod_labels.items() <= pod_labels.items()
    assert config.operator_pod_labels["app.kubernetes.io/instance"] == "onair"  # not another release's operator

    scrapers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    off = render(values={"networkPolicy": {"enabled": False, "agentMetricsFrom": scrapers}}, tmp=tmp_path)
    config = OperatorConfig.from_env(env_of(off))
    assert config.network_policies is False and config.agent_metrics_from == scrapers
    assert by_kind(off, "NetworkPolicy") == []


def test_the_operator_pod_accepts_no_connections():
    docs = render()
    policy = only(docs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == "onair-system"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": only(docs, "Deployment")["spec"]["selector"]["matchLabels"]},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }


def test_prometheus_peers_reach_the_operator_only_on_its_metrics_port(tmp_path):
    scrapers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    docs = render(values={"networkPolicy": {"agentMetricsFrom": scrapers}}, tmp=tmp_path)
    policy = only(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [{"from": scrapers, "ports": [{"port": "metrics", "protocol": "TCP"}]}]
    off = render(
        values={"networkPolicy": {"agentMetricsFrom": scrapers}, "metrics": {"operator": {"enabled": False}}},
        tmp=tmp_path,
    )
    assert only(off, "NetworkPolicy")["spec"]["ingress"] == []


def test_schema_rejects_a_metrics_peer_that_is_not_one():
    err = helm_fails("--set", "networkPolicy.agentMetricsFrom[0].namespace=monitoring")
    assert "schema" in err and "agentMetricsFrom" in err, err


def test_digest_pins_the_operator_and_the_agents():
    docs = render("--set", "image.digest=sha256:" + "b" * 64)
    image = "ghcr.io/onair-dev/onair@sha256:" + "b" * 64
    assert only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert env_of(docs)["ONAIR_IMAGE"] == image


# ----------------------------------------------------------------------------- CallTypes, CRDs


def test_builtin_calltypes_are_the_files_and_follow_their_toggles():
    docs = render()
    calltypes = {d["metadata"]["name"]: d for d in by_kind(docs, "CallType")}
    assert sorted(calltypes) == ["default", "development", "livestream"]
    for name, obj in calltypes.items():
        source = yaml.safe_load((CHART / "files" / "calltypes" / f"{name}.yaml").read_text())
        assert obj["spec"] == source["spec"]
        assert obj["metadata"]["labels"]["onair.dev/builtin"] == "true"
    off = render(
        "--set", "builtinCallTypes.development.enabled=false", "--set", "builtinCallTypes.default.enabled=false"
    )
    assert [d["metadata"]["name"] for d in by_kind(off, "CallType")] == ["livestream"]


def test_crds_come_only_from_the_crds_directory():
    assert by_kind(render(), "CustomResourceDefinition") == []
    crds = by_kind(render(crds=True), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "calltypes.onair.dev",
        "livestreams.onair.dev",
        "recordings.onair.dev",
    ]
    for c in crds:
        assert "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {})


# ----------------------------------------------------------------------------- manifests/


def test_recordings_are_read_by_members_and_viewers_and_deleted_only_by_editors_and_admins():
    docs = render()
    member = next(d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith(MEMBER_ROLE_SUFFIX))
    assert grants(member)[("onair.dev", "recordings")] == {"get", "list", "watch"}
    aggregated = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole") if for_people(d)}
    view = aggregated["onair-aggregate-to-view"]
    assert {k for k, v in view["metadata"]["labels"].items() if v == "true"} == {
        f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("view", "edit", "admin")
    }
    assert grants(view) == {
        ("onair.dev", "livestreams"): {"get", "list", "watch"},
        ("onair.dev", "recordings"): {"get", "list", "watch"},
    }
    edit = aggregated["onair-aggregate-to-edit"]
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert grants(edit)[("onair.dev", "recordings")] == {"delete"}
    assert not [
        d
        for d in render("--set", "rbac.aggregateToDefaultRoles=false")
        if for_people(d) and not d["metadata"]["name"].endswith(MEMBER_ROLE_SUFFIX)
    ]


def test_member_role_capabilities_can_be_switched_off_and_follow_the_group_prefix():
    assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & {
        d["kind"] for d in render("--set", "capabilities.enabled=false")
    }
    assert not [
        d
        for d in by_kind(render("--set", "capabilities.enabled=false"), "ClusterRole")
        if d["metadata"]["name"].endswith(MEMBER_ROLE_SUFFIX)
    ]
    policies = by_kind(render("--set", "capabilities.groupPrefix=oidc:onair-"), "ValidatingAdmissionPolicy")
    assert sorted(p["metadata"]["name"] for p in policies) == ["onair-capabilities", "onair-member-fields"]
    for policy in policies:
        assert (
            policy["spec"]["matchConditions"][0]["expression"]
            == 'request.userInfo.groups.exists(g, g.startsWith("oidc:onair-"))'
        )
    capabilities = next(p for p in policies if p["metadata"]["name"].endswith("-capabilities"))
    roles = next(v for v in capabilities["spec"]["variables"] if v["name"] == "roles")["expression"]
    assert "g.substring(11)" in roles


def test_committed_manifests_are_fresh():
    assert manifests.stale_manifests(helm_bin=HELM) == [], "run scripts/generate-manifests and commit manifests/"


def test_manifests_split_crds_operator_and_calltypes_without_helm_bookkeeping():
    rendered = manifests.render_manifests(helm_bin=HELM)
    kinds = {name: [d["kind"] for d in yaml.safe_load_all(text) if d] for name, text in rendered.items()}
    assert kinds["crds.yaml"] == ["CustomResourceDefinition"] * 3
    assert kinds["builtin-calltypes.yaml"] == ["CallType"] * 3
    assert kinds["onair.yaml"][0] == "Namespace"
    assert set(kinds["onair.yaml"]) == {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for text in rendered.values():
        assert "helm.sh/chart" not in text and "managed-by: Helm" not in text
    ns = yaml.safe_load(rendered["onair.yaml"].split("---", 1)[0])
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_agents_pod_monitor_is_off_by_default_and_selects_the_media_pods_agent_port(tmp_path):
    from onair.api.meta import LABEL_ROLE, labels

    assert by_kind(render(), "PodMonitor") == []
    monitor = only(
        render(values={"metrics": {"podMonitor": {"enabled": True, "labels": {"release": "prom"}}}}, tmp=tmp_path),
        "PodMonitor",
    )
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "agent", "path": "/metrics", "interval": "30s"}]
    # The selector matches the labels the operator gives every media pod, and only those.
    pod_labels = {**labels("show", "ingest"), LABEL_ROLE: "ingest"}
    selector = monitor["spec"]["selector"]
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert [e["key"] for e in selector["matchExpressions"]] == [LABEL_ROLE]
    scoped = only(render("--set", "watchNamespaces={media}", "--set", "metrics.podMonitor.enabled=true"), "PodMonitor")
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["media"]}


def test_operator_metrics_service_selects_the_operator_pod_on_the_port_the_operator_serves(tmp_path):
    from onair.api.operator_config import OperatorConfig

    docs = render("--set", "metrics.operator.port=9123", "--set", "fullnameOverride=media")
    service = only(docs, "Service")
    dep = only(docs, "Deployment")
    pod = dep["spec"]["template"]
    assert service["metadata"]["name"] == "media-operator-metrics"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9123, "targetPort": "metrics", "protocol": "TCP"}]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    # The container port the Service targets is the one the operator binds (ONAIR_METRICS_PORT).
    assert ports["metrics"] == OperatorConfig.from_env(env_of(docs)).metrics_port == 9123

    off = render("--set", "metrics.operator.enabled=false")
    assert by_kind(off, "Service") == []
    assert "ONAIR_METRICS_PORT" not in env_of(off)
    assert [p["name"] for p in only(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]] == [
        "healthz"
    ]


def test_operator_service_monitor_is_off_by_default_and_scrapes_the_metrics_service(tmp_path):
    assert by_kind(render(), "ServiceMonitor") == []
    docs = render(
        values={"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "15s"}}},
        tmp=tmp_path,
        namespace="ops",
    )
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["namespace"] == "ops" and monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # Only the metrics Service: the selector names its component, which no other object of the chart carries.
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator-metrics"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    err = helm_fails("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.operator.enabled=false")
    assert "metrics.serviceMonitor.enabled needs metrics.operator.enabled" in err


def test_schema_keeps_the_operator_metrics_port_off_the_health_port():
    err = helm_fails("--set", "metrics.operator.port=8080")
    assert "schema" in err and "port" in err, err


# ----------------------------------------------------------------------------- the TURN relay
def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_turn_relay_is_off_by_default():
    docs = render()
    assert not [d for d in docs if d["metadata"]["name"].endswith("-turn")]
    assert not [k for k in env_of(docs) if "TURN" in k or k == "ONAIR_WHIP_INGEST_ICE_SERVERS"]


def test_turn_relay_gives_the_operator_its_public_urls_its_cluster_address_and_its_secret():
    from onair.api.operator_config import OperatorConfig

    docs = render(*TURN_ON, "--set", "livestreams.ingest.whipIceServers={stun:stun.example.com}")
    operator = named(docs, "Deployment", "onair-operator")
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    config = OperatorConfig.from_env({k: v for k, v in env.items() if k.startswith("ONAIR_")})
    assert config.whip_ice_servers == [
        "stun:stun.example.com",
        "turn:turn.example.com:30478?transport=udp",
        "turn:turn.example.com:30478?transport=tcp",
    ]
    assert config.whip_ingest_ice_servers == ["turn:onair-turn.onair-system.svc:3478?transport=udp"]
    assert config.whip_turn_secret_file == "/etc/onair/turn/static-auth-secret"
    assert config.whip_turn_credential_ttl_seconds == 86400
    # The operator and coturn mount the same Secret, which holds a generated secret.
    secret = named(docs, "Secret", "onair-turn")
    assert len(secret["data"]["static-auth-secret"]) >= 48
    pod = operator["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "turn-secret")
    assert volume["secret"]["secretName"] == "onair-turn"
    assert {"name": "turn-secret", "mountPath": "/etc/onair/turn", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    template = named(docs, "Deployment", "onair-turn")["spec"]["template"]
    assert (
        template["metadata"]["annotations"]["onair.dev/turn-secret-sha256"]
        == hashlib.sha256(secret["data"]["static-auth-secret"].encode()).hexdigest()
    )
    turn = template["spec"]
    assert turn["volumes"][0]["secret"]["secretName"] == "onair-turn"
    script = turn["containers"][0]["args"][0]
    # The secret never reaches coturn's command line; TCP relays (a way into the cluster) are off.
    assert "static-auth-secret=%s" in script and "--static-auth-secret" not in script
    assert "--use-auth-secret" in script and "--no-tcp-relay" in script and "--realm=onair" in script
    service = named(docs, "Service", "onair-turn")
    assert service["spec"]["type"] == "NodePort"
    assert {(p["protocol"], p["port"], p["nodePort"]) for p in service["spec"]["ports"]} == {
        ("UDP", 3478, 30478),
        ("TCP", 3478, 30478),
    }
    policy = named(docs, "NetworkPolicy", "onair-turn")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [egress] = policy["spec"]["egress"]
    assert egress["ports"] == [{"port": 1, "endPort": 65535, "protocol": "UDP"}]
    assert {"key": "app.kubernetes.io/component", "operator": "In", "values": ["ingest", "ingest-backup"]} in egress[
        "to"
    ][0]["podSelector"]["matchExpressions"]


def test_turn_relay_with_an_existing_secret_and_a_load_balancer():
    docs = render(
        "--set",
        "turn.enabled=true",
        "--set",
        "turn.publicHost=203.0.113.7",
        "--set",
        "turn.existingSecret=my-turn",
        "--set",
        "turn.tcp=false",
    )
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "onair-turn"]
    env = {
        e["name"]: e["value"]
        for e in named(docs, "Deployment", "onair-operator")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert env["ONAIR_WHIP_ICE_SERVERS"] == "turn:203.0.113.7:3478?transport=udp"
    assert named(docs, "Service", "onair-turn")["spec"]["type"] == "LoadBalancer"
    assert (
        named(docs, "Deployment", "onair-turn")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
        == "my-turn"
    )


def test_turn_relay_needs_a_public_host_and_with_nodeport_a_fixed_nodeport():
    assert "turn.publicHost is required" in helm_fails("--set", "turn.enabled=true")
    assert "turn.service.nodePort is required" in helm_fails(
        "--set", "turn.enabled=true", "--set", "turn.publicHost=a", "--set", "turn.service.type=NodePort"
    )
    assert "schema" in helm_fails("--set", "turn.enabled=true", "--set", "turn.publicHost=turn:a:3478")
    docs = render("--set", "turn.enabled=true", "--set", "turn.publicHost=[2001:db8::7]", "--set", "turn.tcp=false")
    env = {
        e["name"]: e["value"]
        for e in named(docs, "Deployment", "onair-operator")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert env["ONAIR_WHIP_ICE_SERVERS"] == "turn:[2001:db8::7]:3478?transport=udp"
