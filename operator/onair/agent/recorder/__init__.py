"""`onair agent recorder --config FILE`: record a livestream into split, fragmented MP4 files.
`onair agent recorder --delete-session SESSION --livestream NS/NAME --output-dir DIR`: delete one
finished session's files (what the operator's one-shot pod runs when no recorder does).

See ``onair.agent.recorder.agent`` for the behaviour and ``docs/agent-api.md`` for the contract.
"""

from __future__ import annotations

from onair.agent.app import run_role
from onair.api.agent import RecorderConfig


def main(argv: list[str]) -> int:
    if any(arg == "--delete-session" or arg.startswith("--delete-session=") for arg in argv):
        from .deletion import main as delete_main

        return delete_main(argv)
    return run_role("recorder", argv, RecorderConfig, _serve)


async def _serve(config: RecorderConfig) -> None:
    # Imported here so `onair agent recorder --help` and a bad config fail fast without aiohttp.
    from .agent import RecorderAgent

    await RecorderAgent(config).run()
