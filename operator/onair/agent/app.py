"""What every role shares: config loading, logging, and the agent HTTP API.

Routes every role gets: ``GET /status`` (the role's ``*Status`` from ``onair.api.agent``),
``GET /metrics`` (Prometheus text), ``GET /healthz``, ``PUT /desired`` (``Desired``).
A role adds its own routes to ``Agent.app`` before ``serve()``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Sequence, Type, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from onair.api.agent import Desired

log = logging.getLogger("onair.agent")
C = TypeVar("C", bound=BaseModel)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_config(path: str, model: Type[C]) -> C:
    """Read a role config; a bad file is a clear one-line error, not a traceback."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"onair agent: config file {path} does not exist (is the ConfigMap mounted?)")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"onair agent: config file {path} is not valid JSON: {exc}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SystemExit(f"onair agent: config file {path} is invalid:\n{exc}")


def parse_args(role: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"onair agent {role}")
    parser.add_argument("--config", required=True, help="role config JSON (see onair.api.agent)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def read_secret(path: Optional[str]) -> Optional[str]:
    """Secrets come from mounted files; a missing file means the feature is off, not a crash."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except FileNotFoundError:
        return None


class Agent:
    """HTTP surface + lifecycle for one role. Subclass hooks: ``status()``, ``apply_desired()``."""

    def __init__(self, role: str, host: str, port: int) -> None:
        self.role = role
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.desired = Desired()
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app.add_routes([
            web.get("/status", self._get_status),
            web.get("/metrics", self._get_metrics),
            web.get("/healthz", self._get_healthz),
            web.put("/desired", self._put_desired),
        ])
        self._runner: Optional[web.AppRunner] = None
        self._stop = asyncio.Event()

    # hooks ------------------------------------------------------------------------------
    def status(self) -> BaseModel:
        raise NotImplementedError

    async def apply_desired(self, desired: Desired) -> None:
        """Converge on ``desired``; default: just remember it."""

    def before_scrape(self) -> None:
        """Bring gauges up to date right before ``/metrics`` is rendered (none by default)."""

    # http -------------------------------------------------------------------------------
    async def _get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status().model_dump(by_alias=True, mode="json"))

    async def _get_metrics(self, request: web.Request) -> web.Response:
        self.before_scrape()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _get_healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _put_desired(self, request: web.Request) -> web.Response:
        try:
            merged = {**self.desired.model_dump(), **Desired.model_validate(await request.json()).model_dump(exclude_unset=True)}
            desired = Desired.model_validate(merged)
        # RecursionError: JSON nested deeper than the parser's recursion limit ([[[[...).
        except (ValidationError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            return web.json_response({"error": f"invalid desired state: {exc}"}, status=400)
        self.desired = desired
        await self.apply_desired(desired)
        return web.json_response(desired.model_dump(by_alias=True, mode="json"))

    # lifecycle --------------------------------------------------------------------------
    async def start_http(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            raise SystemExit(
                f"onair agent {self.role}: cannot listen on {self.host}:{self.port}: {exc.strerror}. "
                "Another process holds the port; free it or set agentPort in the config.")
        log.info("%s agent API on http://%s:%s", self.role, self.host, self.port)

    async def stop_http(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_for_stop_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self._stop.wait()


def run(main_coro: Callable[[], Awaitable[None]]) -> int:
    try:
        asyncio.run(main_coro())
    except KeyboardInterrupt:
        pass
    return 0


def run_role(role: str, argv: list[str], config_model: Type[C], serve: Callable[[C], Awaitable[None]],
             quiet_loggers: Sequence[str] = ()) -> int:
    """The whole of ``onair agent <role>``: arguments, logging, the config, then ``serve(config)``
    until it returns. ``quiet_loggers`` stay at INFO or above even at ``--log-level DEBUG``."""
    args = parse_args(role, argv)
    setup_logging(args.log_level)
    for name in quiet_loggers:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    config = load_config(args.config, config_model)
    return run(lambda: serve(config))


async def serve_until_stopped(agent: Any) -> None:
    """The lifecycle of a role whose agent has ``start()`` and ``async shutdown()`` besides the
    ``Agent`` HTTP API: serve, start, wait for SIGTERM/SIGINT, shut down, stop serving."""
    await agent.start_http()
    agent.start()
    try:
        await agent.wait_for_stop_signal()
    finally:
        await agent.shutdown()
        await agent.stop_http()
