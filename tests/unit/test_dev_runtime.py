"""`onair dev`: which runtime it picks and what it says; the node runtime's chart values and URLs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onair.localcluster import devnode, devruntime
from onair.localcluster.devruntime import AUTO, NODE, PROCESS, choose

NOT_ROOT = "root (the node creates a network namespace, cgroups and mounts; run as root)"


def test_auto_runs_the_node_when_the_machine_can_at_once():
    choice = choose(AUTO, [], [])
    assert choice.runtime == NODE
    assert "runtime: node" in choice.message and "helm" in choice.message
    assert "--runtime process" in choice.message  # how to choose the other one


def test_auto_falls_back_to_the_process_runner_saying_what_is_missing_and_what_is_simulated():
    choice = choose(AUTO, [NOT_ROOT], [])
    assert choice.runtime == PROCESS
    assert "runtime: process, because the real node cannot run here: root" in choice.message
    assert "Falling back to the process runner" in choice.message
    for simulated in ("no kubelet", "rewritten for loopback", "local processes", "RBAC"):
        assert simulated in choice.message, simulated


def test_auto_does_not_start_a_long_first_build_but_says_how_to():
    choice = choose(AUTO, [], ["kubernetes-node", "coredns"])
    assert choice.runtime == PROCESS
    assert "kubernetes-node, coredns are not built yet" in choice.message
    assert "onair dev --runtime node" in choice.message
    assert "onair localcluster build kubernetes-node coredns" in choice.message


def test_forced_node_builds_what_is_missing_but_refuses_a_machine_that_cannot_run_it():
    building = choose(NODE, [], ["coredns"])
    assert building.runtime == NODE and "Building coredns first" in building.message
    refused = choose(NODE, [NOT_ROOT, "the node's Debian packages: runc (runc)"], [])
    assert refused.runtime is None
    assert (
        "cannot run on this machine" in refused.message
        and "runc (runc)" in refused.message
        and "root" in refused.message
    )
    assert "--runtime process" in refused.message


def test_forced_process_says_what_it_simulates_whatever_the_machine():
    choice = choose(PROCESS, [], [])
    assert choice.runtime == PROCESS
    assert choice.message.startswith("runtime: process (--runtime process)")
    assert devruntime.PROCESS_SIMULATES in choice.message


def test_an_unknown_runtime_is_an_error():
    with pytest.raises(ValueError, match="auto, node, process"):
        choose("kind", [], [])


def test_node_only_options_are_refused_with_the_node_runtime():
    proc = subprocess.run(
        [sys.executable, "-m", "onair.cli", "dev", "--runtime", "node", "--no-operator"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--no-operator and --no-media are process-runtime options" in proc.stderr


def test_unbuilt_lists_only_stale_components(tmp_path, monkeypatch):
    from onair.localcluster import build

    monkeypatch.setenv("ONAIR_CACHE", str(tmp_path))  # an empty cache: nothing is built
    assert build.unbuilt(list(devruntime.NODE_BUILDS)) == [
        c.name for c in build.components() if c.name in devruntime.NODE_BUILDS
    ]
    assert build.unbuilt([]) == []


# ----------------------------------------------------------------------------- the node runtime


def test_the_chart_is_installed_with_the_imported_image_never_pulled_and_nodeport_ingest(tmp_path):
    args = devnode.helm_install_args("localhost/onair", "0.1.0-abc", tmp_path / "chart")
    pairs = {args[i + 1] for i, a in enumerate(args) if a in ("--set", "--set-string")}
    assert {
        "image.repository=localhost/onair",
        "image.tag=0.1.0-abc",
        "image.pullPolicy=Never",
        "livestreams.ingest.serviceType=NodePort",
    } <= pairs
    assert args[:4] == ["install", "onair", str(tmp_path / "chart"), "--namespace"]
    assert "--wait" in args
    # Small requests so the node (this machine's cores) schedules a whole Livestream.
    assert "livestreams.resources.transcoder.requests.cpu=100m" in pairs


def test_the_dev_playback_service_selects_exactly_the_origin_pod_and_goes_with_the_livestream():
    from onair.api.meta import labels

    ls = {"metadata": {"name": "show", "namespace": "team", "uid": "u-1"}}
    svc = devnode.playback_service(ls)
    assert svc["metadata"]["name"] == "show-dev-playback" and svc["metadata"]["namespace"] == "team"
    assert svc["metadata"]["ownerReferences"] == [
        {"apiVersion": "onair.dev/v1alpha1", "kind": "Livestream", "name": "show", "uid": "u-1"}
    ]
    # Not the operator's: its pruning and drift correction never touch it.
    assert svc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "onair-dev"
    assert svc["spec"]["selector"].items() <= labels("show", "origin").items()
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "origin"
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}]


def test_local_urls_are_the_ones_that_work_from_this_machine():
    status = {
        "ingest": {"rtmp": "rtmp://10.201.0.2:31935/live", "srt": "srt://show-ingest.team.svc:9998", "whip": None},
        "playback": {
            "hlsCmaf": "http://show-origin.team.svc:8081/hls/cmaf/master.m3u8",
            "player": "http://show-origin.team.svc:8081/player.html?x=1",
        },
    }
    urls = devnode.local_urls(status, "show", "team", "10.201.0.2", 30081, {"ingest", "origin"})
    # The SRT URL still names the Service (its nodePort not seen yet): not shown.
    assert urls["ingest"] == {"rtmp": "rtmp://10.201.0.2:31935/live"}
    assert urls["playback"] == {
        "hlsCmaf": "http://10.201.0.2:30081/hls/cmaf/master.m3u8",
        "player": "http://10.201.0.2:30081/player.html?x=1",
    }
    assert devnode.local_urls(status, "show", "team", "10.201.0.2", None, {"ingest", "origin"})["playback"] == {}


def test_local_urls_wait_for_the_pod_behind_them_to_be_ready():
    status = {
        "ingest": {"rtmp": "rtmp://10.201.0.2:31935/live", "backupRtmp": "rtmp://10.201.0.2:31936/live"},
        "playback": {"hlsCmaf": "http://show-origin.team.svc:8081/hls/cmaf/master.m3u8"},
    }
    assert devnode.local_urls(status, "show", "team", "10.201.0.2", 30081, set()) == {"ingest": {}, "playback": {}}
    urls = devnode.local_urls(status, "show", "team", "10.201.0.2", 30081, {"ingest-backup"})
    assert urls == {"ingest": {"backupRtmp": "rtmp://10.201.0.2:31936/live"}, "playback": {}}
    urls = devnode.local_urls(status, "show", "team", "10.201.0.2", 30081, {"ingest", "origin"})
    assert set(urls["ingest"]) == {"rtmp"} and set(urls["playback"]) == {"hlsCmaf"}
