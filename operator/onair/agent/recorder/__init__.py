"""`onair agent recorder --config FILE`: record a livestream into split, fragmented MP4 files.

See ``onair.agent.recorder.agent`` for the behaviour and ``docs/agent-api.md`` for the contract.
"""
from __future__ import annotations

from onair.agent.app import load_config, parse_args, run, setup_logging
from onair.api.agent import RecorderConfig


def main(argv: list[str]) -> int:
    args = parse_args("recorder", argv)
    setup_logging(args.log_level)
    config = load_config(args.config, RecorderConfig)
    return run(lambda: _serve(config))


async def _serve(config: RecorderConfig) -> None:
    # Imported here so `onair agent recorder --help` and a bad config fail fast without aiohttp.
    from .agent import RecorderAgent

    agent = RecorderAgent(config)
    await agent.start_http()
    agent.start()
    try:
        await agent.wait_for_stop_signal()
    finally:
        await agent.shutdown()
        await agent.stop_http()
