"""Volumes become directories, as the kubelet would mount them.

A ConfigMap's files are written out (a role config rewritten for loopback by ``PortTable.rewrite``),
a Secret's keys go to 0600 files in a private directory (preferably in RAM) removed when the pod
stops and kept in step with the Secret while it runs, an emptyDir is fresh per start, and a
PersistentVolumeClaim is a directory under the runner's root that outlives the pod (and the
Livestream: recordings stay on disk).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from onair.kube import SyncKube

from .. import loopback
from ..loopback import PodPlan
from . import apiserver
from .pods import LocalPod, Pending
from .ports import PortTable

# How often a running pod's Secret volumes are compared with their Secrets.
SECRET_REFRESH_SECONDS = 10.0


@dataclass
class Volumes:
    """Writes the volumes of the pods under ``root`` (Secrets under ``secret_root``)."""

    api: SyncKube
    root: Path
    secret_root: Path
    ports: PortTable
    python: str  # the interpreter a pod's ``onair`` command runs with
    log: Callable[[str], None]

    def pod_dir(self, plan: PodPlan) -> Path:
        return self.root / "namespaces" / plan.namespace / "pods" / plan.name

    def _read_source(
        self, kind: str, namespace: str, volume: loopback.Volume, *, absent_if_optional: bool = False
    ) -> dict[str, Any]:
        """The object behind a volume; with ``absent_if_optional`` an optional one that does not
        exist reads as empty."""
        if volume.source is None:
            raise ValueError(f"volume {volume.name!r} names no {kind}")
        try:
            return apiserver.read(self.api, kind, namespace, volume.source)
        except Pending:
            if absent_if_optional and volume.optional:
                return {}
            raise

    def materialize(self, pod: LocalPod) -> list[str]:
        """Write every volume and the rewritten config; returns the command line to run.
        Raises ``Pending`` (nothing written) while an object the pod needs is missing."""
        plan = pod.plan
        ns = plan.namespace
        pod_dir = self.pod_dir(plan)
        pod_dir.mkdir(parents=True, exist_ok=True)
        secret_dir = self.secret_root / ns / plan.name
        dirs: dict[str, str] = {}
        config_maps: dict[str, dict[str, Any]] = {}
        secrets: dict[str, dict[str, Any]] = {}
        for volume in plan.volumes.values():
            if volume.kind == "configMap":
                config_maps[volume.name] = self._read_source("ConfigMap", ns, volume)
                dirs[volume.name] = str(pod_dir / "volumes" / volume.name)
            elif volume.kind == "secret":
                secrets[volume.name] = self._read_source("Secret", ns, volume, absent_if_optional=True)
                dirs[volume.name] = str(secret_dir / volume.name)
            elif volume.kind == "persistentVolumeClaim":
                claim = self._read_source("PersistentVolumeClaim", ns, volume)
                # Per claim object: a Livestream deleted and created again gets an empty DVR, while
                # the kept recordings claim (same object) keeps its files.
                uid = (claim["metadata"].get("uid") or "")[:8]
                dirs[volume.name] = str(self.root / "namespaces" / ns / "volumes" / f"{volume.source}-{uid}")
            else:  # emptyDir: fresh for every container start
                dirs[volume.name] = str(pod_dir / "volumes" / volume.name)
        mounts = loopback.local_mounts(plan, dirs)

        rendered: dict[Path, bytes] = {}
        for name, cm in config_maps.items():
            volume = plan.volumes[name]
            data = cm.get("data") or {}
            for key, rel in volume.items or tuple((k, k) for k in data):
                if key not in data:
                    raise Pending(f"ConfigMap {volume.source} has no key {key}")
                rendered[Path(dirs[name]) / rel] = self.ports.rewrite(plan, data[key], mounts)

        # Everything resolved: only now touch the disk.
        for volume in plan.volumes.values():
            path = Path(dirs[volume.name])
            if volume.kind in ("emptyDir", "configMap"):
                shutil.rmtree(path, ignore_errors=True)
            if volume.kind != "secret":
                path.mkdir(parents=True, exist_ok=True)
        for path, content in rendered.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        shutil.rmtree(secret_dir, ignore_errors=True)
        secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, secret in secrets.items():
            _write_secret(Path(dirs[name]), plan.volumes[name], secret)
        pod.secret_dir = secret_dir
        pod.secret_refreshed = time.monotonic()
        return loopback.rewrite_args(plan.args, mounts, self.python)

    def refresh_secrets(self, pod: LocalPod) -> None:
        """Secret volumes follow the Secret (manual key rotation), like the kubelet's sync."""
        pod.secret_refreshed = time.monotonic()
        if pod.secret_dir is None:
            return
        try:
            for volume in pod.plan.volumes.values():
                if volume.kind == "secret":
                    _write_secret(
                        pod.secret_dir / volume.name,
                        volume,
                        self._read_source("Secret", pod.plan.namespace, volume, absent_if_optional=True),
                    )
        except Pending:
            pass
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the old files
            self.log(f"{pod.plan.namespace}/{pod.plan.name}: could not refresh secrets: {exc}")


def remove_secrets(pod: LocalPod) -> None:
    if pod.secret_dir is not None:
        shutil.rmtree(pod.secret_dir, ignore_errors=True)
        pod.secret_dir = None


def _write_secret(directory: Path, volume: loopback.Volume, secret: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = secret.get("data") or {}
    items = volume.items or tuple((k, k) for k in data)
    for key, rel in items:
        if key not in data and volume.optional:
            continue
        if key not in data:
            raise Pending(f"Secret {volume.source} has no key {key}")
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = base64.b64decode(data[key])
        if target.exists() and target.read_bytes() == value:
            continue
        # Atomic swap, as Kubernetes updates Secret volumes: readers re-read on inode change.
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        os.replace(tmp, target)
