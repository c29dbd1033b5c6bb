"""onair dev's fallback runtime: the pod runner (``onair.localcluster.podrunner``) follows
Deployments as it stands in for a kubelet where no real node can run.

These test onair dev's fallback runtime, not Kubernetes: what a real kubelet does to the same pods
(one role's new template, a killed agent, Secret volumes resynced, a backup ingest turned on later,
readiness) is tested on the real node in tests/kube/test_pods_as_kubernetes_runs_them.py. Here the
runner must imitate it well enough for ``onair dev``: its own loopback ports, local secret files
and process trees.

The children of a Livestream are rendered (``render_children``) and applied by the test, with no
Livestream object and no ownerReferences, so the operator leaves them alone and every change
here is one the test makes: a new pod template, a crash, a scale to 0, a deletion.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import urllib.request
from pathlib import Path

import pytest

from onair.api.calltype import CallType
from onair.api.operator_config import OperatorConfig
from onair.localcluster import apply
from onair.render.children import render_children
from onair.render.credentials import generate_credentials
from tests.fixtures.media import process_alive, wait_for
from tests.fixtures.podrunner import podrunner  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(600)]

LS = "solo"
KEYS = ("ingest", "transcoder", "origin")
SETTINGS = {
    "ingest": {"protocols": ["rtmp"]},
    "recording": {"mode": "disabled"},
    "broadcasting": {"mode": "available", "hls": {"qualityTracks": ["240p"]}},
}


def rendered(namespace: str, dvr_seconds: int = 600, backup: bool = False) -> list[dict]:
    settings = {**SETTINGS, "dvr": {"durationSeconds": dvr_seconds}, "ingest": {**SETTINGS["ingest"], "backup": backup}}
    ct = CallType.model_validate(
        {
            "apiVersion": "onair.dev/v1alpha1",
            "kind": "CallType",
            "metadata": {"name": "c"},
            "spec": {"settings": settings},
        }
    )
    ls = {"metadata": {"name": LS, "namespace": namespace, "uid": "not-a-livestream"}, "spec": {"callType": "c"}}
    objects = render_children(ls, ct, OperatorConfig(), CREDS).objects
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)  # no owner: the garbage collector keeps them
    return objects


CREDS = generate_credentials()


def get_json(url: str) -> dict:
    """An agent's answer, asked as the operator does (with the agent token its pod mounts)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {CREDS.agent_token}"})
    with opener.open(request, timeout=5) as resp:
        return json.loads(resp.read())


def pods(runner) -> dict[str, object]:
    return {p.component: p for p in runner.pods(None, LS) if p.ready}


def test_runner_follows_templates_crashes_scaling_and_deletion(podrunner, kube, sync_kube, namespace):  # noqa: F811
    runner = podrunner

    def diag() -> str:
        return (
            "\n"
            + "\n".join(f"{k}: {runner.status(namespace, f'{LS}-{k}')}" for k in KEYS)
            + "\n"
            + runner.logs(namespace, LS, 20)
        )

    def until(predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout, interval=0.3, what=what)
        except TimeoutError as exc:
            pytest.fail(f"{exc}{diag()}", pytrace=False)

    apply.apply_documents(sync_kube, rendered(namespace))
    first = until(lambda: (lambda p: p if set(p) == set(KEYS) else None)(pods(runner)), 90, "three ready agents")
    for key in KEYS:
        url = runner.resolver(namespace, LS, key)
        assert url and url.startswith("http://127.0.0.1:")
        assert get_json(f"{url}/status")["role"] == key

    # Secrets: 0600 files in a private directory outside the runner's root, never in a config.
    config = json.loads(
        (
            runner.root / "namespaces" / namespace / "pods" / f"{LS}-ingest" / "volumes" / "config" / "config.json"
        ).read_text()
    )
    key_file = Path(config["streamKeyFile"])
    assert not key_file.is_relative_to(runner.root)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key_file.read_text() == CREDS.stream_key
    assert CREDS.stream_key not in json.dumps(config)

    # A new pod template (the origin's config hash) restarts the origin only, on the same ports.
    origin_ports = dict(first["origin"].ports)
    apply.apply_documents(sync_kube, rendered(namespace, dvr_seconds=900))
    origin = until(
        lambda: (lambda p: p.get("origin") if p.get("origin") and p["origin"].pid != first["origin"].pid else None)(
            pods(runner)
        ),
        60,
        "the origin restarted with its new config",
    )
    assert origin.ports == origin_ports
    assert get_json(f"{runner.resolver(namespace, LS, 'origin')}/status")["dvrWindowSeconds"] == 900
    now = pods(runner)
    assert now["ingest"].pid == first["ingest"].pid and now["transcoder"].pid == first["transcoder"].pid
    assert not process_alive(first["origin"].pid)

    # A crashed agent is restarted, and what it started (nginx) does not outlive it.
    ingest_family = runner.pids(namespace, LS, f"{LS}-ingest")
    assert len(ingest_family) > 1, f"the ingest agent and its nginx expected, got {ingest_family}"
    os.kill(now["ingest"].pid, signal.SIGKILL)
    restarted = until(
        lambda: (lambda p: p.get("ingest") if p.get("ingest") and p["ingest"].pid != now["ingest"].pid else None)(
            pods(runner)
        ),
        60,
        "the killed ingest restarted",
    )
    assert restarted.ports == now["ingest"].ports
    until(lambda: not [p for p in ingest_family if process_alive(p)], 20, "nothing of the killed ingest left")

    # Scaled to 0: stopped; back to 1: started again.
    kube.apps.patch_namespaced_deployment(f"{LS}-transcoder", namespace, {"spec": {"replicas": 0}})
    until(
        lambda: "transcoder" not in pods(runner) and not process_alive(now["transcoder"].pid), 60, "transcoder stopped"
    )
    assert runner.resolver(namespace, LS, "transcoder") is None
    kube.apps.patch_namespaced_deployment(f"{LS}-transcoder", namespace, {"spec": {"replicas": 1}})
    until(lambda: "transcoder" in pods(runner), 60, "transcoder started again")

    # Deleted: every process goes, the claims' directories stay.
    family = runner.pids(namespace, LS)
    assert len(family) > len(KEYS), f"agents and their children expected, got {family}"
    for key in KEYS:
        kube.apps.delete_namespaced_deployment(f"{LS}-{key}", namespace)
    until(
        lambda: not runner.pods(None, LS) and not [p for p in family if process_alive(p)], 60, "every process stopped"
    )
    assert (runner.root / "namespaces" / namespace / "volumes").is_dir()
    assert [
        d.name
        for d in (runner.root / "namespaces" / namespace / "volumes").iterdir()
        if d.name.startswith(f"{LS}-dvr-")
    ]
    until(lambda: not key_file.exists(), 10, "the secret files removed with their pod")


def test_a_backup_ingest_turned_on_later_gets_the_port_the_transcoder_already_reads(
    podrunner,
    sync_kube,  # noqa: F811
    namespace,
):
    """The transcoder's config names the backup ingest before it exists (so turning it on restarts
    nothing): in the runner, where that name becomes a loopback port, its local process starts
    anyway, and the backup ingest, when it comes, listens exactly where the transcoder already
    looks (on a real node the Service name does this: tests/kube/test_pods_as_kubernetes_runs_them.py)."""
    runner = podrunner
    apply.apply_documents(sync_kube, rendered(namespace))
    first = wait_for(
        lambda: (lambda p: p if set(p) == set(KEYS) else None)(pods(runner)),
        90,
        what=f"three ready agents{runner.logs(namespace, LS, 20)}",
    )
    config_path = (
        runner.root / "namespaces" / namespace / "pods" / f"{LS}-transcoder" / "volumes" / "config" / "config.json"
    )
    backup_url = json.loads(config_path.read_text())["backupUrl"]
    assert backup_url.startswith("rtmp://127.0.0.1:"), backup_url

    apply.apply_documents(sync_kube, rendered(namespace, backup=True))
    backup = wait_for(lambda: (lambda p: p.get("ingest-backup"))(pods(runner)), 90, what="the backup ingest ready")
    assert backup_url.startswith(f"rtmp://127.0.0.1:{backup.ports['rtmp']}/"), (backup_url, backup.ports)
    assert pods(runner)["transcoder"].pid == first["transcoder"].pid, "the transcoder was not restarted"
