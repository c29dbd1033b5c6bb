"""Images, commands and ports of every media role: the one place both planes read.

The operator renders Deployments from this; the agent binds the same ports; the Dockerfile
exposes them. Change a port here and all three follow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_IMAGE = os.environ.get("ONAIR_IMAGE", "ghcr.io/onair-dev/onair:0.1.0")
CONFIG_PATH = "/etc/onair/config.json"
SECRET_DIR = "/etc/onair/secret"
AGENT_PORT = 8080


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class MediaRole:
    name: str
    ports: tuple[Port, ...]
    # Every role is the same binary; the config file says the rest. The pod names the command
    # itself: args alone would be appended to the image's ENTRYPOINT (`onair onair agent ...`).
    command: tuple[str, ...] = field(default=("onair",))
    # What the readinessProbe asks: a pod joins its Service (encoders, viewers) only once this
    # answers 200. The agent's /healthz only says that the agent answers; the ingest's /readyz
    # also waits for its nginx (and SRT listener), which is what encoders connect to.
    readiness_path: str = "/healthz"

    def args(self) -> list[str]:
        return ["agent", self.name, "--config", CONFIG_PATH]


INGEST = MediaRole(
    "ingest",
    (
        Port("agent", AGENT_PORT),
        Port("rtmp", 1935),
        Port("rtmps", 1936),
        Port("srt", 9998, "UDP"),
        Port("whip", 8443),
    ),
    readiness_path="/readyz",
)
TRANSCODER = MediaRole("transcoder", (Port("agent", AGENT_PORT),))
# ``http`` is the public playback port; ``upload`` takes the transcoder's output only, on a listener of
# its own so viewers cannot starve it, and the origin Service keeps it cluster-internal.
# Its /readyz: 200 once the public port serves viewers (a replica after copying a peer's DVR), 503
# again from SIGTERM on while it drains, so it leaves the Service before its port closes.
ORIGIN = MediaRole(
    "origin", (Port("agent", AGENT_PORT), Port("http", 8081), Port("upload", 8082)), readiness_path="/readyz"
)
RECORDER = MediaRole("recorder", (Port("agent", AGENT_PORT),))

MEDIA_ROLES: dict[str, MediaRole] = {r.name: r for r in (INGEST, TRANSCODER, ORIGIN, RECORDER)}
