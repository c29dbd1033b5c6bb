"""`onair agent <role> --config FILE`: dispatch to the role's module (`onair.agent.<role>`)."""

from __future__ import annotations

import importlib
import sys

from onair.roles import MEDIA_ROLES


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MEDIA_ROLES:
        print(f"usage: onair agent {{{'|'.join(MEDIA_ROLES)}}} --config FILE", file=sys.stderr)
        return 2
    module = importlib.import_module(f"onair.agent.{argv[0]}")
    return int(module.main(argv[1:]) or 0)
