"""Container images for the local node, written as OCI archives from local files.

There is no registry to pull from, so every image a local node runs is assembled here from a
static binary this machine already has (Debian's busybox-static and catatonit) or that
`onair localcluster build` compiled (CoreDNS, local-path-provisioner, Traefik). An image is one
uncompressed layer plus config, manifest and index: what `ctr images import` reads. Archives
are deterministic (fixed mtimes, owners and order), cached under ``<cache>/images`` and keyed by
what goes into them, so they are written once per binary version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable

from . import build, versions

REGISTRY = "onair.local"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
# Bump when the archive layout changes, to invalidate cached archives.
_RECIPE_REV = 1

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


class ImageError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Entry:
    """One thing in the image's root filesystem (paths without a leading slash)."""

    path: str
    source: Path | None = None  # regular file copied from the host
    data: bytes | None = None  # regular file with this content
    link: str | None = None  # symlink target
    mode: int = 0o755  # files and directories

    def fingerprint(self) -> list:
        src = None
        if self.source is not None:
            st = self.source.stat()
            src = [str(self.source), st.st_size, st.st_mtime_ns]
        return [
            self.path,
            src,
            hashlib.sha256(self.data).hexdigest() if self.data is not None else None,
            self.link,
            self.mode,
        ]


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # repository under REGISTRY, e.g. "busybox"
    tag: str
    entries: tuple[Entry, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.tag}"

    def key(self) -> str:
        blob = json.dumps(
            [_RECIPE_REV, self.ref, [e.fingerprint() for e in self.entries], self.entrypoint, self.cmd, self.env, ARCH]
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def images_dir() -> Path:
    return build.cache_root() / "images"


# ----------------------------------------------------------------------------- writing archives


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname = kind, mode, size, link
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
    return ti


def _write_layer(entries: Iterable[Entry], out) -> None:
    """The root filesystem as one tar stream; parent directories are added as needed."""
    seen_dirs: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            parts = e.path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    tar.addfile(_tarinfo(d, tarfile.DIRTYPE, 0o755))
            path = "/".join(parts)
            if e.link is not None:
                tar.addfile(_tarinfo(path, tarfile.SYMTYPE, 0o777, link=e.link))
            elif e.data is not None:
                tar.addfile(_tarinfo(path, tarfile.REGTYPE, e.mode, len(e.data)), io.BytesIO(e.data))
            elif e.source is not None:
                size = e.source.stat().st_size
                with open(e.source, "rb") as fh:
                    tar.addfile(_tarinfo(path, tarfile.REGTYPE, e.mode, size), fh)
            elif path not in seen_dirs:
                seen_dirs.add(path)
                tar.addfile(_tarinfo(path, tarfile.DIRTYPE, e.mode))


class _HashingWriter(io.RawIOBase):
    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.fh.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)


def _descriptor(media_type: str, digest: str, size: int, **extra) -> dict:
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": size, **extra}


def write_archive(image: Image, out: Path) -> None:
    """Write `image` as an OCI image layout packed in a tar (what `ctr images import` takes)."""
    with tempfile.TemporaryDirectory(prefix="onair-image-", dir=out.parent) as tmp:
        layer_path = Path(tmp) / "layer.tar"
        with open(layer_path, "wb") as fh:
            hw = _HashingWriter(fh)
            _write_layer(image.entries, hw)
        layer_digest, layer_size = hw.sha.hexdigest(), hw.size
        config = {
            "architecture": ARCH,
            "os": "linux",
            "config": {
                "Env": list(image.env),
                "Entrypoint": list(image.entrypoint) or None,
                "Cmd": list(image.cmd) or None,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": "onair.localcluster.images"}],
        }
        config_raw = _json(config)
        config_digest = hashlib.sha256(config_raw).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config_digest, len(config_raw)),
            "layers": [_descriptor(MEDIA_LAYER, layer_digest, layer_size)],
        }
        manifest_raw = _json(manifest)
        manifest_digest = hashlib.sha256(manifest_raw).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                _descriptor(
                    MEDIA_MANIFEST,
                    manifest_digest,
                    len(manifest_raw),
                    platform={"architecture": ARCH, "os": "linux"},
                    # containerd names the imported image after the first; other tools after the second.
                    annotations={"io.containerd.image.name": image.ref, "org.opencontainers.image.ref.name": image.tag},
                )
            ],
        }
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:

            def add_bytes(name: str, data: bytes) -> None:
                tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))

            add_bytes("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
            add_bytes("index.json", _json(index))
            tar.addfile(_tarinfo("blobs", tarfile.DIRTYPE, 0o755))
            tar.addfile(_tarinfo("blobs/sha256", tarfile.DIRTYPE, 0o755))
            add_bytes(f"blobs/sha256/{config_digest}", config_raw)
            add_bytes(f"blobs/sha256/{manifest_digest}", manifest_raw)
            with open(layer_path, "rb") as layer_file:
                tar.addfile(_tarinfo(f"blobs/sha256/{layer_digest}", tarfile.REGTYPE, 0o644, layer_size), layer_file)
        os.replace(partial, out)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def ensure_archive(image: Image) -> Path:
    """The cached archive of `image`, written first if its inputs changed."""
    d = images_dir()
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{image.name}-{image.tag}-{image.key()}.tar"
    if not out.is_file():
        for stale in d.glob(f"{image.name}-*.tar"):
            stale.unlink(missing_ok=True)
        write_archive(image, out)
    return out


# ----------------------------------------------------------------------------- the images


def _need(path: str, package: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ImageError(
            f"{path} is missing: install the Debian package {package} "
            "(scripts/install-deps does, from system-packages/debian-test-packages.txt)"
        )
    return p


def _debian_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    v = out.stdout.strip() if out.returncode == 0 else "local"
    # Upstream part only (no epoch, no Debian revision), in tag-safe characters.
    v = v.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", v) or "local"


def pause() -> Image:
    """The pod sandbox: catatonit in pause mode (waits for signals, reaps nothing, exits on TERM)."""
    src = _need("/usr/bin/catatonit", "catatonit")
    return Image(
        "pause", _debian_version("catatonit"), (Entry("catatonit", source=src),), entrypoint=("/catatonit", "-P")
    )


def _busybox_applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def busybox() -> Image:
    """A shell and the usual tools (sh, sleep, wget, httpd, nslookup, nc, ...) in one static
    binary: the test workload and local-path-provisioner's helper pod."""
    src = _need("/bin/busybox", "busybox-static")
    entries = [Entry("bin/busybox", source=src)]
    for applet in _busybox_applets(src):
        if applet != "bin/busybox":
            entries.append(Entry(applet, link="/bin/busybox"))
    entries += [
        Entry(
            "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", mode=0o644
        ),
        Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n", mode=0o644),
        Entry("tmp", mode=0o1777),
        Entry("root", mode=0o700),
    ]
    return Image("busybox", _debian_version("busybox-static"), tuple(entries), cmd=("sh",))


def _built(name: str) -> Path:
    p = build.binary_paths()[name]
    if not p.is_file():
        raise ImageError(f"{p} is missing; run `onair localcluster build` first")
    return p


def coredns() -> Image:
    return Image(
        "coredns", versions.COREDNS_VERSION, (Entry("coredns", source=_built("coredns")),), entrypoint=("/coredns",)
    )


def local_path_provisioner() -> Image:
    return Image(
        "local-path-provisioner",
        versions.LOCAL_PATH_PROVISIONER_VERSION,
        (Entry("local-path-provisioner", source=_built("local-path-provisioner")), Entry("tmp", mode=0o1777)),
        entrypoint=("/local-path-provisioner",),
    )


def traefik() -> Image:
    """Traefik alone: static, no shell; runs as any non-root UID (it writes nothing but to /tmp)."""
    return Image(
        "traefik",
        versions.TRAEFIK_VERSION,
        (Entry("traefik", source=_built("traefik")), Entry("tmp", mode=0o1777)),
        entrypoint=("/traefik",),
    )


def node_images() -> dict[str, Image]:
    """Every image a local node imports, by role."""
    return {
        "pause": pause(),
        "busybox": busybox(),
        "coredns": coredns(),
        "local-path-provisioner": local_path_provisioner(),
    }
