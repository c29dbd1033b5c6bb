"""Why an agent's pod is not running, in words for the Livestream's Ready condition.

The operator otherwise only sees that an agent does not answer; the pod says why (a scheduler
that found no room or no bound volume, an image the node cannot get, a crash loop), which is
what the user would have to dig out with `kubectl describe pod`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

# Container waiting reasons that do not resolve by waiting a few seconds.
FAILING_WAIT_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def pod_problem(pod: Mapping[str, Any]) -> Optional[str]:
    """What keeps ``pod`` (a Pod as the API returns it) from running its agent, or None."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    name = meta.get("name", "?")
    status = pod.get("status") or {}
    for cond in status.get("conditions") or ():
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return f"pod {name} cannot be scheduled: {cond.get('message') or 'no reason given'}"
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in FAILING_WAIT_REASONS:
            continue
        text = f"pod {name}: {waiting['reason']}"
        if waiting.get("message"):
            text += f": {waiting['message']}"
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last:
            detail = (last.get("message") or "").strip().splitlines()
            text += (
                f" (last run exited {last.get('exitCode')}"
                + (f", {last['reason']}" if last.get("reason") else "")
                + (f": {detail[-1]}" if detail else "")
                + ")"
            )
        return text
    return None
