import base64
import copy
import json
import re
from typing import Optional

import pytest
from kubernetes import client as k8s

from onair import roles
from onair.api.agent import IngestConfig, OriginConfig, RecorderConfig, TranscoderConfig
from onair.api.calltype import CallType
from onair.api.operator_config import OperatorConfig
from onair.api.meta import child_selector
from onair.render.children import CHILD_KINDS, RenderedChildren, create_only, render_children
from onair.render.deployments import CONFIG_HASH_ANNOTATION
from onair.render.credentials import Credentials, credentials_from_secret_data, render_credentials_secret
from onair.render.ladder import fit_ladder

CREDS = Credentials(
    stream_key="streamkey0123",
    srt_passphrase="srtpassphrase0123",
    whip_token="whiptoken0123",
    playback_secret="p" * 32,
    upload_token="u" * 32,
    read_token="r" * 32,
    agent_token="a" * 32,
)
UID = "6f1c1f8e-0000-4000-8000-000000000001"
CONFIG = OperatorConfig()
MODELS = {
    "ingest": IngestConfig,
    "ingest-backup": IngestConfig,
    "transcoder": TranscoderConfig,
    "origin": OriginConfig,
    "recorder": RecorderConfig,
}


def livestream(name="show", namespace="media", **spec) -> dict:
    return {
        "apiVersion": "onair.dev/v1alpha1",
        "kind": "Livestream",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 3},
        "spec": {"callType": "livestream", **spec},
    }


def calltype(**settings) -> CallType:
    return CallType.model_validate({"metadata": {"name": "livestream"}, "spec": {"settings": settings}})


def render(ls=None, ct: Optional[CallType] = None, config=CONFIG) -> RenderedChildren:
    return render_children(ls or livestream(), ct if ct is not None else calltype(), config, CREDS)


def by_kind(out: RenderedChildren, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in out.objects if o["kind"] == kind}


def names(out: RenderedChildren) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in out.objects}


def pods(out: RenderedChildren) -> dict[str, dict]:
    """Pod specs by workload name; a StatefulSet's claim templates as the volumes its pods get."""
    out_pods = {name: d["spec"]["template"]["spec"] for name, d in by_kind(out, "Deployment").items()}
    for name, sts in by_kind(out, "StatefulSet").items():
        spec = sts["spec"]["template"]["spec"]
        claims = [
            {"name": c["metadata"]["name"], "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
            for c in sts["spec"]["volumeClaimTemplates"]
        ]
        out_pods[name] = {**spec, "volumes": spec["volumes"] + claims}
    return out_pods


def config_of(out: RenderedChildren, key: str):
    cm = by_kind(out, "ConfigMap")[f"show-{key}"]
    return MODELS[key].model_validate(json.loads(cm["data"]["config.json"]))


# ----------------------------------------------------------------------------- the set of children
def test_default_push_stream_children():
    out = render()
    assert names(out) == {
        ("Secret", "show-credentials"),
        ("ConfigMap", "show-ingest"),
        ("ConfigMap", "show-transcoder"),
        ("ConfigMap", "show-origin"),
        ("ConfigMap", "show-recorder"),
        ("Deployment", "show-ingest"),
        ("Deployment", "show-transcoder"),
        ("Deployment", "show-origin"),
        ("Deployment", "show-recorder"),
        ("Service", "show-ingest"),
        ("Service", "show-origin"),
        ("Service", "show-recorder"),
        ("PersistentVolumeClaim", "show-dvr"),
        ("NetworkPolicy", "show-ingest"),
        ("NetworkPolicy", "show-transcoder"),
        ("NetworkPolicy", "show-origin"),
        ("NetworkPolicy", "show-recorder"),
    }
    assert [(o["kind"], o["metadata"]["name"]) for o in out.keep] == [("PersistentVolumeClaim", "show-recordings")]
    assert set(out.agent_configs) == {"ingest", "transcoder", "origin", "recorder"}
    assert out.credentials_secret == "show-credentials"
    assert {(api, kind) for api, kind in CHILD_KINDS} >= {(o["apiVersion"], o["kind"]) for o in out.objects}


def test_zero_latency_encoding_reaches_the_transcoder_from_the_calltype_or_the_livestream():
    assert not config_of(render(), "transcoder").zero_latency_encoding
    by_calltype = render(ct=calltype(broadcasting={"zeroLatencyEncoding": True}))
    assert config_of(by_calltype, "transcoder").zero_latency_encoding
    off = render(
        livestream(settingsOverride={"broadcasting": {"zeroLatencyEncoding": False}}),
        ct=calltype(broadcasting={"zeroLatencyEncoding": True}),
    )
    assert not config_of(off, "transcoder").zero_latency_encoding


def test_low_latency_tier_reaches_transcoder_and_origin_from_the_calltype_or_the_livestream():
    plain = render()
    assert not config_of(plain, "transcoder").low_latency and not config_of(plain, "origin").low_latency
    assert config_of(plain, "transcoder").part_seconds == 0.2  # the built-in default, unused until lowLatency
    by_calltype = render(ct=calltype(broadcasting={"lowLatency": True}))
    assert config_of(by_calltype, "transcoder").low_latency and config_of(by_calltype, "origin").low_latency
    overridden = render(livestream(settingsOverride={"broadcasting": {"lowLatency": True, "partDurationMs": 333}}))
    transcoder = config_of(overridden, "transcoder")
    assert transcoder.low_latency and transcoder.part_seconds == 0.333
    assert config_of(overridden, "origin").low_latency
    # LL-DASH: the origin announces the same chunk duration the transcoder cuts.
    assert config_of(overridden, "origin").part_seconds == 0.333
    off = render(
        livestream(settingsOverride={"broadcasting": {"lowLatency": False}}),
        ct=calltype(broadcasting={"lowLatency": True}),
    )
    assert not config_of(off, "transcoder").low_latency and not config_of(off, "origin").low_latency


def test_the_proxies_viewers_come_through_reach_the_origin_config():
    assert config_of(render(), "origin").trusted_proxies == []
    config = OperatorConfig(playback_trusted_proxies=["10.42.0.0/16", "192.0.2.7"])
    assert config_of(render(config=config), "origin").trusted_proxies == ["10.42.0.0/16", "192.0.2.7"]
    with pytest.raises(ValueError, match="'ingress' is not an IP address or CIDR"):
        OperatorConfig.from_env({"ONAIR_PLAYBACK_TRUSTED_PROXIES": "10.42.0.0/16,ingress"})


def test_backup_ingest_is_rendered_only_when_enabled():
    out = render(ct=calltype(ingest={"backup": True}))
    assert {
        ("ConfigMap", "show-ingest-backup"),
        ("Deployment", "show-ingest-backup"),
        ("Service", "show-ingest-backup"),
    } <= names(out)
    main, backup = config_of(out, "ingest"), config_of(out, "ingest-backup")
    assert (main.slot, backup.slot) == ("main", "backup")
    transcoder = config_of(out, "transcoder")
    assert transcoder.main_url == "rtmp://show-ingest.media.svc:1935/live/stream"
    assert transcoder.backup_url == "rtmp://show-ingest-backup.media.svc:1935/live/stream"
    # The two slots select disjoint pods.
    deps = by_kind(out, "Deployment")
    sel_main = deps["show-ingest"]["spec"]["selector"]["matchLabels"]
    sel_backup = deps["show-ingest-backup"]["spec"]["selector"]["matchLabels"]
    assert not set(sel_main.items()) <= set(
        deps["show-ingest-backup"]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert not set(sel_backup.items()) <= set(deps["show-ingest"]["spec"]["template"]["metadata"]["labels"].items())
    assert by_kind(out, "Service")["show-ingest-backup"]["spec"]["selector"] == sel_backup
    # Spread away from each other on hostname and zone, without making one node unschedulable.
    spread = pods(out)["show-ingest-backup"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread)
    for c in spread:
        assert set(c["labelSelector"]["matchLabels"].items()) <= set(
            deps["show-ingest"]["spec"]["template"]["metadata"]["labels"].items()
        )
    off = render(ct=calltype(ingest={"backup": False}))
    assert not any(n.endswith("backup") for _, n in names(off))


def test_turning_the_backup_on_or_off_restarts_neither_the_transcoder_nor_the_recorder():
    """Desired.backup tells them whether the backup ingest exists: their configs, and so their
    pod templates (config hash), are the same either way."""
    on, off = render(ct=calltype(ingest={"backup": True})), render(ct=calltype(ingest={"backup": False}))
    for key in ("transcoder", "recorder", "origin", "ingest"):
        assert by_kind(on, "ConfigMap")[f"show-{key}"] == by_kind(off, "ConfigMap")[f"show-{key}"], key
        assert by_kind(on, "Deployment")[f"show-{key}"] == by_kind(off, "Deployment")[f"show-{key}"], key
    backup = "rtmp://show-ingest-backup.media.svc:1935/live/stream"
    assert config_of(off, "transcoder").backup_url == backup
    assert config_of(off, "recorder").backup_source_url == backup
    assert ("ingest-backup" in on.agent_configs, "ingest-backup" in off.agent_configs) == (True, False)


def test_pull_mode_renders_no_ingest_and_hands_uris_to_the_transcoder():
    uris = ["srt://encoder.example.org:9000?streamid=x", "https://cdn.example.org/live.m3u8"]
    out = render(livestream(source={"mode": "pull", "uris": uris}), calltype(ingest={"backup": True}))
    assert not any("ingest" in n for _, n in names(out))
    assert "ingest" not in out.agent_configs and "ingest-backup" not in out.agent_configs
    t = config_of(out, "transcoder")
    assert t.pull_uris == uris and t.main_url is None and t.backup_url is None
    assert out.urls.ingest.wire() == {}
    rec = config_of(out, "recorder")
    assert rec.source_url == uris[0] and rec.fallback_source_urls == uris[1:] and rec.backup_source_url is None


def test_an_origin_recording_goes_on_from_the_backup_ingest():
    out = render(ct=calltype(ingest={"backup": True}))
    rec = config_of(out, "recorder")
    assert rec.source_url == config_of(out, "transcoder").main_url == "rtmp://show-ingest.media.svc:1935/live/stream"
    assert (
        rec.backup_source_url
        == config_of(out, "transcoder").backup_url
        == "rtmp://show-ingest-backup.media.svc:1935/live/stream"
    )
    assert rec.fallback_source_urls == []
    # A transcoded recording reads the origin, which carries on by itself when main drops.
    transcoded = config_of(render(ct=calltype(ingest={"backup": True}, recording={"type": "transcoded"})), "recorder")
    assert transcoded.fallback_source_urls == [] and transcoded.backup_source_url is None


def secret_items(pod: dict) -> set[str]:
    return {
        i["key"]
        for v in pod["volumes"]
        if v.get("secret", {}).get("secretName") == "show-credentials"
        for i in v["secret"]["items"]
    }


@pytest.mark.parametrize("record_type", ["origin", "transcoded"])
def test_internal_readers_get_the_read_token_as_a_mounted_file_never_in_a_configmap(record_type):
    out = render(ct=calltype(ingest={"backup": True}, recording={"type": record_type}))
    token_file = f"{roles.SECRET_DIR}/readToken"
    for key in ("ingest", "ingest-backup", "transcoder", "origin", "recorder"):
        assert config_of(out, key).read_token_file == token_file, key
        assert "readToken" in secret_items(pods(out)[f"show-{key}"]), key
    for cm in by_kind(out, "ConfigMap").values():
        assert CREDS.read_token not in cm["data"]["config.json"]
    transcoder = config_of(out, "transcoder")
    assert "token" not in transcoder.main_url and "token" not in transcoder.backup_url
    recorder = config_of(out, "recorder")
    assert "token" not in recorder.source_url and not any("token" in u for u in recorder.fallback_source_urls)


def test_a_pull_source_never_gets_the_read_token():
    uris = ["srt://encoder.example.org:9000?streamid=x"]
    out = render(livestream(source={"mode": "pull", "uris": uris}))
    for key in ("transcoder", "recorder"):
        assert config_of(out, key).read_token_file is None, key
        assert "readToken" not in secret_items(pods(out)[f"show-{key}"]), key
    # The origin still lets in-cluster readers in.
    assert config_of(out, "origin").read_token_file == f"{roles.SECRET_DIR}/readToken"


@pytest.mark.parametrize("record_type", ["origin", "transcoded"])
def test_every_agent_gets_the_agent_token_as_a_mounted_file_never_in_a_configmap(record_type):
    out = render(ct=calltype(ingest={"backup": True}, recording={"type": record_type}))
    for key in ("ingest", "ingest-backup", "transcoder", "origin", "recorder"):
        assert config_of(out, key).agent_token_file == f"{roles.SECRET_DIR}/agentToken", key
        assert "agentToken" in secret_items(pods(out)[f"show-{key}"]), key
    for cm in by_kind(out, "ConfigMap").values():
        assert CREDS.agent_token not in cm["data"]["config.json"]
    secret = by_kind(out, "Secret")["show-credentials"]
    assert credentials_from_secret_data(secret["data"]).agent_token == CREDS.agent_token


def ingress_of(out: RenderedChildren, key: str) -> list[dict]:
    policy = by_kind(out, "NetworkPolicy")[f"show-{key}"]
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == by_kind(out, "Deployment")[f"show-{key}"]["spec"]["selector"]["matchLabels"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"]
    return policy["spec"]["ingress"]


def open_ports(rules: list[dict]) -> set[str]:
    """Ports a rule without ``from`` (anyone) admits."""
    return {str(p["port"]) for r in rules if "from" not in r for p in r["ports"]}


def peers_of(rules: list[dict], port: str) -> list[dict]:
    return [peer for r in rules if "from" in r and any(p["port"] == port for p in r["ports"]) for peer in r["from"]]


OPERATOR_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "onair-system"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"}},
}


def pod_of(out: RenderedChildren, key: str) -> dict:
    return {
        "podSelector": {"matchLabels": by_kind(out, "Deployment")[f"show-{key}"]["spec"]["selector"]["matchLabels"]}
    }


def test_network_policies_let_only_the_operator_reach_agent_ports_and_only_the_transcoder_upload():
    out = render(ct=calltype(ingest={"backup": True, "protocols": ["rtmp", "srt", "whip"]}))
    for key in ("ingest", "ingest-backup", "transcoder", "origin"):
        rules = ingress_of(out, key)
        assert peers_of(rules, "agent") == [OPERATOR_PEER], key
        assert "agent" not in open_ports(rules), key
    # The recorder's agent port: the operator, and this Livestream's origin (the recordings on the volume).
    recorder = ingress_of(out, "recorder")
    assert peers_of(recorder, "agent") == [OPERATOR_PEER, pod_of(out, "origin")] and not open_ports(recorder)
    assert ingress_of(out, "transcoder") == recorder[:1] and len(recorder) == 2
    origin = ingress_of(out, "origin")
    assert open_ports(origin) == {"http"}
    assert peers_of(origin, "upload") == [pod_of(out, "transcoder")]
    for key in ("ingest", "ingest-backup"):
        ingest = ingress_of(out, key)
        # Encoders push from anywhere; RTMP pushes share the port with the internal read path.
        assert {"rtmp", "srt", "whip"} <= open_ports(ingest)
        assert {"protocol": "UDP", "port": 1024, "endPort": 65535} in [p for r in ingest for p in r["ports"]]


def test_without_rtmp_pushes_the_ingest_rtmp_port_is_only_the_read_path_of_transcoder_and_recorder():
    out = render(ct=calltype(ingest={"protocols": ["srt"]}))
    ingest = ingress_of(out, "ingest")
    assert open_ports(ingest) == {"srt"}
    assert peers_of(ingest, "rtmp") == [pod_of(out, "transcoder"), pod_of(out, "recorder")]
    # A transcoded recording reads the origin, not the ingest.
    transcoded = render(ct=calltype(ingest={"protocols": ["srt"]}, recording={"type": "transcoded"}))
    assert peers_of(ingress_of(transcoded, "ingest"), "rtmp") == [pod_of(transcoded, "transcoder")]


def test_network_policy_peers_follow_the_operator_config():
    config = OperatorConfig(
        operator_namespace="ops",
        operator_pod_labels={"app": "onair-operator"},
        agent_metrics_from=[{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
    )
    out = render(config=config)
    assert peers_of(ingress_of(out, "origin"), "agent") == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
            "podSelector": {"matchLabels": {"app": "onair-operator"}},
        },
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}},
    ]
    off = render(config=OperatorConfig(network_policies=False))
    assert by_kind(off, "NetworkPolicy") == {}


def test_origin_service_carries_playback_and_uploads_but_never_the_agent_port():
    svc = by_kind(render(), "Service")["show-origin"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8081, "http"),
        ("upload", 8082, "upload"),
    ]
    origin = config_of(render(), "origin")
    assert (origin.http_port, origin.upload_port) == (8081, 8082)


def test_recording_disabled_renders_no_recorder_and_no_recordings_volume():
    out = render(ct=calltype(recording={"mode": "disabled"}))
    assert not any("recorder" in n or "recordings" in n for _, n in names(out))
    assert out.keep == [] and "recorder" not in out.agent_configs


def test_existing_recordings_pvc_is_used_instead_of_creating_one():
    out = render(livestream(settingsOverride={"recording": {"storage": {"persistentVolumeClaim": "archive"}}}))
    assert out.keep == []
    vols = {v["name"]: v for v in pods(out)["show-recorder"]["volumes"]}
    assert vols["recordings"]["persistentVolumeClaim"] == {"claimName": "archive"}


def test_created_recordings_pvc_follows_settings_and_config():
    out = render(
        ct=calltype(recording={"storage": {"size": "200Gi", "storageClassName": "slow"}}),
        config=OperatorConfig(storage_class="fast"),
    )
    pvc = out.keep[0]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert pvc["spec"]["storageClassName"] == "slow"
    assert by_kind(out, "PersistentVolumeClaim")["show-dvr"]["spec"]["storageClassName"] == "fast"
    vols = {v["name"]: v for v in pods(out)["show-recorder"]["volumes"]}
    assert vols["recordings"]["persistentVolumeClaim"] == {"claimName": "show-recordings"}
    assert create_only(pvc) and create_only(by_kind(out, "PersistentVolumeClaim")["show-dvr"])
    assert not create_only(by_kind(out, "Deployment")["show-origin"])


# ----------------------------------------------------------------------------- ownership & labels
ALL_VARIANTS = {
    "default": lambda: render(),
    "backup": lambda: render(ct=calltype(ingest={"backup": True})),
    "pull": lambda: render(livestream(source={"mode": "pull", "uris": ["rtmp://example.org/live/x"]})),
    "no-recording": lambda: render(ct=calltype(recording={"mode": "disabled"})),
    "transcoded-recording": lambda: render(ct=calltype(recording={"mode": "auto-on", "type": "transcoded"})),
    "tls": lambda: render(config=OperatorConfig(ingest_tls_secret="ingest-tls", image_pull_secrets=["regcred"])),
    "inactive": lambda: render(livestream(active=False, phase="live")),
    "origin-replicas": lambda: render(ct=calltype(origin={"replicas": 3})),
}


@pytest.fixture(params=sorted(ALL_VARIANTS))
def rendered(request) -> RenderedChildren:
    return ALL_VARIANTS[request.param]()


def test_every_owned_object_is_labelled_and_owned(rendered):
    selector = child_selector("show")
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "media"
        assert set(selector.items()) <= set(meta["labels"].items()), meta["name"]
        assert meta["labels"]["app.kubernetes.io/name"] == "onair"
        assert meta["labels"]["app.kubernetes.io/instance"] == "show"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "onair"
        assert meta["labels"]["app.kubernetes.io/component"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "name": "show",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_kept_objects_are_neither_owned_nor_prunable(rendered):
    selector = child_selector("show")
    for obj in rendered.keep:
        assert "ownerReferences" not in obj["metadata"]
        assert not set(selector.items()) <= set(obj["metadata"].get("labels", {}).items())
        assert obj["metadata"]["labels"]["onair.dev/recordings-of"] == "show"


def test_every_pod_is_restricted(rendered):
    for name, pod in pods(rendered).items():
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod.get("hostNetwork") is None and pod.get("hostPID") is None
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["image"] == CONFIG.image and c["imagePullPolicy"] == CONFIG.image_pull_policy
            # The ingest is ready once its nginx answers (encoders connect to nginx, not the agent);
            # an origin once it serves viewers (a replica after copying a peer's DVR), not while it drains.
            ready_path = "/readyz" if c["name"] in ("ingest", "origin") else "/healthz"
            assert c["readinessProbe"]["httpGet"] == {"path": ready_path, "port": "agent"}
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent"}
            assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "agent"}
            assert c["startupProbe"]["periodSeconds"] == 1
            assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 60
            assert c["resources"]["requests"] and c["resources"]["limits"]
        for v in pod["volumes"]:
            assert set(v) & {"configMap", "secret", "emptyDir", "persistentVolumeClaim"}, v  # no hostPath


def test_pods_run_the_role_binary_with_its_ports(rendered):
    for name, dep in by_kind(rendered, "Deployment").items():
        key = name.removeprefix("show-")
        role = roles.MEDIA_ROLES["ingest" if key.startswith("ingest") else key]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        # The command is explicit: args alone would follow the image's ENTRYPOINT (onair).
        assert c["command"] == ["onair"]
        assert c["args"] == ["agent", role.name, "--config", roles.CONFIG_PATH]
        assert [(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]] == [
            (p.name, p.number, p.protocol) for p in role.ports
        ]
        assert dep["spec"]["replicas"] == 1
        if role is roles.INGEST:
            # A slot's new pod is Ready before its old one goes: the encoder's reconnect lands at once.
            assert dep["spec"]["strategy"] == {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            }
        else:
            # One writer per volume and output.
            assert dep["spec"]["strategy"] == {"type": "Recreate"}
        assert set(dep["spec"]["selector"]["matchLabels"].items()) <= set(
            dep["spec"]["template"]["metadata"]["labels"].items()
        )
        assert rendered.agent_selectors[key] == dep["spec"]["selector"]["matchLabels"]


# ----------------------------------------------------------------------------- configs & mounts
def test_configmaps_hold_the_agent_configs_as_sorted_json(rendered):
    for key, model in rendered.agent_configs.items():
        cm = by_kind(rendered, "ConfigMap")[f"show-{key}"]
        text = cm["data"]["config.json"]
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
        assert MODELS[key].model_validate(json.loads(text)) == model
        assert model.livestream == "media/show"


def mounted_files(pod: dict, secret_items: bool = True) -> dict[str, dict]:
    """mountPath -> volume, and for secret volumes every projected file path -> volume."""
    vols = {v["name"]: v for v in pod["volumes"]}
    out = {}
    for m in pod["containers"][0]["volumeMounts"]:
        vol = vols[m["name"]]
        out[m["mountPath"]] = vol
        if secret_items and "secret" in vol:
            for item in vol["secret"]["items"]:
                out[f"{m['mountPath']}/{item['path']}"] = vol
    return out


def test_agent_paths_match_the_pod_mounts(rendered):
    dep_pods = pods(rendered)
    for key, model in rendered.agent_configs.items():
        pod = dep_pods[f"show-{key}"]
        files = mounted_files(pod)
        config_mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config")
        assert config_mount["mountPath"] == roles.CONFIG_PATH and config_mount["subPath"] == "config.json"
        assert files[roles.CONFIG_PATH]["configMap"]["name"] == f"show-{key}"
        for field, value in model.model_dump().items():
            if field.endswith("_file") and value:
                assert value in files, f"{key}.{field}={value} is not mounted"
            if field in ("work_dir", "data_dir", "output_dir") and value:
                assert value in files, f"{key}.{field}={value} is not mounted"
                assert "emptyDir" in files[value] or "persistentVolumeClaim" in files[value]
        assert "/tmp" in files
        for vol in pod["volumes"]:
            if vol.get("secret", {}).get("secretName") == "show-credentials":
                # Agents read only keys, never the convenience URLs.
                assert all(not i["key"].endswith("Url") for i in vol["secret"]["items"])


def test_config_change_rolls_the_pod_and_nothing_else_does():
    a, b = render(), render(ct=calltype(dvr={"durationSeconds": 600}))

    def hashes(out):
        return {
            n: d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            for n, d in by_kind(out, "Deployment").items()
        }

    ha, hb = hashes(a), hashes(b)
    assert ha["show-origin"] != hb["show-origin"]
    assert {k: v for k, v in ha.items() if k != "show-origin"} == {k: v for k, v in hb.items() if k != "show-origin"}


def test_settings_reach_the_agent_configs():
    ct = calltype(
        ingest={"protocols": ["rtmp", "srt"], "srtLatencyMs": 500},
        broadcasting={
            "hls": {"qualityTracks": ["720p", "360p"]},
            "outputs": {"dash": False},
            "lowLatency": True,
            "segmentDurationSeconds": 1,
        },
        dvr={"enabled": False, "durationSeconds": 600},
        recording={"mode": "auto-on", "splitSeconds": 3600},
        screenshots={"intervalSeconds": 5, "width": 640},
    )
    out = render(livestream(projection="vr360"), ct)
    ingest, t = config_of(out, "ingest"), config_of(out, "transcoder")
    origin, rec = config_of(out, "origin"), config_of(out, "recorder")
    assert ingest.protocols == ["rtmp", "srt"] and ingest.srt_latency_ms == 500 and ingest.active is True
    assert [r.name for r in t.ladder] == ["720p", "360p"]
    assert (t.dash, t.hls_cmaf, t.low_latency, t.segment_seconds) == (False, True, True, 1.0)
    assert (t.screenshot_interval_seconds, t.screenshot_width) == (5, 640)
    assert t.output_url == "http://show-origin.media.svc:8082/upload"
    assert (origin.dvr_enabled, origin.dvr_window_seconds, origin.projection) == (False, 600, "vr360")
    assert rec.split_seconds == 3600 and rec.record_type == "origin"
    assert rec.source_url == "rtmp://show-ingest.media.svc:1935/live/stream"
    svc = by_kind(out, "Service")["show-ingest"]
    assert [(p["name"], p["protocol"]) for p in svc["spec"]["ports"]] == [("rtmp", "TCP"), ("srt", "UDP")]


def test_ingest_service_always_carries_the_internal_read_port():
    out = render(ct=calltype(ingest={"protocols": ["srt", "whip"], "backup": True}))
    for key in ("ingest", "ingest-backup"):
        ports = {p["name"]: p for p in by_kind(out, "Service")[f"show-{key}"]["spec"]["ports"]}
        assert set(ports) == {"rtmp", "srt", "whip"}
        read = config_of(out, "transcoder").main_url if key == "ingest" else config_of(out, "transcoder").backup_url
        assert read.startswith(f"rtmp://show-{key}.media.svc:{ports['rtmp']['port']}/")
    # Pushing over RTMP stays off: the agent only accepts the configured protocols, and status
    # advertises none.
    assert config_of(out, "ingest").protocols == ["srt", "whip"]
    assert out.urls.ingest.rtmp is None and out.urls.ingest.backup_rtmp is None


def test_override_wins_over_calltype():
    out = render(
        livestream(settingsOverride={"broadcasting": {"hls": {"qualityTracks": ["480p"]}}}),
        calltype(broadcasting={"hls": {"qualityTracks": ["1080p", "720p"]}}),
    )
    assert [r.name for r in config_of(out, "transcoder").ladder] == ["480p"]
    assert out.effective.broadcasting.hls.quality_tracks == ["480p"]


def test_inactive_keeps_every_object_and_url_and_tells_the_ingest():
    on, off = render(livestream(phase="live")), render(livestream(phase="live", active=False))
    assert names(on) == names(off) and on.urls == off.urls
    assert config_of(off, "ingest").active is False and config_of(on, "ingest").active is True


def test_transcoded_recording_reads_the_origin():
    out = render(ct=calltype(recording={"type": "transcoded"}))
    assert config_of(out, "recorder").source_url == "http://show-origin.media.svc:8081/hls/cmaf/master.m3u8"


# ----------------------------------------------------------------------------- urls
def test_default_urls():
    out = render(ct=calltype(ingest={"backup": True}))
    assert out.urls.ingest.wire() == {
        "rtmp": "rtmp://show-ingest.media.svc:1935/live",
        "srt": "srt://show-ingest.media.svc:9998?streamid=publish",
        "whip": "http://show-ingest.media.svc:8443/whip",
        "backupRtmp": "rtmp://show-ingest-backup.media.svc:1935/live",
        "backupSrt": "srt://show-ingest-backup.media.svc:9998?streamid=publish",
        "backupWhip": "http://show-ingest-backup.media.svc:8443/whip",
    }
    assert out.urls.playback.wire() == {
        "hlsCmaf": "http://show-origin.media.svc:8081/hls/cmaf/master.m3u8",
        "hlsMpegts": "http://show-origin.media.svc:8081/hls/ts/master.m3u8",
        "dash": "http://show-origin.media.svc:8081/dash/manifest.mpd",
        "player": "http://show-origin.media.svc:8081/player",
        "screenshot": "http://show-origin.media.svc:8081/screenshot.jpg",
    }


def test_tls_adds_rtmps_and_https_whip_with_the_certificate_mounted():
    cfg = OperatorConfig(
        ingest_tls_secret="ingest-tls",
        ingest_host_template="{name}-{slot}.live.example.org",
        ingest_service_type="LoadBalancer",
    )
    out = render(config=cfg)
    assert out.urls.ingest.rtmps == "rtmps://show-main.live.example.org:1936/live"
    assert out.urls.ingest.whip == "https://show-main.live.example.org:8443/whip"
    ingest = config_of(out, "ingest")
    assert ingest.protocols == ["rtmp", "rtmps", "srt", "whip"]
    files = mounted_files(pods(out)["show-ingest"])
    assert files[ingest.tls_cert_file]["secret"]["secretName"] == "ingest-tls"
    assert files[ingest.tls_key_file]["secret"]["secretName"] == "ingest-tls"
    svc = by_kind(out, "Service")["show-ingest"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["rtmp", "rtmps", "srt", "whip"]
    secret = by_kind(out, "Secret")["show-credentials"]
    assert "rtmpsPublishUrl" in secret["data"]


def test_playback_urls_follow_outputs_and_broadcasting_mode():
    out = render(
        ct=calltype(broadcasting={"outputs": {"hlsMpegts": False, "dash": False}}, screenshots={"enabled": False}),
        config=OperatorConfig(playback_base_url_template="https://play.example.org/{namespace}/{name}/"),
    )
    assert out.urls.playback.wire() == {
        "hlsCmaf": "https://play.example.org/media/show/hls/cmaf/master.m3u8",
        "player": "https://play.example.org/media/show/player",
    }
    assert render(ct=calltype(broadcasting={"mode": "disabled"})).urls.playback.wire() == {}


def test_credentials_secret_is_rendered_from_the_given_credentials():
    out = render()
    secret = by_kind(out, "Secret")["show-credentials"]
    assert credentials_from_secret_data(secret["data"]) == CREDS
    assert secret == render_credentials_secret(livestream()["metadata"], CREDS, out.urls.ingest)


# ----------------------------------------------------------------------------- determinism & validity
def test_rendering_twice_is_identical_and_inputs_are_untouched(rendered):
    ls = livestream(phase="live")
    snapshot = copy.deepcopy(ls)
    a, b = render(ls), render(ls)
    assert json.dumps(a.objects, sort_keys=False) == json.dumps(b.objects, sort_keys=False)
    assert json.dumps(a.keep) == json.dumps(b.keep)
    assert a.urls == b.urls and a.agent_configs == b.agent_configs
    assert ls == snapshot
    # No object shares structure with another render (the controller may mutate what it applies).
    a.objects[0]["metadata"]["labels"]["x"] = "y"
    assert "x" not in render(ls).objects[0]["metadata"]["labels"]


def test_longest_allowed_name_fits_kubernetes_limits():
    name = "a" * 45
    out = render(livestream(name=name), calltype(ingest={"backup": True}))
    for obj in out.objects + out.keep:
        assert len(obj["metadata"]["name"]) <= 63  # Services are DNS-1035 labels
        assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())
    for dep in by_kind(out, "Deployment").values():
        assert all(len(v) <= 63 for v in dep["spec"]["template"]["metadata"]["labels"].values())


IANA_SVC_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def test_names_follow_kubernetes_syntax(rendered):
    for obj in rendered.objects + rendered.keep:
        assert DNS_LABEL.match(obj["metadata"]["name"])
        if obj["kind"] == "Service":
            assert all(IANA_SVC_NAME.match(p["name"]) for p in obj["spec"]["ports"])
    for pod in pods(rendered).values():
        assert all(DNS_LABEL.match(v["name"]) for v in pod["volumes"])
        mounts = [m["name"] for c in pod["containers"] for m in c["volumeMounts"]]
        assert set(mounts) == {v["name"] for v in pod["volumes"]}  # nothing mounted twice or left over
        assert len(mounts) == len(set(mounts))
        for c in pod["containers"]:
            assert all(IANA_SVC_NAME.match(p["name"]) for p in c["ports"])


K8S_MODELS = {
    "Secret": "V1Secret",
    "ConfigMap": "V1ConfigMap",
    "Service": "V1Service",
    "PersistentVolumeClaim": "V1PersistentVolumeClaim",
    "Deployment": "V1Deployment",
    "StatefulSet": "V1StatefulSet",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
    "NetworkPolicy": "V1NetworkPolicy",
}


def test_every_object_round_trips_through_the_kubernetes_models(rendered):
    """Required fields present and no misspelt field: the client's models drop unknown keys, so a
    round trip that loses anything means a field Kubernetes would ignore or reject."""
    api = k8s.ApiClient()
    for obj in rendered.objects + rendered.keep:
        model = api._ApiClient__deserialize(copy.deepcopy(obj), K8S_MODELS[obj["kind"]])
        assert api.sanitize_for_serialization(model) == obj, obj["metadata"]["name"]


def test_missing_calltype_means_builtin_defaults():
    out = render_children(livestream(), None, CONFIG, CREDS)
    assert [r.name for r in config_of(out, "transcoder").ladder] == ["1080p", "720p", "480p", "360p"]


# ----------------------------------------------------------------------------- ladder
def ladder_of(out: RenderedChildren):
    return config_of(out, "transcoder").ladder


def test_rendered_ladder_keeps_every_configured_track_biggest_first():
    rungs = ladder_of(render(ct=calltype(broadcasting={"hls": {"qualityTracks": ["360p", "2160p", "720p"]}})))
    assert [(r.name, r.width, r.height) for r in rungs] == [
        ("2160p", 3840, 2160),
        ("720p", 1280, 720),
        ("360p", 640, 360),
    ]
    assert all(not r.passthrough for r in rungs)
    assert rungs[0].video_bitrate_kbps > rungs[1].video_bitrate_kbps > rungs[2].video_bitrate_kbps


def test_source_passthrough_adds_a_copied_rung():
    rungs = ladder_of(
        render(ct=calltype(broadcasting={"hls": {"qualityTracks": ["720p", "480p"], "sourcePassthrough": True}}))
    )
    assert [(r.name, r.passthrough) for r in rungs] == [("720p", False), ("480p", False), ("source", True)]


@pytest.mark.parametrize("source", [(1280, 720), (640, 360), (720, 1280), (320, 180)])
def test_rendered_ladder_never_upscales_once_fitted_to_the_source(source):
    rungs = ladder_of(render())
    fitted = fit_ladder(rungs, *source)
    assert fitted, "a ladder is never empty"
    for r in fitted:
        assert r.width <= source[0] and r.height <= source[1]
        assert r.width % 2 == 0 and r.height % 2 == 0


# ----------------------------------------------------------------------------- WHIP through TURN
TURN_CONFIG = OperatorConfig(
    whip_ice_servers=["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"],
    whip_ingest_ice_servers=["turn:onair-turn.onair-system.svc:3478?transport=udp"],
    whip_turn_secret_file="/etc/onair/turn/static-auth-secret",
    whip_turn_credential_ttl_seconds=3600,
)


def test_turn_secret_is_copied_for_the_ingest_which_announces_the_public_servers_and_uses_the_inside_one():
    ls = livestream(settingsOverride={"ingest": {"backup": True}})
    out = render_children(ls, calltype(), TURN_CONFIG, CREDS, turn_secret="shared")
    secret = by_kind(out, "Secret")["show-turn"]
    assert base64.b64decode(secret["data"]["turnSecret"]).decode() == "shared"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    for key in ("ingest", "ingest-backup"):
        cfg = config_of(out, key)
        assert cfg.whip_client_ice_servers == TURN_CONFIG.whip_ice_servers
        assert cfg.whip_ice_servers == TURN_CONFIG.whip_ingest_ice_servers
        assert cfg.whip_turn_secret_file == "/etc/onair/turn/turnSecret"
        assert cfg.whip_turn_credential_ttl_seconds == 3600
        spec = pods(out)[f"show-{key}"]
        volume = next(v for v in spec["volumes"] if v["name"] == "turn")
        assert volume["secret"]["secretName"] == "show-turn"
        assert {"name": "turn", "mountPath": "/etc/onair/turn", "readOnly": True} in spec["containers"][0][
            "volumeMounts"
        ]
    # Only the ingest holds it.
    for key in ("transcoder", "origin"):
        assert not any(v["name"] == "turn" for v in pods(out)[f"show-{key}"]["volumes"])


def test_no_turn_secret_without_whip_or_without_the_setting():
    out = render_children(
        livestream(settingsOverride={"ingest": {"protocols": ["rtmp"]}}),
        calltype(),
        TURN_CONFIG,
        CREDS,
        turn_secret="shared",
    )
    assert "show-turn" not in by_kind(out, "Secret")
    assert config_of(out, "ingest").whip_turn_secret_file is None
    out = render(config=OperatorConfig(whip_ice_servers=["stun:stun.example.org"]))
    assert "show-turn" not in by_kind(out, "Secret")
    cfg = config_of(out, "ingest")
    assert cfg.whip_ice_servers == cfg.whip_client_ice_servers == ["stun:stun.example.org"]


def test_a_turn_secret_setting_without_its_content_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match="ONAIR_WHIP_TURN_SECRET_FILE"):
        render_children(livestream(), calltype(), TURN_CONFIG, CREDS)


def test_operator_reads_the_turn_secret_file_and_says_what_is_wrong_with_it(tmp_path):
    assert OperatorConfig().read_turn_secret() is None
    path = tmp_path / "static-auth-secret"
    with pytest.raises(ValueError, match="cannot be read"):
        OperatorConfig(whip_turn_secret_file=str(path)).read_turn_secret()
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        OperatorConfig(whip_turn_secret_file=str(path)).read_turn_secret()
    path.write_text("s3cret\n")
    assert OperatorConfig(whip_turn_secret_file=str(path)).read_turn_secret() == "s3cret"
    env = OperatorConfig.from_env(
        {"ONAIR_WHIP_INGEST_ICE_SERVERS": "turn:a:3478, turn:b:3478", "ONAIR_WHIP_TURN_SECRET_FILE": str(path)}
    )
    assert env.whip_ingest_ice_servers == ["turn:a:3478", "turn:b:3478"]


def test_the_origin_reads_the_recordings_from_the_recorders_service():
    out = render()
    service = by_kind(out, "Service")["show-recorder"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == by_kind(out, "Deployment")["show-recorder"]["spec"]["selector"]["matchLabels"]
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("agent", 8080)]
    assert (
        out.agent_configs["origin"].recorder_url
        == f"http://show-recorder.{out.agent_configs['origin'].livestream.split('/')[0]}.svc:8080"
    )
    without = render(ct=calltype(recording={"mode": "disabled"}))
    assert "show-recorder" not in by_kind(without, "Service") and without.agent_configs["origin"].recorder_url is None
