"""`onair agent ingest --config FILE`: one ingest slot (RTMP, RTMPS, SRT, WHIP) until SIGTERM."""

from __future__ import annotations

from onair.agent.app import run_role
from onair.api.agent import IngestConfig


def main(argv: list[str]) -> int:
    # aioice, aiortc, asyncio: per-packet chatter even at DEBUG is useless here.
    return run_role("ingest", argv, IngestConfig, _serve, quiet_loggers=("aioice", "aiortc", "asyncio"))


async def _serve(config: IngestConfig) -> None:
    from .agent import IngestAgent  # aiortc and friends load only when an agent really runs

    await IngestAgent(config).run()
