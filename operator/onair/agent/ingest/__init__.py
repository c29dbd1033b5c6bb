"""`onair agent ingest --config FILE`: one ingest slot (RTMP, RTMPS, SRT, WHIP) until SIGTERM."""
from __future__ import annotations

import logging

from onair.agent.app import load_config, parse_args, run, setup_logging
from onair.api.agent import IngestConfig


def main(argv: list[str]) -> int:
    args = parse_args("ingest", argv)
    setup_logging(args.log_level)
    for noisy in ("aioice", "aiortc", "asyncio"):  # per-packet chatter even at DEBUG is useless here
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    config = load_config(args.config, IngestConfig)
    from .agent import IngestAgent  # aiortc and friends load only when an agent really runs

    return run(lambda: IngestAgent(config).run())
