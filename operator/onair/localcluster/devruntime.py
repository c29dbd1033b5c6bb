"""Where `onair dev` runs the Livestreams' pods: on a real node, or in the process runner.

* ``node``: the local control plane plus a real node (kubelet, containerd, kube-proxy, CoreDNS,
  local-path-provisioner; ``onair.localcluster.node``), the onair image built from this checkout
  and the chart installed with helm: exactly what a cluster runs. Needs root, the node's Debian
  packages and the node binaries (built once, then cached).
* ``process``: the control plane only, the operator in-process, and the process runner
  (``onair.localcluster.podrunner``) starting each media Deployment as local processes. What it
  simulates is ``PROCESS_SIMULATES``.

``choose`` is the decision, a pure function of what the machine has; ``node_missing`` and
``node_unbuilt`` gather those facts.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

NODE, PROCESS, AUTO = "node", "process", "auto"
RUNTIMES = (AUTO, NODE, PROCESS)

# What the node runtime runs that is built from Go modules (cached under ~/.cache/onair).
NODE_BUILDS = ("etcd", "kubernetes", "helm", "kubernetes-node", "coredns", "local-path-provisioner")

PROCESS_SIMULATES = (
    "the process runner simulates Kubernetes: there is no kubelet and no container runtime, every media "
    "Deployment runs as local processes on 127.0.0.1, role configs are rewritten for loopback (Service DNS "
    "names and ports become local ports, volumes become directories), and the pods' image, probes, "
    "securityContext, resources, Service DNS, NetworkPolicies and the operator's RBAC are not exercised"
)


@dataclass(frozen=True)
class Choice:
    runtime: Optional[str]  # NODE or PROCESS; None: refuse to start (``message`` says why)
    message: str


def choose(requested: str, missing: list[str], unbuilt: list[str]) -> Choice:
    """``missing``: what this machine lacks for a node (root, packages), each with how to get it;
    ``unbuilt``: the node's components not built yet (``--runtime node`` builds them, once)."""
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r}; choose one of {', '.join(RUNTIMES)}")
    if requested == PROCESS:
        return Choice(PROCESS, f"runtime: process (--runtime process): {PROCESS_SIMULATES}.")
    if requested == NODE:
        if missing:
            return Choice(
                None,
                "--runtime node cannot run on this machine, it lacks: "
                + "; ".join(missing)
                + ". Without them, `onair dev --runtime process` runs the process runner instead.",
            )
        building = f" Building {', '.join(unbuilt)} first (once; cached in ~/.cache/onair)." if unbuilt else ""
        return Choice(
            NODE,
            "runtime: node (--runtime node): a real kubelet and containerd run the onair image; "
            "the chart is installed with helm." + building,
        )
    # auto: the node only when it can start at once; a first build takes many minutes, so it is asked for.
    if not missing and not unbuilt:
        return Choice(
            NODE,
            "runtime: node (this machine can run one; --runtime process for the process runner): "
            "a real kubelet and containerd run the onair image; the chart is installed with helm.",
        )
    why = list(missing)
    if unbuilt:
        why.append(
            f"the node components {', '.join(unbuilt)} are not built yet (`onair dev --runtime node` or "
            f"`onair localcluster build {' '.join(unbuilt)}` builds them once)"
        )
    return Choice(
        PROCESS,
        "runtime: process, because the real node cannot run here: "
        + "; ".join(why)
        + f". Falling back to the process runner: {PROCESS_SIMULATES}.",
    )


def node_missing() -> list[str]:
    """What this machine lacks to run a node and the onair image, each with how to get it."""
    from . import image, node

    out = []
    if os.geteuid() != 0:
        out.append("root (the node creates a network namespace, cgroups and mounts; run as root)")
    tools = node.missing_tools()
    if tools:
        out.append(
            "the node's Debian packages: "
            + ", ".join(tools)
            + " (scripts/install-deps installs system-packages/debian-test-packages.txt)"
        )
    if image.cached_image() is None:
        lacking = [t for t in ("buildah", "mmdebstrap") if _which(t) is None]
        if lacking:
            out.append(
                f"{' and '.join(lacking)} to build the onair image (apt-get install "
                f"{' '.join(lacking)}; system-packages/debian-image-build-packages.txt)"
            )
    return out


def node_unbuilt() -> list[str]:
    from . import build

    return build.unbuilt(list(NODE_BUILDS))


def _which(tool: str) -> Optional[str]:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")


class UrlPrinter:
    """Prints each Livestream's push/play URLs whenever they change, looked at every ``interval``
    seconds; each runtime says where its Livestreams' URLs are (``livestream_urls``) and ``where``
    they answer."""

    where = ""

    def __init__(
        self, interval: float = 2.0, out: Callable[[str], None] = lambda text: print(text, flush=True)
    ) -> None:
        self.interval, self.out = interval, out
        self.shown: dict[tuple[str, str], dict] = {}
        self._next = 0.0

    def livestream_urls(self) -> Iterable[tuple[str, str, dict[str, dict[str, str]]]]:
        """(namespace, name, {"ingest": ..., "playback": ...}) of every Livestream there is now."""
        raise NotImplementedError

    def poll(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        for ns, name, urls in self.livestream_urls():
            if not (urls["ingest"] or urls["playback"]) or self.shown.get((ns, name)) == urls:
                continue
            self.shown[(ns, name)] = urls
            self.out(urls_text(ns, name, self.where, urls))


def urls_text(namespace: str, name: str, where: str, urls: dict[str, dict[str, str]]) -> str:
    """What `onair dev` prints for a Livestream whose push/play URLs changed, either runtime."""
    lines = [f"\nLivestream {namespace}/{name} {where}:"]
    lines += [f"  push  {key:<12} {url}" for key, url in sorted(urls["ingest"].items())]
    lines += [f"  play  {key:<12} {url}" for key, url in sorted(urls["playback"].items())]
    lines.append(
        f"  RTMP needs the stream key: kubectl -n {namespace} get secret {name}-credentials "
        "-o jsonpath='{.data.streamKey}' | base64 -d"
    )
    return "\n".join(lines)
