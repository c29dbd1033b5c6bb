"""Build the onair image on this machine: no Docker daemon, no registry.

`build_image()` (and `scripts/build-image`) turns the repository's own Dockerfile into an OCI
archive that `ctr -n k8s.io images import` loads into containerd, named
`localhost/onair:<version>-<digest>`. The same Dockerfile builds with `docker build .` from the
public `debian:bookworm-slim`; here its `BASE_IMAGE` is one made from Debian packages:

1. base: `mmdebstrap` writes a bookworm minbase rootfs tarball from Debian's mirror; buildah turns
   it into `localhost/onair-base:bookworm-<recipe>` (`FROM scratch` + `ADD rootfs.tar /`).
2. image: `buildah bud` of the Dockerfile on that base (chroot isolation, `--pull=never`: nothing
   comes from a registry; `--layers`: a source change re-runs only the Dockerfile's last steps).
3. archive: `buildah push` to `oci-archive:`, under <cache>/image/archives/.

Everything is cached under ${ONAIR_CACHE:-~/.cache/onair}/image/, keyed by digests of the inputs
(the Dockerfile, .dockerignore, every file the Dockerfile copies that .dockerignore keeps, the base
image), so a warm call only hashes the sources (well under a second). A file lock makes
concurrent callers (pytest-xdist workers, several checkouts sharing the cache) build once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tarfile
import time
import tomllib
import zlib
from functools import partial
from typing import IO
from pathlib import Path

from . import build
from .build import BuildError

IMAGE_REPOSITORY = "localhost/onair"
BASE_REPOSITORY = "localhost/onair-base"

DEBIAN_SUITE = "bookworm"
# Suites of the base's /etc/apt/sources.list, as in debian:bookworm-slim (security updates
# included). ONAIR_DEBIAN_MIRROR points them at another mirror of Debian.
_DEBIAN_SUITES = (
    (DEBIAN_SUITE, "debian"),
    (f"{DEBIAN_SUITE}-updates", "debian"),
    (f"{DEBIAN_SUITE}-security", "debian-security"),
)
# The docs debian:bookworm-slim leaves out; they stay out of everything installed later too.
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# Sets up merged /usr itself, so the rootfs does not need the usrmerge package (and its perl, ~45 MB).
_MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")

# Where the build's RUN steps find the host's CA bundle (for pip behind a TLS-intercepting proxy).
_BUILD_CA_PATH = "/run/onair-build/ca-certificates.crt"

# Bump when the way the base or the image is produced changes, to invalidate cached builds.
_RECIPE_REV = 1
# Archives kept: the current one and those of other checkouts that share the cache.
KEEP_ARCHIVES = 3


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """A built image: load `archive` with `ctr -n k8s.io images import` and use `name`."""

    name: str
    archive: Path
    digest: str  # sha256 of the build inputs; the tag carries its first 12 hex digits
    size_bytes: int  # unpacked, as containerd stores it
    archive_bytes: int  # the archive's layers are gzip-compressed, as a registry serves them
    build_seconds: float  # of the build that produced the archive

    @property
    def repository(self) -> str:
        return self.name.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.rsplit(":", 1)[1]

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "archive": str(self.archive)}

    @classmethod
    def from_json(cls, data: dict) -> "ImageRef":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in fields}, "archive": Path(data["archive"])})


# ----------------------------------------------------------------------------- build inputs


def repo_root() -> Path:
    env = os.environ.get("ONAIR_REPO")
    if env:
        return Path(env).resolve()
    # Editable install: operator/onair/localcluster/image.py -> repo root three levels above onair/.
    here = Path(__file__).resolve().parents[3]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def project_version(root: Path) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def _logical_lines(dockerfile: str) -> list[str]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    lines: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    if current.strip():
        lines.append(current)
    return lines


def copy_sources(dockerfile: str) -> list[str]:
    """Build-context paths that COPY/ADD instructions read (not those copying from a stage)."""
    sources: list[str] = []
    for line in _logical_lines(dockerfile):
        keyword, _, args = line.partition(" ")
        if keyword.upper() not in ("COPY", "ADD"):
            continue
        args = args.strip()
        if args.startswith("["):
            words = json.loads(args)
        else:
            words = shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        sources += [w for w in words if not w.startswith("--")][:-1]
    return sources


@dataclasses.dataclass(frozen=True)
class _IgnorePattern:
    regex: re.Pattern
    negated: bool


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over context paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out, i = out + re.escape(pattern[i:]), len(pattern)
            else:
                body = pattern[i + 1 : end]
                out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def parse_dockerignore(text: str) -> list[_IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append(_IgnorePattern(_pattern_regex(line), negated))
    return patterns


def is_ignored(path: str, patterns: list[_IgnorePattern]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for p in patterns:
        if any(p.regex.match(prefix) for prefix in prefixes):
            ignored = not p.negated
    return ignored


def context_files(root: Path) -> list[str]:
    """Every context file the build can read: the Dockerfile, .dockerignore, and what the
    Dockerfile copies minus what .dockerignore leaves out; relative, sorted."""
    dockerfile = (root / "Dockerfile").read_text()
    ignore_file = root / ".dockerignore"
    patterns = parse_dockerignore(ignore_file.read_text()) if ignore_file.exists() else []
    found = {"Dockerfile"} | ({".dockerignore"} if ignore_file.exists() else set())
    # An exception (`!dir/file`) can bring back a file inside an ignored directory: then every
    # directory has to be walked.
    prune = not any(p.negated for p in patterns)
    for source in copy_sources(dockerfile):
        for path in sorted(root.glob(source.strip("/"))) or [root / source]:
            if path.is_dir() and not path.is_symlink():
                for dirpath, dirnames, filenames in os.walk(path):
                    rel_dir = os.path.relpath(dirpath, root)
                    # Pruning ignored directories keeps node_modules and caches out of the walk.
                    if prune:
                        dirnames[:] = [d for d in dirnames if not is_ignored(os.path.join(rel_dir, d), patterns)]
                    for f in filenames:
                        rel = os.path.normpath(os.path.join(rel_dir, f))
                        if not is_ignored(rel, patterns):
                            found.add(rel)
            elif path.exists() or path.is_symlink():
                rel = os.path.relpath(path, root)
                if not is_ignored(rel, patterns):
                    found.add(rel)
    return sorted(found)


def inputs_digest(root: Path, base_image_id: str) -> str:
    """sha256 over everything that decides the image's content: the context files the build reads
    (path, exec bit, content), the base image's id and the recipe revision."""
    h = hashlib.sha256()
    h.update(json.dumps({"recipe": _RECIPE_REV, "base": base_image_id}).encode())
    for rel in context_files(root):
        path = root / rel
        h.update(b"\0" + rel.encode() + b"\0")
        if path.is_symlink():
            h.update(b"link:" + os.readlink(path).encode())
            continue
        h.update(b"x" if os.access(path, os.X_OK) else b"-")
        with open(path, "rb") as fh:
            for chunk in iter(partial(fh.read, 1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def image_name(version: str, digest: str) -> str:
    return f"{IMAGE_REPOSITORY}:{version}-{digest[:12]}"


# ----------------------------------------------------------------------------- paths and tools


def image_dir() -> Path:
    return build.cache_root() / "image"


def archives_dir() -> Path:
    return image_dir() / "archives"


def _log(msg: str) -> None:
    print(f"[image] {msg}", flush=True)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise BuildError(
            f"{name} is not installed: `apt-get install {package}` "
            "(scripts/install-deps installs system-packages/debian-image-build-packages.txt)"
        )
    return path


def _storage_args(driver: str) -> list[str]:
    return [
        "--root",
        str(image_dir() / f"storage-{driver}"),
        "--runroot",
        str(image_dir() / f"run-{driver}"),
        "--storage-driver",
        driver,
    ]


def _storage_driver(buildah: str) -> str:
    """overlay where the kernel allows it (layers share files); vfs, which copies every layer in
    full, where it does not (e.g. a cache directory that is itself on overlayfs)."""
    wanted = os.environ.get("ONAIR_IMAGE_STORAGE_DRIVER")
    if wanted:
        return wanted
    probe = subprocess.run(
        [buildah, *_storage_args("overlay"), "images", "-q"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 0:
        return "overlay"
    _log(f"overlay storage unavailable ({probe.stderr.strip().splitlines()[-1:]}); using vfs")
    return "vfs"


def _host_ca_bundle() -> Path | None:
    """The CA bundle the host's own pip trusts, handed to pip inside the build."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    for cand in (ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


class _Buildah:
    def __init__(self, driver: str, log: Path):
        self.exe = _tool("buildah", "buildah")
        self.driver = driver
        self.log = log

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, *_storage_args(self.driver), *args]

    def run(self, *args: str, cwd: Path | None = None) -> None:
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        build._run(self.cmd(*args), cwd=cwd or image_dir(), env=env, log=self.log)

    def output(self, *args: str) -> str:
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=300).stdout

    def image_id(self, name: str) -> str | None:
        out = subprocess.run(
            self.cmd("images", "--no-trunc", "--format", "{{.ID}}", name), capture_output=True, text=True, timeout=300
        )
        ids = out.stdout.split()
        return ids[0] if out.returncode == 0 and ids else None


# ----------------------------------------------------------------------------- the base image


def base_recipe() -> dict:
    mirror = os.environ.get("ONAIR_DEBIAN_MIRROR", "http://deb.debian.org").rstrip("/")
    return {
        "rev": _RECIPE_REV,
        "suite": DEBIAN_SUITE,
        "variant": "minbase",
        "sources": [f"deb {mirror}/{archive} {suite} main" for suite, archive in _DEBIAN_SUITES],
        "dpkg": list(_DPKG_EXCLUDES),
        "merged_usr_hook": _MERGED_USR_HOOK.is_dir(),
    }


def base_key() -> str:
    return hashlib.sha256(json.dumps(base_recipe(), sort_keys=True).encode()).hexdigest()[:16]


def _base_stamp() -> Path:
    return image_dir() / "base" / f"{base_key()}.json"


def _cached_base_id() -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads(_base_stamp().read_text())["image_id"]
    return None


def ensure_base(buildah: _Buildah, refresh: bool = False) -> tuple[str, str]:
    """(name, image id) of the Debian base in buildah's storage, built if missing.

    Cached by recipe, not by date: Debian's security updates come in with `refresh=True`
    (`scripts/build-image --refresh-base`), which gives a new base id and so a new image."""
    key = base_key()
    name = f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-{key}"
    base_dir = image_dir() / "base" / key
    rootfs = base_dir / "rootfs.tar"
    image_id = buildah.image_id(name)
    if image_id and not refresh and _cached_base_id() == image_id:
        return name, image_id
    base_dir.mkdir(parents=True, exist_ok=True)
    if refresh or not rootfs.is_file():
        recipe = base_recipe()
        t0 = time.monotonic()
        tmp = base_dir / "rootfs.tar.tmp"
        cmd = [
            _tool("mmdebstrap", "mmdebstrap"),
            f"--variant={recipe['variant']}",
            "--mode=auto",
            "--format=tar",
            *(f"--dpkgopt={o}" for o in recipe["dpkg"]),
        ]
        if recipe["merged_usr_hook"]:
            cmd.append(f"--hook-dir={_MERGED_USR_HOOK}")
        cmd += [recipe["suite"], str(tmp), *recipe["sources"]]
        _log(f"mmdebstrap {recipe['suite']} {recipe['variant']} -> {rootfs}")
        build._run(cmd, cwd=base_dir, env=dict(os.environ), log=buildah.log)
        os.replace(tmp, rootfs)
        _log(f"rootfs {rootfs.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - t0:.1f}s")
    (base_dir / "Containerfile").write_text(
        "# Generated by onair.localcluster.image: Debian's own packages, no registry.\n"
        'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n'
    )
    buildah.run("bud", "--isolation", "chroot", "--file", str(base_dir / "Containerfile"), "--tag", name, str(base_dir))
    image_id = buildah.image_id(name)
    if not image_id:
        raise BuildError(f"buildah built {name} but cannot find it in its storage")
    _base_stamp().write_text(
        json.dumps(
            {
                "name": name,
                "image_id": image_id,
                "recipe": base_recipe(),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=1,
        )
    )
    return name, image_id


# ----------------------------------------------------------------------------- the image


def ensure_player(root: Path) -> None:
    """hls.js and dash.js are vendored before the build (the Dockerfile copies them and fails without hls.js)."""
    vendor = root / "operator/onair/agent/static/vendor"
    if (vendor / "hls.min.js").is_file() and (vendor / "dash.all.min.js").is_file():
        return
    script = root / "scripts" / "build-player"
    _log("vendoring hls.js: scripts/build-player")
    proc = subprocess.run([str(script)], cwd=root, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BuildError(
            f"scripts/build-player failed ({proc.returncode}); the image needs the "
            f"vendored hls.js:\n{proc.stdout}{proc.stderr}"
        )


def _stamp_path(name: str) -> Path:
    return archives_dir() / f"{name.rsplit('/', 1)[-1].replace(':', '-')}.json"


def _archive_path(name: str) -> Path:
    return _stamp_path(name).with_suffix(".tar")


def _cached(name: str) -> ImageRef | None:
    stamp = _stamp_path(name)
    try:
        ref = ImageRef.from_json(json.loads(stamp.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ref.name != name or not ref.archive.is_file() or ref.archive.stat().st_size != ref.archive_bytes:
        return None
    with contextlib.suppress(OSError):
        os.utime(stamp)  # recently used: pruning keeps it
    return ref


def archive_layers(archive: Path) -> tuple[dict, list[dict]]:
    """(image config, layer descriptors) of the single image in an OCI archive."""
    with tarfile.open(archive) as tar:

        def member(name: str) -> IO[bytes]:
            fh = tar.extractfile(name)
            if fh is None:
                raise BuildError(f"{archive}: {name} is not a regular file in the OCI archive")
            return fh

        def blob(digest: str) -> bytes:
            algo, hexd = digest.split(":", 1)
            return member(f"blobs/{algo}/{hexd}").read()

        index = json.loads(member("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        return json.loads(blob(manifest["config"]["digest"])), manifest["layers"]


def unpacked_size(archive: Path) -> int:
    """Bytes of the layers once decompressed: what containerd stores for the image."""
    _config, layers = archive_layers(archive)
    total = 0
    with tarfile.open(archive) as tar:
        for layer in layers:
            algo, hexd = layer["digest"].split(":", 1)
            fh = tar.extractfile(f"blobs/{algo}/{hexd}")
            if fh is None:
                raise BuildError(f"{archive}: layer {layer['digest']} is missing from the OCI archive")
            if not layer["mediaType"].endswith("gzip"):
                total += layer["size"]
                continue
            decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            for chunk in iter(partial(fh.read, 1 << 20), b""):
                total += len(decomp.decompress(chunk))
            total += len(decomp.flush())
    return total


def cached_image(root: Path | None = None) -> ImageRef | None:
    """The archive of the current inputs, if it was built; never builds."""
    root = root or repo_root()
    base_id = _cached_base_id()
    if not base_id:
        return None
    return _cached(image_name(project_version(root), inputs_digest(root, base_id)))


def build_image(force: bool = False, refresh_base: bool = False, root: Path | None = None) -> ImageRef:
    """The onair image of this checkout as an OCI archive; built unless cached. Safe to call
    concurrently."""
    root = (root or repo_root()).resolve()
    if not (force or refresh_base):
        ref = cached_image(root)
        if ref:
            return ref
    with build.build_lock(image_dir()):
        if not (force or refresh_base):
            ref = cached_image(root)  # built by whoever held the lock before us
            if ref:
                return ref
        return _build(root, force, refresh_base)


def _build(root: Path, force: bool, refresh_base: bool) -> ImageRef:
    t0 = time.monotonic()
    logs = image_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "build.log"
    log.write_text("")
    buildah = _Buildah(_storage_driver(_tool("buildah", "buildah")), log)
    base_name, base_id = ensure_base(buildah, refresh=refresh_base)
    ensure_player(root)
    digest = inputs_digest(root, base_id)
    name = image_name(project_version(root), digest)
    if not force:
        ref = _cached(name)
        if ref:
            return ref
    _log(f"building {name} from {root / 'Dockerfile'} on {base_name} ({buildah.driver} storage; log {log})")
    args = ["bud", "--isolation", "chroot", "--layers", "--pull=never", "--build-arg", f"BASE_IMAGE={base_name}"]
    ca = _host_ca_bundle()
    if ca:
        args += ["--volume", f"{ca}:{_BUILD_CA_PATH}:ro", "--build-arg", f"PIP_CERT={_BUILD_CA_PATH}"]
    buildah.run(*args, "--file", str(root / "Dockerfile"), "--tag", name, str(root), cwd=root)

    archives_dir().mkdir(parents=True, exist_ok=True)
    archive = _archive_path(name)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        buildah.run("push", "--quiet", name, f"oci-archive:{tmp}:{name}")
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    ref = ImageRef(
        name=name,
        archive=archive,
        digest=digest,
        size_bytes=unpacked_size(archive),
        archive_bytes=archive.stat().st_size,
        build_seconds=round(time.monotonic() - t0, 1),
    )
    stamp = _stamp_path(name)
    stamp_tmp = stamp.with_name(f".{stamp.name}.tmp")
    stamp_tmp.write_text(json.dumps(ref.to_json(), indent=1))
    os.replace(stamp_tmp, stamp)
    _prune(buildah, keep=name)
    _log(
        f"{name}: {ref.size_bytes / 2**20:.0f} MiB unpacked, archive {ref.archive_bytes / 2**20:.0f} MiB, "
        f"built in {ref.build_seconds:.1f}s -> {archive}"
    )
    return ref


def _prune(buildah: _Buildah, keep: str) -> None:
    """Keep the KEEP_ARCHIVES most recently used archives and nothing else: older archives, their
    images and build layers, and bases of other recipes."""
    stamps = sorted(archives_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    kept: set[str] = {keep}
    for stamp in stamps:
        with contextlib.suppress(OSError, ValueError, KeyError):
            name = json.loads(stamp.read_text())["name"]
            if len(kept) < KEEP_ARCHIVES or name == keep:
                kept.add(name)
                continue
            _log(f"pruning {name}")
            stamp.with_suffix(".tar").unlink(missing_ok=True)
            stamp.unlink(missing_ok=True)
    current_base = f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-{base_key()}"
    for line in buildah.output("images", "--format", "{{.Name}}:{{.Tag}}").split():
        stale_image = line.startswith(IMAGE_REPOSITORY + ":") and line not in kept
        stale_base = line.startswith(BASE_REPOSITORY + ":") and line != current_base
        if stale_image or stale_base:
            subprocess.run(buildah.cmd("rmi", line), capture_output=True, timeout=300)
    # Untagged images: the layers of pruned builds (the current build's stay: they have children).
    subprocess.run(buildah.cmd("rmi", "--prune"), capture_output=True, timeout=600)
    for d in (image_dir() / "base").glob("*"):
        if d.is_dir() and d.name != base_key():
            shutil.rmtree(d, ignore_errors=True)
            (image_dir() / "base" / f"{d.name}.json").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="scripts/build-image",
        description="Build the onair image from the Dockerfile with buildah, on a base made from Debian "
        "packages: no Docker daemon, no registry. Prints the image name and its OCI archive.",
    )
    ap.add_argument("--force", action="store_true", help="rebuild even if the archive of these inputs exists")
    ap.add_argument(
        "--refresh-base",
        action="store_true",
        help="rebuild the Debian base from the mirror (takes in security updates)",
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        # With --json, stdout carries the JSON alone: progress goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            ref = build_image(force=args.force, refresh_base=args.refresh_base)
    except BuildError as e:
        print(f"build-image: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ref.to_json(), indent=1))
        return 0
    print(f"image    {ref.name}")
    print(f"archive  {ref.archive}")
    print(f"size     {ref.size_bytes / 2**20:.0f} MiB unpacked, {ref.archive_bytes / 2**20:.0f} MiB compressed")
    print(f"load     ctr -n k8s.io images import {ref.archive}")
    print(f"elapsed  {time.monotonic() - t0:.1f}s (the build that made it: {ref.build_seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
