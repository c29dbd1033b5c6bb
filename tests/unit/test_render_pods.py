from onair.render.pods import pod_problem


def _pod(status: dict, **meta) -> dict:
    return {"metadata": {"name": "show-recorder-abc", **meta}, "status": status}


def test_unschedulable_pod_says_what_the_scheduler_said():
    pod = _pod(
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                }
            ],
        }
    )
    assert pod_problem(pod) == (
        "pod show-recorder-abc cannot be scheduled: 0/1 nodes are available: "
        "pod has unbound immediate PersistentVolumeClaims."
    )


def test_crash_loop_names_the_last_exit():
    pod = _pod(
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "recorder",
                    "ready": False,
                    "restartCount": 3,
                    "state": {
                        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 2,
                            "reason": "Error",
                            "message": "usage: ...\nonair: unknown command 'onair'\n",
                        }
                    },
                }
            ],
        }
    )
    assert pod_problem(pod) == (
        "pod show-recorder-abc: CrashLoopBackOff: back-off 40s restarting failed container "
        "(last run exited 2, Error: onair: unknown command 'onair')"
    )


def test_image_the_node_cannot_get():
    pod = _pod(
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "recorder",
                    "state": {
                        "waiting": {
                            "reason": "ErrImageNeverPull",
                            "message": 'Container image "x" is not present with pull policy of Never',
                        }
                    },
                }
            ],
        }
    )
    assert pod_problem(pod) == (
        'pod show-recorder-abc: ErrImageNeverPull: Container image "x" is not present with pull policy of Never'
    )


def test_starting_running_and_terminating_pods_have_no_problem():
    assert (
        pod_problem(
            _pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [{"name": "recorder", "state": {"waiting": {"reason": "ContainerCreating"}}}],
                }
            )
        )
        is None
    )
    assert (
        pod_problem(
            _pod(
                {
                    "phase": "Running",
                    "containerStatuses": [{"name": "recorder", "ready": True, "state": {"running": {}}}],
                }
            )
        )
        is None
    )
    assert (
        pod_problem(
            _pod(
                {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x"}
                    ],
                },
                deletionTimestamp="2026-01-01T00:00:00Z",
            )
        )
        is None
    )
