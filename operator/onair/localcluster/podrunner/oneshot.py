"""One-shot pods: a bare pod of the operator's (no ReplicaSet owns it) with ``restartPolicy: Never``
(the pod that deletes a Recording's files) runs once to completion, its volumes as for any pod,
and its phase and container state are written into its status as the kubelet would
(``Succeeded``/``Failed``, exit code, the output's tail as the termination message of a failed run
with ``FallbackToLogsOnError``); ``activeDeadlineSeconds`` bounds it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .. import loopback
from ..loopback import PlanError
from . import apiserver
from .pods import LocalPod, Pending
from .processes import agent_env
from .volumes import Volumes

# What a failed run's termination message keeps of its output, as the kubelet bounds it.
MESSAGE_LINES = 80
MESSAGE_BYTES = 2048


def wants_a_run(pod: dict[str, Any]) -> bool:
    """A bare, not yet finished, not deleted pod that runs once."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    return (
        spec.get("restartPolicy") == "Never"
        and not meta.get("deletionTimestamp")
        and not any(o.get("kind") == "ReplicaSet" for o in meta.get("ownerReferences") or ())
        and status.get("phase") not in ("Succeeded", "Failed")
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_one_shot(
    manifest: dict[str, Any],
    *,
    api: Any,
    volumes: Volumes,
    log_path: Path,
    stop: threading.Event,
    note: Callable[[tuple[str, str], Optional[str]], None],
    log: Callable[[str], None],
) -> None:
    """Run a one-shot pod's container to completion and report it in the pod's status."""
    meta, spec = manifest["metadata"], manifest["spec"]
    as_deployment = {"metadata": meta, "spec": {"replicas": 1, "template": {"metadata": meta, "spec": spec}}}
    key = (meta["namespace"], meta["name"])
    try:
        plan = loopback.pod_plan(as_deployment)
    except PlanError as exc:
        note(key, f"cannot run locally: {exc}")
        return
    pod = LocalPod(plan, log_path)
    started = _now()
    deadline = spec.get("activeDeadlineSeconds")
    while not stop.is_set():
        try:
            argv = volumes.materialize(pod)
            break
        except Pending as exc:
            note(key, str(exc))
            stop.wait(1.0)
    else:
        return
    note(key, None)
    log(f"running one-shot pod {key[0]}/{key[1]}: {' '.join(argv)}")
    reason: Optional[str] = None
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=agent_env(pod.tag),
            cwd=str(volumes.pod_dir(plan)),
            stdin=subprocess.DEVNULL,
            timeout=float(deadline) if deadline else None,
        )
        code, output = done.returncode, (done.stdout + done.stderr).strip()
    except subprocess.TimeoutExpired as exc:
        code, output, reason = 137, str(exc), "DeadlineExceeded"
    except OSError as exc:
        code, output = 128, f"cannot run {argv[0]}: {exc.strerror or exc}"
    pod.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(pod.log_path, "a") as out:
        out.write(f"{output}\n===== exited with code {code}\n")
    [container] = spec["containers"]
    fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    terminated: dict[str, Any] = {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": started,
        "finishedAt": _now(),
    }
    if code != 0 and fallback:
        terminated["message"] = "\n".join(output.splitlines()[-MESSAGE_LINES:])[-MESSAGE_BYTES:]
    status: dict[str, Any] = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "startTime": started,
        "containerStatuses": [
            {
                "name": container["name"],
                "ready": False,
                "restartCount": 0,
                "image": container.get("image", ""),
                "imageID": "",
                "state": {"terminated": terminated},
            }
        ],
    }
    if reason:
        status["reason"] = reason
    try:
        apiserver.patch_pod_status(api, key[0], key[1], status)  # a pod already gone is not reported
    except Exception as exc:  # noqa: BLE001 - the API may be restarting; the exit is in the log
        log(f"cannot report one-shot pod {key[0]}/{key[1]}: {getattr(exc, 'reason', None) or exc}")
    log(f"one-shot pod {key[0]}/{key[1]} exited with code {code}")
