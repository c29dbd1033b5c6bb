"""The pod runner's pure half: a rendered Deployment + role config made to run on loopback.

Inputs come from the real render (``render_children``), so a change in how the operator renders
pods or configs that the local runner cannot follow fails here, not in a slow e2e run.
"""

from __future__ import annotations

import json

import pytest

from onair.api.calltype import CallType
from onair.api.operator_config import OperatorConfig
from onair.localcluster import loopback
from onair.localcluster.loopback import PlanError
from onair.render.children import render_children
from onair.render.credentials import generate_credentials

NS, LS = "ns1", "show"


@pytest.fixture(scope="module")
def rendered():
    ct = CallType.model_validate(
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "CallType",
            "metadata": {"name": "x"},
            "spec": {"settings": {"ingest": {"backup": True}, "recording": {"mode": "available"}}},
        }
    )
    ls = {"metadata": {"name": LS, "namespace": NS, "uid": "u-1"}, "spec": {"callType": "x"}}
    out = render_children(ls, ct, OperatorConfig(), generate_credentials())
    return {(o["kind"], o["metadata"]["name"]): o for o in out.objects}


def deployment(rendered, key: str) -> dict:
    return rendered[("Deployment", f"{LS}-{key}")]


def config(rendered, key: str) -> dict:
    return json.loads(rendered[("ConfigMap", f"{LS}-{key}")]["data"]["config.json"])


def services(rendered) -> list[dict]:
    return [o for (kind, _), o in rendered.items() if kind == "Service"]


def plans(rendered) -> list[loopback.PodPlan]:
    return [loopback.pod_plan(o) for (kind, _), o in rendered.items() if kind == "Deployment"]


def local_ports(plans_: list[loopback.PodPlan]) -> dict[tuple[str, str, int], int]:
    """Distinct fake local ports for every container port, deterministic for assertions."""
    out, port = {}, 40000
    for plan in plans_:
        for p in plan.ports:
            out[(plan.namespace, plan.name, p.number)] = port
            port += 1
    return out


# ----------------------------------------------------------------------------- plans
def test_plan_of_a_rendered_ingest(rendered):
    plan = loopback.pod_plan(deployment(rendered, "ingest"))
    assert (plan.namespace, plan.name, plan.livestream, plan.component) == (NS, f"{LS}-ingest", LS, "ingest")
    assert plan.args == ("onair", "agent", "ingest", "--config", "/etc/onair/config.json")
    assert plan.port_number("agent") == 8080 and plan.port_number("rtmp") == 1935
    assert {p.protocol for p in plan.ports if p.name == "srt"} == {"UDP"}
    kinds = {v.name: v.kind for v in plan.volumes.values()}
    assert kinds["config"] == "configMap" and kinds["credentials"] == "secret" and kinds["work"] == "emptyDir"
    assert plan.volumes["credentials"].source == f"{LS}-credentials"
    assert ("streamKey", "streamKey") in plan.volumes["credentials"].items
    assert plan.wanted and plan.grace_seconds == 15
    assert plan.readiness == ("/readyz", 8080)


def test_readiness_probe_on_a_port_that_does_not_exist_is_an_error(rendered):
    dep = json.loads(json.dumps(deployment(rendered, "origin")))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "nope"
    with pytest.raises(PlanError, match="readinessProbe port 'nope'"):
        loopback.pod_plan(dep)
    del dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert loopback.pod_plan(dep).readiness is None


def test_fingerprint_follows_the_template_and_the_object_only(rendered):
    dep = deployment(rendered, "origin")
    base = loopback.pod_plan(dep).fingerprint
    scaled = json.loads(json.dumps(dep))
    scaled["spec"]["replicas"] = 3
    scaled["status"] = {"readyReplicas": 0}
    assert loopback.pod_plan(scaled).fingerprint == base
    changed = json.loads(json.dumps(dep))
    changed["spec"]["template"]["metadata"]["annotations"]["onair.dev/config-sha256"] = "other"
    assert loopback.pod_plan(changed).fingerprint != base
    recreated = json.loads(json.dumps(dep))
    recreated["metadata"]["uid"] = "u-2"
    assert loopback.pod_plan(recreated).fingerprint != base


def test_scaled_to_zero_or_deleting_is_not_wanted(rendered):
    dep = json.loads(json.dumps(deployment(rendered, "origin")))
    dep["spec"]["replicas"] = 0
    assert not loopback.pod_plan(dep).wanted
    dep["spec"]["replicas"] = 1
    dep["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert not loopback.pod_plan(dep).wanted


def test_unsupported_pods_are_a_clear_error(rendered):
    dep = json.loads(json.dumps(deployment(rendered, "origin")))
    dep["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    with pytest.raises(PlanError, match="'host'.*hostPath"):
        loopback.pod_plan(dep)
    dep = json.loads(json.dumps(deployment(rendered, "origin")))
    dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    with pytest.raises(PlanError, match="2 containers"):
        loopback.pod_plan(dep)


def test_mounts_follow_subpaths(rendered):
    plan = loopback.pod_plan(deployment(rendered, "ingest"))
    dirs = {name: f"/local/{name}" for name in plan.volumes}
    mounts = loopback.local_mounts(plan, dirs)
    assert mounts["/etc/onair/config.json"] == "/local/config/config.json"
    assert mounts["/etc/onair/secret"] == "/local/credentials"
    assert mounts["/var/lib/onair/ingest"] == "/local/work"


# ----------------------------------------------------------------------------- services
def test_service_table_goes_through_selectors_and_target_ports(rendered):
    ps = plans(rendered)
    ports = local_ports(ps)
    table = loopback.service_table(services(rendered), ps, ports)
    assert table[(NS, f"{LS}-ingest", 1935)] == ports[(NS, f"{LS}-ingest", 1935)]
    assert table[(NS, f"{LS}-ingest-backup", 1935)] == ports[(NS, f"{LS}-ingest-backup", 1935)]
    assert table[(NS, f"{LS}-ingest", 1935)] != table[(NS, f"{LS}-ingest-backup", 1935)]
    assert table[(NS, f"{LS}-origin", 8081)] == ports[(NS, f"{LS}-origin", 8081)]
    assert table[(NS, f"{LS}-origin", 8082)] == ports[(NS, f"{LS}-origin", 8082)] != table[(NS, f"{LS}-origin", 8081)]
    # The agent port is not behind any Service (the operator reaches agents directly).
    assert (NS, f"{LS}-origin", 8080) not in table


def test_service_without_a_planned_pod_resolves_nothing(rendered):
    ps = [p for p in plans(rendered) if not p.name.endswith("-origin")]
    table = loopback.service_table(services(rendered), ps, local_ports(ps))
    assert not any(name == f"{LS}-origin" for _, name, _ in table)


def test_numeric_target_port_and_empty_selector():
    plan = loopback.PodPlan(
        namespace="a",
        name="web",
        uid="u",
        replicas=1,
        args=("x",),
        ports=(loopback.ContainerPort("http", 8000),),
        mounts=(),
        volumes={},
        labels={"app": "web"},
        grace_seconds=1,
        fingerprint="f",
    )
    svcs = [
        {
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]},
        },
        {"metadata": {"name": "manual", "namespace": "a"}, "spec": {"ports": [{"port": 81, "targetPort": 8000}]}},
        {
            "metadata": {"name": "other-ns", "namespace": "b"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 82, "targetPort": 8000}]},
        },
    ]
    assert loopback.service_table(svcs, [plan], {("a", "web", 8000): 41000}) == {("a", "web", 80): 41000}
    # The target is known before any local port is: a port reserved for the Service can be given to it.
    assert loopback.service_targets(svcs, [plan]) == {("a", "web", 80): ("a", "web", 8000)}


def test_an_unresolved_address_names_its_service_port():
    assert loopback.service_port_of("show-ingest-backup.ns1.svc:1935") == ("ns1", "show-ingest-backup", 1935)
    assert loopback.service_port_of("show-origin.ns1.svc.cluster.local:8081") == ("ns1", "show-origin", 8081)
    assert loopback.service_port_of("example.org:1935") is None


@pytest.mark.parametrize(
    "host,expected",
    [
        ("show-ingest.ns1.svc", ("ns1", "show-ingest")),
        ("show-ingest.ns1.svc.cluster.local", ("ns1", "show-ingest")),
        ("SHOW-INGEST.NS1.SVC.", ("ns1", "show-ingest")),
        ("example.org", None),
        ("show-ingest", None),
        # One pod of a headless Service (a StatefulSet's stable name): the "service" is <pod>.<svc>.
        ("show-origin-1.show-origin-peers.ns1.svc", ("ns1", "show-origin-1.show-origin-peers")),
        ("a.b.c.d.svc", None),
        ("127.0.0.1", None),
    ],
)
def test_service_of_host(host, expected):
    assert loopback.service_of_host(host, "ns1") == expected


def test_rewrite_url_keeps_everything_but_the_address():
    table = {("ns1", "show-ingest", 9998): 41001, ("ns1", "show-origin", 80): 41002}
    assert loopback.rewrite_url("srt://show-ingest.ns1.svc:9998?streamid=publish&latency=2", table, "ns1") == (
        "srt://127.0.0.1:41001?streamid=publish&latency=2",
        None,
    )
    # No port: the scheme's default is what the Service port must be.
    assert loopback.rewrite_url("http://u:p@show-origin.ns1.svc/x#f", table, "ns1") == (
        "http://u:p@127.0.0.1:41002/x#f",
        None,
    )
    assert loopback.rewrite_url("rtmp://show-ingest.ns1.svc:1935/live", table, "ns1") == (
        "rtmp://show-ingest.ns1.svc:1935/live",
        "show-ingest.ns1.svc:1935",
    )
    assert loopback.rewrite_url("https://example.org:8443/a", table, "ns1") == ("https://example.org:8443/a", None)
    assert loopback.rewrite_url("not a url", table, "ns1") == ("not a url", None)


def test_rewrite_path_picks_the_deepest_mount():
    mounts = {
        "/etc/onair/config.json": "/l/cfg/config.json",
        "/etc/onair/secret": "/s/cred",
        "/var": "/l/var",
        "/var/lib/onair/origin": "/l/dvr",
    }
    assert loopback.rewrite_path("/etc/onair/secret/streamKey", mounts) == "/s/cred/streamKey"
    assert loopback.rewrite_path("/var/lib/onair/origin", mounts) == "/l/dvr"
    assert loopback.rewrite_path("/var/lib/onair/origin/hls/x", mounts) == "/l/dvr/hls/x"
    assert loopback.rewrite_path("/var/lib/other", mounts) == "/l/var/lib/other"
    # A sibling that merely shares a prefix is not under the mount.
    assert loopback.rewrite_path("/etc/onair/secrets", mounts) == "/etc/onair/secrets"
    assert loopback.rewrite_path("/opt/x", mounts) == "/opt/x"


# ----------------------------------------------------------------------------- configs
def _rewrite(rendered, key: str, ports_base: int = 50000):
    ps = plans(rendered)
    pod_ports = local_ports(ps)
    table = loopback.service_table(services(rendered), ps, pod_ports)
    plan = next(p for p in ps if p.name == f"{LS}-{key}")
    cfg = config(rendered, key)
    ports = {n: local for (ns, name, n), local in pod_ports.items() if name == plan.name}
    for n in loopback.config_ports(cfg) - set(ports):
        ports[n] = ports_base + n
    mounts = loopback.local_mounts(plan, {name: f"/root/{key}/{name}" for name in plan.volumes})
    return cfg, loopback.rewrite_config(cfg, namespace=NS, ports=ports, mounts=mounts, services=table), pod_ports


def test_ingest_config_listens_on_loopback_ports_with_local_secret_files(rendered):
    before, out, ports = _rewrite(rendered, "ingest-backup")
    cfg = out.config
    assert out.ok
    assert cfg["listenHost"] == "127.0.0.1"
    assert cfg["agentPort"] == ports[(NS, f"{LS}-ingest-backup", 8080)]
    assert cfg["rtmpPort"] == ports[(NS, f"{LS}-ingest-backup", 1935)]
    assert cfg["srtPort"] == ports[(NS, f"{LS}-ingest-backup", 9998)]
    assert cfg["streamKeyFile"] == "/root/ingest-backup/credentials/streamKey"
    assert cfg["workDir"] == "/root/ingest-backup/work"
    assert cfg["whipIceAddresses"] == ["127.0.0.1"]
    # Everything else as rendered, and the input untouched.
    assert cfg["slot"] == "backup" and cfg["protocols"] == before["protocols"]
    assert before["listenHost"] == "0.0.0.0" and before["agentPort"] == 8080


def test_transcoder_config_reads_and_uploads_through_local_ports(rendered):
    _, out, ports = _rewrite(rendered, "transcoder")
    cfg = out.config
    assert out.ok
    assert cfg["mainUrl"] == f"rtmp://127.0.0.1:{ports[(NS, f'{LS}-ingest', 1935)]}/live/stream"
    assert cfg["backupUrl"] == f"rtmp://127.0.0.1:{ports[(NS, f'{LS}-ingest-backup', 1935)]}/live/stream"
    assert cfg["outputUrl"] == f"http://127.0.0.1:{ports[(NS, f'{LS}-origin', 8082)]}/upload"
    assert cfg["outputTokenFile"] == "/root/transcoder/credentials/uploadToken"
    assert cfg["agentTokenFile"] == "/root/transcoder/credentials/agentToken"
    assert cfg["ladder"] == config(rendered, "transcoder")["ladder"]


def test_origin_and_recorder_directories_are_their_volumes(rendered):
    _, origin, ports = _rewrite(rendered, "origin")
    assert origin.config["dataDir"] == "/root/origin/data"
    assert origin.config["httpPort"] == ports[(NS, f"{LS}-origin", 8081)]
    assert origin.config["uploadPort"] == ports[(NS, f"{LS}-origin", 8082)]
    _, recorder, _ = _rewrite(rendered, "recorder")
    assert recorder.config["outputDir"] == "/root/recorder/recordings"
    assert recorder.config["sourceUrl"] == f"rtmp://127.0.0.1:{ports[(NS, f'{LS}-ingest', 1935)]}/live/stream"


def test_a_url_to_a_service_without_a_local_pod_is_reported():
    cfg = {
        "role": "transcoder",
        "mainUrl": "rtmp://gone.ns1.svc:1935/live/stream",
        "agentPort": 8080,
        "pullUris": ["https://example.org/a.m3u8"],
    }
    out = loopback.rewrite_config(cfg, namespace="ns1", ports={8080: 41000}, mounts={}, services={})
    assert not out.ok and out.unresolved == ["gone.ns1.svc:1935"]
    assert out.config["pullUris"] == ["https://example.org/a.m3u8"]


def test_every_config_port_needs_a_local_port():
    with pytest.raises(KeyError, match="httpPort=8081"):
        loopback.rewrite_config({"role": "origin", "httpPort": 8081}, namespace="n", ports={}, mounts={}, services={})


def test_config_ports_finds_nested_ports_but_not_booleans():
    assert loopback.config_ports({"agentPort": 8080, "x": [{"httpPort": 81}], "flagPort": True, "port": 9}) == {
        8080,
        81,
    }


def test_args_run_the_same_interpreter_with_local_paths():
    mounts = {"/etc/onair/config.json": "/l/config.json"}
    assert loopback.rewrite_args(
        ("onair", "agent", "origin", "--config", "/etc/onair/config.json"), mounts, "/usr/bin/python3"
    ) == ["/usr/bin/python3", "-m", "onair.cli", "agent", "origin", "--config", "/l/config.json"]
    assert loopback.rewrite_args(("/bin/tool", "/etc/onair/config.json"), mounts, "py") == [
        "/bin/tool",
        "/l/config.json",
    ]


def test_local_endpoints_rewrite_status_urls(rendered):
    ps = plans(rendered)
    ports = local_ports(ps)
    table = loopback.service_table(services(rendered), ps, ports)
    status = {
        "ingest": {
            "rtmp": f"rtmp://{LS}-ingest.{NS}.svc:1935/live",
            "srt": f"srt://{LS}-ingest.{NS}.svc:9998?streamid=publish",
            "backupRtmp": f"rtmp://{LS}-ingest-backup.{NS}.svc:1935/live",
            "rtmps": f"rtmps://{LS}-nothing.{NS}.svc:1936/live",
        },
        "playback": {"hlsCmaf": f"http://{LS}-origin.{NS}.svc:8081/hls/cmaf/master.m3u8"},
    }
    out = loopback.local_endpoints(status, table, NS)
    assert out["ingest"] == {
        "rtmp": f"rtmp://127.0.0.1:{ports[(NS, f'{LS}-ingest', 1935)]}/live",
        "srt": f"srt://127.0.0.1:{ports[(NS, f'{LS}-ingest', 9998)]}?streamid=publish",
        "backupRtmp": f"rtmp://127.0.0.1:{ports[(NS, f'{LS}-ingest-backup', 1935)]}/live",
    }
    assert out["playback"] == {"hlsCmaf": f"http://127.0.0.1:{ports[(NS, f'{LS}-origin', 8081)]}/hls/cmaf/master.m3u8"}
    assert loopback.local_endpoints({}, table, NS) == {"ingest": {}, "playback": {}}


def test_origin_replicas_run_as_one_plan_each_with_their_own_claim_and_name():
    ct = CallType.model_validate(
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "CallType",
            "metadata": {"name": "x"},
            "spec": {"settings": {"origin": {"replicas": 2}, "recording": {"mode": "disabled"}}},
        }
    )
    ls = {"metadata": {"name": LS, "namespace": NS, "uid": "u-1"}, "spec": {"callType": "x"}}
    objects = render_children(ls, ct, OperatorConfig(), generate_credentials()).objects
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    ps = [p for w in workloads for p in loopback.pod_plans(w)]
    replicas = [p for p in ps if p.component == "origin"]
    assert [p.name for p in replicas] == [f"{LS}-origin-0", f"{LS}-origin-1"]
    assert [p.volumes["data"].source for p in replicas] == [f"data-{LS}-origin-0", f"data-{LS}-origin-1"]
    assert all(p.replicas == 1 and p.fingerprint == replicas[0].fingerprint for p in replicas)
    ports = local_ports(ps)
    table = loopback.service_table([o for o in objects if o["kind"] == "Service"], ps, ports)
    # Each replica's own name under the headless Service, and the playback Service on one of them.
    for i in (0, 1):
        assert table[(NS, f"{LS}-origin-{i}.{LS}-origin-peers", 8082)] == ports[(NS, f"{LS}-origin-{i}", 8082)]
    assert table[(NS, f"{LS}-origin", 8081)] == ports[(NS, f"{LS}-origin-0", 8081)]
    tx = json.loads(
        next(o for o in objects if o["metadata"]["name"] == f"{LS}-transcoder" and o["kind"] == "ConfigMap")["data"][
            "config.json"
        ]
    )
    transcoder = next(p for p in ps if p.component == "transcoder")
    tx_ports = {n: local for (ns, name, n), local in ports.items() if name == transcoder.name}
    mounts = loopback.local_mounts(transcoder, {name: f"/root/tx/{name}" for name in transcoder.volumes})
    out = loopback.rewrite_config(tx, namespace=NS, ports=tx_ports, mounts=mounts, services=table)
    assert out.unresolved == [f"{LS}-ingest-backup.{NS}.svc:1935"]  # not turned on: reserved by the runner
    assert out.config["outputUrls"] == [
        f"http://127.0.0.1:{ports[(NS, f'{LS}-origin-{i}', 8082)]}/upload" for i in (0, 1)
    ]
