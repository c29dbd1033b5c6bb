"""The `onair` command.

Each subcommand lives in the module that owns the feature; this file only routes to it,
importing lazily so `onair agent ingest` never loads kopf and `onair run` never loads aiortc.
Every target exposes `main(argv: list[str]) -> int`.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("onair.controller.runner", "run the operator against the current kubeconfig"),
    "dev": (
        "onair.localcluster.dev",
        "run onair on a local cluster: a real node when this machine allows it, else the process runner",
    ),
    "localcluster": ("onair.localcluster.cli", "build or start the pinned kube-apiserver/etcd/kube-controller-manager"),
    "crds": ("onair.crdgen", "generate crds/*.yaml from the pydantic API models (--check to verify)"),
    "agent": ("onair.agent.cli", "run a media role: ingest | transcoder | origin | recorder"),
    "token": (
        "onair.tokens_cli",
        "print a backstage playback token (or player URL), or --publish a personal publish token, for a member of a Livestream",
    ),
}


def usage() -> str:
    lines = ["usage: onair <command> [args...]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"onair: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
