"""`onair run`, and ``run_operator`` for running the operator in-process (tests, `onair dev`).

The kopf registry is built per call from the handler modules' ``register`` functions, never at
import time, so importing the handlers twice (or running two operators one after the other in
one interpreter) cannot register anything twice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import kopf

from onair import kube as kubeclient
from onair.api.operator_config import OperatorConfig

from . import calltype, livestream, owned, recordings
from .metrics import MetricsPortUnavailable, OperatorMetrics, serve as serve_metrics
from .agent_client import AgentClient, ReplicasResolver, Resolver
from .refusals import DEFAULT_INTERVAL_SECONDS
from .runtime import Runtime
from .kopf_settings import build_settings

log = logging.getLogger("onair.controller")


def connection_info(config: kubeclient.SingleConfig) -> kopf.ConnectionInfo:
    """What kopf needs to watch the cluster our client talks to, with the same credentials."""
    cluster, user = config.cluster, config.user or kubeclient.User()

    def path(name: Optional[str]) -> Optional[str]:
        return str(config.abs_file(name)) if name else None  # relative to the kubeconfig file

    token = user.token
    if user.token_file:
        # In-cluster the projected token rotates: read again at every login.
        token = Path(path(user.token_file) or "").read_text().strip()
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=path(cluster.certificate_auth),
        ca_data=cluster.certificate_auth_data,
        insecure=bool(cluster.insecure),
        username=user.username,
        password=user.password,
        token=token,
        certificate_path=path(user.client_cert),
        certificate_data=user.client_cert_data,
        private_key_path=path(user.client_key),
        private_key_data=user.client_key_data,
        default_namespace=config.context.namespace,
    )


def build_registry(
    rt: Runtime, kube_config: kubeclient.SingleConfig, *, pod_addresses: bool, namespaces: Sequence[str] = ()
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as our own client (re-read on every call: in-cluster tokens rotate).
        return connection_info(kube_config)

    @kopf.on.startup(registry=registry)
    async def capture_indexes(**kwargs: Any) -> None:
        # Indexes are handed to handlers as kwargs only; the runtime needs them from anywhere.
        rt.calltype_index = kwargs["calltypes_by_name"]
        rt.users_index = kwargs["livestreams_by_calltype"]
        rt.child_indexes = [kwargs[index_id] for index_id in owned.CHILD_INDEXES]
        rt.webhooks.start(namespaces)

    @kopf.on.cleanup(registry=registry)
    async def close_http(**_: Any) -> None:
        await rt.webhooks.stop()
        await rt.calltype_status.close()
        await rt.agent_client.close()

    calltype.register(registry, rt)
    livestream.register(registry, rt)
    recordings.register(registry, rt)
    owned.register(registry, rt, pod_addresses=pod_addresses)
    return registry


async def operator(
    *,
    kubeconfig: Optional[str] = None,
    context: Optional[str] = None,
    namespaces: Optional[Sequence[str]] = None,
    resolver: Optional[Resolver] = None,
    replicas_resolver: Optional[ReplicasResolver] = None,
    config: Optional[OperatorConfig] = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
    liveness_endpoint: Optional[str] = None,
    resync_seconds: float = 600.0,
    agent_timeout: float = 2.0,
    broadcast_grace_seconds: float = 20.0,
    refusal_event_interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
) -> None:
    """Run until ``stop_flag`` is set (or a signal, in the main thread)."""
    config = config or OperatorConfig.from_env()
    namespaces = list(namespaces if namespaces is not None else config.watch_namespaces)
    kube_config = await asyncio.to_thread(kubeclient.load_config, kubeconfig, context)
    metrics = OperatorMetrics()
    kube = kubeclient.Kube(kube_config, request_timeout=30.0, on_request=metrics.kube_request)
    holder: dict[str, Runtime] = {}

    def default_resolver(namespace: str, name: str, role_key: str) -> Optional[str]:
        return holder["rt"].pod_resolver(namespace, name, role_key)

    def default_replicas(namespace: str, name: str, role_key: str) -> list[str]:
        return holder["rt"].replica_resolver(namespace, name, role_key)

    agent_client = AgentClient(
        resolver or default_resolver,
        timeout=agent_timeout,
        replicas=replicas_resolver or (default_replicas if resolver is None else None),
    )
    rt = Runtime(
        config,
        kube,
        agent_client,
        resync_seconds=resync_seconds,
        broadcast_grace_seconds=broadcast_grace_seconds,
        refusal_event_interval_seconds=refusal_event_interval_seconds,
        metrics=metrics,
    )
    holder["rt"] = rt
    rt.stagger_ingest_rollouts = resolver is None
    registry = build_registry(rt, kube_config, pod_addresses=resolver is None, namespaces=namespaces)
    # Standalone: no kopf peering; one operator replica reconciles (the chart runs exactly one).
    settings = build_settings()
    log.info(
        "onair operator starting: %s, poll every %ss",
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
        config.status_poll_interval_seconds,
    )
    metrics_server = None
    try:
        if config.metrics_port is not None:
            metrics_server = await serve_metrics(metrics, config.metrics_port)
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=liveness_endpoint,
        )
    finally:
        if metrics_server is not None:
            await metrics_server.cleanup()
        await agent_client.close()
        await kube.close()


def run_operator(
    kubeconfig: Optional[str] = None,
    namespaces: Optional[Sequence[str]] = None,
    resolver: Optional[Resolver] = None,
    replicas_resolver: Optional[ReplicasResolver] = None,
    stop_flag: Optional[threading.Event] = None,
    ready_flag: Optional[threading.Event] = None,
    **kwargs: Any,
) -> None:
    """Blocking: run the operator on a fresh event loop in the calling thread.

    From tests: ``threading.Thread(target=run_operator, kwargs=dict(kubeconfig=..., stop_flag=ev))``;
    setting ``stop_flag`` makes it return. ``resolver`` maps (namespace, livestream, role key) to an
    agent base URL (default: the agent pods' IPs from a pods watch); ``replicas_resolver`` to every
    replica's of a replicated agent (the origin's).
    """
    asyncio.run(
        operator(
            kubeconfig=kubeconfig,
            namespaces=namespaces,
            resolver=resolver,
            replicas_resolver=replicas_resolver,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **kwargs,
        )
    )


# What kopf and its liveness server log at INFO for every watch event of every object ("Handler
# 'calltype-count' succeeded.") and every kubelet probe, and what the Kubernetes client's HTTP
# library logs for every request: lines a second per live Livestream, which bury the operator's
# own messages. Shown with --verbose (the chart's logLevel: verbose).
PER_OBJECT_LOGGERS = ("kopf.objects", "aiohttp.access", "httpx2")


def configure_logging(*, verbose: bool = False, debug: bool = False) -> None:
    kopf.configure(verbose=verbose, debug=debug)
    level = logging.NOTSET if verbose or debug else logging.WARNING
    for name in PER_OBJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="onair run",
        description="Run the onair operator against the current kubeconfig or, inside a Pod, its ServiceAccount.",
    )
    scope = ap.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; default ONAIR_WATCH_NAMESPACES or all)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    ap.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    ap.add_argument("--context", default=None, help="kubeconfig context")
    ap.add_argument(
        "--liveness", default=None, metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)

    configure_logging(verbose=args.verbose, debug=args.debug)
    try:
        config = OperatorConfig.from_env()
    except ValueError as exc:
        print(f"onair run: {exc}", file=sys.stderr)
        return 2
    namespaces: Optional[list[str]] = [] if args.all_namespaces else args.namespace
    try:
        asyncio.run(
            operator(
                kubeconfig=args.kubeconfig,
                context=args.context,
                namespaces=namespaces,
                config=config,
                liveness_endpoint=args.liveness,
            )
        )
    except KeyboardInterrupt:
        return 130
    except MetricsPortUnavailable as exc:
        print(f"onair run: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. no kubeconfig: one readable line, not a traceback
        if isinstance(exc, kubeclient.ConfigError):
            print(f"onair run: cannot find cluster credentials: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
