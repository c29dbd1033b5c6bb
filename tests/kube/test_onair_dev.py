"""`onair dev --runtime node` as a developer runs it: one command, then a Livestream created with
the printed kubeconfig goes live from an encoder on this machine pushing to the printed URL, and
plays from the printed URL; Ctrl-C leaves nothing of the node behind.

Starts its own node (the command under test does), so it needs no node fixture.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.cluster import official_client, wait_for
from tests.fixtures.kube import ffmpeg_push, livestream_status, pod_problems, restricted_namespace, restricted_pod

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def _printed(log: Path, what: str, namespace: str, name: str) -> str:
    """The URL `onair dev` printed for one key of a Livestream (the last block printed wins)."""
    text = log.read_text(errors="replace")
    blocks = text.split(f"Livestream {namespace}/{name} on the node:")
    if len(blocks) < 2:
        return ""
    found = re.search(rf"^  {what}\s+(\S+)$", blocks[-1], re.M)
    return found.group(1) if found else ""


SCRAPE = (
    "import urllib.request\n"
    "print(urllib.request.urlopen('http://onair-operator-metrics.onair-system.svc:8090/metrics', "
    "timeout=10).read().decode())\n"
)


def _scrape_operator_metrics(api, namespace: str) -> dict:
    from kubernetes import client
    from prometheus_client.parser import text_string_to_metric_families

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    image = apps.read_namespaced_deployment("onair-operator", "onair-system").spec.template.spec.containers[0].image
    pod = restricted_pod("scrape", image, ["python3", "-c", SCRAPE])
    pod["spec"]["restartPolicy"] = "Never"
    core.create_namespaced_pod(namespace, pod)
    phase = wait_for(
        lambda: (p := core.read_namespaced_pod("scrape", namespace).status.phase) in ("Succeeded", "Failed") and p,
        120,
        interval=1,
        what="the scrape pod to finish",
    )
    text = core.read_namespaced_pod_log("scrape", namespace)
    assert phase == "Succeeded", f"{text}\n{pod_problems(core, namespace)}"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.timeout(1200)
def test_onair_dev_on_the_node_takes_a_push_and_plays_it(tmp_path):
    from kubernetes import client

    kubeconfig = tmp_path / "kubeconfig"
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "onair.cli", "dev", "--runtime", "node", "--kubeconfig", str(kubeconfig)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    encoder = None
    try:
        wait_for(
            lambda: dev.poll() is not None or "onair dev ready" in log.read_text(errors="replace"),
            900,
            interval=1,
            what="onair dev ready",
        )
        assert dev.poll() is None, log.read_text(errors="replace")[-5000:]
        assert "onair dev runtime: node (--runtime node)" in log.read_text()

        api = official_client(kubeconfig)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        ns = restricted_namespace(core, "dev-streams")
        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": "show"},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "broadcasting": {
                            "hls": {"qualityTracks": ["360p"]},
                            "segmentDurationSeconds": 1,
                            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
                        },
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        rtmp = wait_for(
            lambda: _printed(log, r"push  rtmp", ns, "show"), 300, interval=1, what="the printed RTMP push URL"
        )
        secret = core.read_namespaced_secret("show-credentials", ns)
        key = base64.b64decode(secret.data["streamKey"]).decode()
        encoders: list[subprocess.Popen] = []

        def live() -> bool:
            # An encoder whose connection dropped dials again, as OBS does.
            if not encoders or encoders[-1].poll() is not None:
                encoders.append(
                    subprocess.Popen(
                        ffmpeg_push("flv", f"{rtmp}/{key}"),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                    )
                )
            return livestream_status(custom, ns, "show").get("live") is True

        encoder = encoders
        wait_for(live, 180, interval=1, what="status.live after pushing to the printed URL")

        play = wait_for(
            lambda: _printed(log, r"play  hlsCmaf", ns, "show"), 60, interval=1, what="the printed HLS play URL"
        )

        def master() -> str:
            with urllib.request.urlopen(play, timeout=5) as resp:
                return resp.read().decode()

        assert "#EXTM3U" in wait_for(master, 90, interval=1, what=f"the master playlist at {play}")

        # The operator pod's own metrics answer through the chart's metrics Service, from a pod (as
        # Prometheus scrapes), and count what just happened.
        samples = _scrape_operator_metrics(api, ns)
        assert samples[("onair_operator_livestreams_live", ())] == 1
        assert samples[("onair_operator_reconciles_total", (("outcome", "ok"),))] >= 1
        assert samples[("onair_operator_agent_polls_total", (("outcome", "ok"), ("role", "origin")))] >= 1
        assert samples[("onair_operator_kube_request_duration_seconds_count", (("operation", "apply"),))] >= 6
        api.close()
    except BaseException:
        print(log.read_text(errors="replace")[-8000:])
        raise
    finally:
        for running in encoder or ():
            if running.poll() is None:
                running.terminate()
                running.wait(10)
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(180)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait(10)
    text = log.read_text(errors="replace")
    assert dev.returncode == 0, text[-5000:]
    assert "left behind" not in text
