"""What every role shares: config loading, logging, and the agent HTTP API.

Routes every role gets: ``GET /status`` (the role's ``*Status`` from ``onair.api.agent``),
``GET /metrics`` (Prometheus text), ``GET /healthz``, ``PUT /desired`` (``Desired``).
A role adds its own routes to ``Agent.app`` before ``serve()``.

The agent API is the control plane's: with ``agentTokenFile`` configured (the operator always
does), every call except ``open_paths`` must carry ``Authorization: Bearer <agent token>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional, Sequence, Type, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from onair.api.agent import Desired

log = logging.getLogger("onair.agent")
C = TypeVar("C", bound=BaseModel)

# Kubelet probes and Prometheus scrapes cannot carry a per-Livestream secret, and these answer
# nothing that needs one: liveness, and counters labelled with the livestream's name.
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
AUTH_REALM = 'Bearer realm="onair-agent"'
REFUSAL_LOG_INTERVAL = 10.0  # refusals can come by the thousand: one log line per reason and interval


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
        raise SystemExit(f"onair agent: config file {path} does not exist (is the ConfigMap mounted?)") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"onair agent: config file {path} is not valid JSON: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SystemExit(f"onair agent: config file {path} is invalid:\n{exc}") from None


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


class SecretFile:
    """A mounted secret, re-read when the file changes (Kubernetes swaps Secret volumes atomically)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self._stamp: Optional[tuple[int, int, int]] = None
        self._value: Optional[str] = None

    def get(self) -> Optional[str]:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._value = None, None
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as f:
                    self._value = f.read().strip() or None
            except (OSError, UnicodeDecodeError):
                self._value = None
            self._stamp = stamp
        return self._value


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    role: str,
    setting: Optional[str] = None,
    what: str = "",
    site: Callable[[web.AppRunner, str, int], web.BaseSite] = web.TCPSite,
) -> None:
    """Set ``runner`` up and serve it on ``host``:``port``. A port that cannot be had ends the
    process with one line, not a traceback: the system's reason, and for a port of the role's
    config (``setting``) what to do about it. ``what``: which port, when the address alone does
    not say it."""
    await runner.setup()
    try:
        await site(runner, host, port).start()
    except OSError as exc:
        hint = f". Another process holds the port; free it or set {setting} in the config." if setting else ""
        raise SystemExit(f"onair agent {role}: cannot listen on {what}{host}:{port}: {exc.strerror}{hint}") from None


def bearer_matches(authorization: Optional[str], expected: str) -> bool:
    """``Authorization: Bearer <expected>``, compared in constant time."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), expected.encode())


class Agent:
    """The agent API and the one lifecycle of every role.

    ``run()`` is the whole life of an agent process, the same for all four roles:

    1. ``prepare()``: checks and setup before anything listens (a config that cannot work ends
       the process here with ``SystemExit`` and a clear message, before the kubelet sees a port);
    2. the agent API listens (``start_http``);
    3. ``start()``: the role's processes, listeners and tasks;
    4. serve until SIGTERM or SIGINT: ``PUT /desired`` reaches ``apply_desired()``;
    5. ``drain()``: finish what is in flight while ``/status`` still answers (the recorder
       finalizes its session and uploads it; nothing may be lost here);
    6. the agent API stops listening: no call reaches a role that is being taken apart;
    7. ``stop()``: release whatever ``start()`` took; it runs after a failed ``start()`` too, so it
       must cope with a half-started role.

    The pod's ``terminationGracePeriodSeconds`` (``onair.render.deployments``) covers drain and stop.
    Role hooks besides the lifecycle: ``status()``, ``apply_desired()``, ``before_scrape()``.
    """

    def __init__(self, role: str, host: str, port: int, token_file: Optional[str] = None) -> None:
        self.role = role
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.desired = Desired()
        # No file configured: open (local runs; start_http warns). A configured file that is
        # missing or empty locks the API instead: a Secret that failed to mount must not open it.
        self.agent_token = SecretFile(token_file)
        # Paths served without the token; a role adds those it guards otherwise (or that are probes).
        self.open_paths: set[str] = set(OPEN_PATHS)
        self._refusals_logged: dict[str, float] = {}
        self.app = web.Application(client_max_size=1024 * 1024, middlewares=[self._authenticate])
        self.app.add_routes(
            [
                web.get("/status", self._get_status),
                web.get("/metrics", self._get_metrics),
                web.get("/healthz", self._get_healthz),
                web.put("/desired", self._put_desired),
            ]
        )
        self._runner: Optional[web.AppRunner] = None
        self._stop = asyncio.Event()

    # lifecycle hooks --------------------------------------------------------------------
    async def prepare(self) -> None:
        """Before the agent API listens: checks that end the process on a config that cannot work."""

    async def start(self) -> None:
        """Once the agent API listens: start the role's processes, listeners and tasks."""

    async def drain(self) -> None:
        """After the stop signal, when ``start()`` completed: finish the work in flight."""

    async def stop(self) -> None:
        """Release what ``start()`` took, also after a ``start()`` that failed half-way."""

    async def run(self) -> None:
        """prepare → listen → start → serve until SIGTERM/SIGINT → drain → stop listening → stop."""
        await self.prepare()
        started = False
        try:
            await self.start_http()
            await self.start()
            started = True
            await self.wait_for_stop_signal()
            log.info("%s agent stopping", self.role)
        finally:
            try:
                if started:
                    await self.drain()
            finally:
                try:
                    await self.stop_http()
                finally:
                    await self.stop()

    # role hooks -------------------------------------------------------------------------
    def status(self) -> BaseModel:
        raise NotImplementedError

    async def apply_desired(self, desired: Desired) -> None:
        """Converge on ``desired``; default: just remember it."""

    def before_scrape(self) -> None:
        """Bring gauges up to date right before ``/metrics`` is rendered (none by default)."""

    # http -------------------------------------------------------------------------------
    def refusal(self, request: web.Request) -> Optional[web.Response]:
        """Why ``request`` may not use the agent API; None when it may."""
        if request.path in self.open_paths or self.agent_token.path is None:
            return None
        expected = self.agent_token.get()
        if not expected:
            self._log_refusal(
                "locked",
                logging.ERROR,
                "agent API locked: the agent token file %s is missing or "
                "empty; every call but %s is refused (is the <livestream>-credentials Secret "
                "mounted?)",
                self.agent_token.path,
                ", ".join(sorted(self.open_paths)),
            )
            return web.json_response(
                {
                    "error": "the agent API is locked: this agent has no agent token (its "
                    "agentTokenFile is missing or empty)"
                },
                status=503,
            )
        authorization = request.headers.get("Authorization")
        if not authorization or authorization[:7].lower() != "bearer " or not authorization[7:].strip():
            self._log_refusal(
                "missing",
                logging.WARNING,
                "refused agent API call %s %s from %s: no agent token",
                request.method,
                request.path[:200],
                request.remote,
            )
            return web.json_response(
                {
                    "error": "the agent API requires Authorization: Bearer <agent token> (the "
                    "agentToken key of the livestream's credentials Secret)"
                },
                status=401,
                headers={"WWW-Authenticate": AUTH_REALM},
            )
        if not bearer_matches(authorization, expected):
            self._log_refusal(
                "wrong",
                logging.WARNING,
                "refused agent API call %s %s from %s: wrong agent token",
                request.method,
                request.path[:200],
                request.remote,
            )
            return web.json_response({"error": "wrong agent token"}, status=403)
        return None

    def _log_refusal(self, key: str, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._refusals_logged.get(key, -REFUSAL_LOG_INTERVAL) >= REFUSAL_LOG_INTERVAL:
            self._refusals_logged[key] = now
            log.log(level, msg, *args)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler) -> web.StreamResponse:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        return await handler(request)

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
            merged = {
                **self.desired.model_dump(),
                **Desired.model_validate(await request.json()).model_dump(exclude_unset=True),
            }
            desired = Desired.model_validate(merged)
        # RecursionError: JSON nested deeper than the parser's recursion limit ([[[[...).
        except (ValidationError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            return web.json_response({"error": f"invalid desired state: {exc}"}, status=400)
        self.desired = desired
        await self.apply_desired(desired)
        return web.json_response(desired.model_dump(by_alias=True, mode="json"))

    # agent API listener ---------------------------------------------------------------
    async def start_http(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await listen(self._runner, self.host, self.port, self.role, "agentPort")
        if self.agent_token.path is None:
            log.warning(
                "%s agent API on http://%s:%s is OPEN: no agentTokenFile is configured, so anyone who "
                "reaches this port may change the desired state (fine on loopback only)",
                self.role,
                self.host,
                self.port,
            )
        elif not self.agent_token.get():
            log.error(
                "%s agent API on http://%s:%s is LOCKED: the agent token file %s is missing or empty; every "
                "call but %s is refused until it appears",
                self.role,
                self.host,
                self.port,
                self.agent_token.path,
                ", ".join(sorted(self.open_paths)),
            )
        else:
            log.info("%s agent API on http://%s:%s (calls need the agent token)", self.role, self.host, self.port)

    async def stop_http(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for_stop_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self._stop.wait()


def run(
    main_coro: Callable[[], Coroutine[Any, Any, None]],
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None,
) -> int:
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main_coro())
    except KeyboardInterrupt:
        pass
    return 0


def run_role(
    role: str,
    argv: list[str],
    config_model: Type[C],
    serve: Callable[[C], Coroutine[Any, Any, None]],
    quiet_loggers: Sequence[str] = (),
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None,
) -> int:
    """The whole of ``onair agent <role>``: arguments, logging, the config, then ``serve(config)``
    until it returns. ``quiet_loggers`` stay at INFO or above even at ``--log-level DEBUG``;
    ``loop_factory``: the event loop to serve on (asyncio's default when None)."""
    args = parse_args(role, argv)
    setup_logging(args.log_level)
    for name in quiet_loggers:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    config = load_config(args.config, config_model)
    return run(lambda: serve(config), loop_factory)
