"""kopf settings: how the framework persists its bookkeeping and talks to the API server.

Built as an object handed to ``kopf.operator(settings=...)`` rather than mutated in a startup
handler, so two operators in one process (tests restarting the operator) never share state.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Iterable, Optional, cast

import kopf

from onair.api.meta import GROUP, MANAGER

FINALIZER = f"{GROUP}/finalizer"
LAST_HANDLED = "last-handled-configuration"

# Children carry this label; the operator watches only objects that have it (server-side
# selector), so it never lists every Secret and ConfigMap of the cluster.
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGER}"
CHILD_RESOURCES = (
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("", "v1", "services"),
    ("", "v1", "persistentvolumeclaims"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    # The playback route when it is an Ingress. HTTPRoutes are not watched: the Gateway API is
    # optional, and a watch on a kind the cluster does not serve would fail the operator.
    ("networking.k8s.io", "v1", "ingresses"),
)


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base with the same result, minus a deep copy of the whole object.

    kopf builds the "essence" of every event of a Livestream by deep-copying the full body
    (status with the effective settings, managedFields) and then dropping metadata and status:
    13% of the operator's CPU while creating 300 Livestreams. Here kopf's own ``build`` gets a
    body without what it would drop anyway. Only public kopf names are used (``build``, the
    documented hook of the public storage class, and ``kopf.Body``), so kopf can be upgraded.
    """

    def build(self, *, body: kopf.Body, extra_fields: Optional[Iterable[Any]] = None) -> Any:
        if not extra_fields:  # extra fields may name status or metadata: then the whole body
            meta = body.get("metadata") or {}
            slim = {k: v for k, v in body.items() if k not in ("metadata", "status")}
            # labels and annotations are kept in the essence; ownerReferences decide its key.
            slim["metadata"] = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
            body = kopf.Body(cast(kopf.RawBody, slim))
        return super().build(body=body, extra_fields=extra_fields)


def build_settings(
    *, instance: Optional[str] = None, request_timeout: float = 30.0, watch_timeout: int = 300
) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()

    settings.persistence.finalizer = FINALIZER
    # Annotations, never status: handler progress in status would be pruned by the structural
    # schema (and would show up as drift in GitOps diffs of the status-less manifests).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = LeanDiffBaseStorage(prefix=GROUP, key=LAST_HANDLED)

    # Our Events are posted explicitly with kopf.event (any level); kopf's own chatter
    # ("Handler ... succeeded") would double every transition, so only its warnings and
    # errors become Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = MANAGER
    settings.posting.reporting_instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
    settings.posting.event_name_prefix = "onair-"
    # An Event that cannot be posted for ~10 s (namespace terminating, API down) is dropped:
    # Events are informative, and a backlog of stale ones helps nobody.
    settings.posting.default_backoffs = (1, 2, 3, 5)

    # One replica (Deployment strategy Recreate): no peering objects to install or race on.
    settings.peering.standalone = True  # one replica, no peering objects

    # Bounded watches: a half-open TCP connection behind a load balancer is noticed and
    # re-established instead of silently stopping all reconciliation.
    # An integer: the API server rejects timeoutSeconds=300.0.
    settings.watching.server_timeout = int(watch_timeout)
    settings.watching.client_timeout = watch_timeout + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = request_timeout
    settings.networking.connect_timeout = 10

    for group, version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, version, plural] = CHILD_SELECTOR
    # Pending ones too: their status says why an agent does not start (onair.controller.owned).
    settings.watching.label_selectors["", "v1", "pods"] = CHILD_SELECTOR

    # kopf SIGKILLs its own thread if it exits for any reason but the stop flag; in-process
    # (tests, `onair dev`) that would kill the whole interpreter. Kubernetes' grace period
    # bounds the real deployment anyway.
    if threading.current_thread() is not threading.main_thread():
        settings.process.ultimate_exiting_timeout = None

    # Handler errors are retried by our own loop with a readable condition; kopf's 60 s default
    # backoff for unexpected errors is too slow for a user watching `kubectl get`.
    settings.execution.default_backoff = 5
    return settings
