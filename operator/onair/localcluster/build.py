"""Build the pinned control-plane binaries from source via the Go module proxy.

Why from source: the only reachable registries are the language package registries, so the
upstream release tarballs are out of reach, but every binary we need is a Go `main` package
published as a module. Each component gets a tiny wrapper module whose go.mod requires the
upstream module at the pinned tag; `go build` then resolves everything through the proxy.

k8s.io/kubernetes cannot be required as-is: its go.mod pins the staging modules
(k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and `replace`s them with ./staging/...,
and replace directives only apply in the main module. The wrapper therefore carries one
`replace` per staging module pointing at its published tag (v0.X.Y for v1.X.Y). Those lines
are generated from the tag's own go.mod so a version bump never needs a hand-edited list.
etcd's server module has the same shape (../api, ../client/v3 ... at the same tag).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from . import versions

# ----------------------------------------------------------------------------- go.mod parsing


@dataclasses.dataclass
class GoMod:
    module: str = ""
    go: str = ""
    godebug: list[str] = dataclasses.field(default_factory=list)
    require: dict[str, str] = dataclasses.field(default_factory=dict)
    # (old path, old version or "", new path, new version or "") in file order
    replace: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    # "path version" in file order
    exclude: list[str] = dataclasses.field(default_factory=list)


_COMMENT = re.compile(r"//.*$")


def _strip_quotes(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in '"`' else s


def parse_gomod(text: str) -> GoMod:
    """Parse the subset of go.mod syntax we need (module, go, godebug, require, replace, exclude)."""
    mod = GoMod()
    block: str | None = None
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
                continue
            _gomod_directive(mod, block, line)
            continue
        verb, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest == "(":
            block = verb
            continue
        _gomod_directive(mod, verb, rest)
    return mod


def _gomod_directive(mod: GoMod, verb: str, rest: str) -> None:
    if verb == "module":
        mod.module = _strip_quotes(rest)
    elif verb == "go":
        mod.go = rest
    elif verb == "godebug":
        mod.godebug.append(rest)
    elif verb == "require":
        parts = rest.split()
        if len(parts) >= 2:
            mod.require[_strip_quotes(parts[0])] = parts[1]
    elif verb == "exclude":
        parts = rest.split()
        if len(parts) >= 2:
            mod.exclude.append(f"{_strip_quotes(parts[0])} {parts[1]}")
    elif verb == "replace":
        left, sep, right = rest.partition("=>")
        if not sep:
            return
        lp, rp = left.split(), right.split()
        old = _strip_quotes(lp[0])
        old_v = lp[1] if len(lp) > 1 else ""
        new = _strip_quotes(rp[0])
        new_v = rp[1] if len(rp) > 1 else ""
        mod.replace.append((old, old_v, new, new_v))


def _is_local_path(p: str) -> bool:
    return p.startswith(("./", "../", "/")) or p in (".", "..")


def staging_version(kubernetes_version: str) -> str:
    """k8s.io/kubernetes v1.X.Y publishes its staging modules as v0.X.Y."""
    m = re.fullmatch(r"v1\.(\d+\.\d+(?:-[0-9A-Za-z.\-]+)?)", kubernetes_version)
    if not m:
        raise ValueError(f"not a kubernetes v1.X.Y tag: {kubernetes_version!r}")
    return "v0." + m.group(1)


def replace_lines(gomod_text: str, local_version: Callable[[str], str]) -> list[str]:
    """Replace directives a wrapper module needs to build packages of the parsed module.

    Local-path replacements become the published module at `local_version(path)`; only modules
    that are actually required get one (etcd replaces go.etcd.io/etcd with
    ./FORBIDDEN_DEPENDENCY as a guard, which must not leak into the wrapper). Modules required
    at v0.0.0 under k8s.io/ are staging modules even if the replace were missing.
    Replacements pointing at other published modules are copied verbatim, because they
    too are ignored outside the main module.
    """
    mod = parse_gomod(gomod_text)
    out: dict[str, str] = {}
    for old, old_v, new, new_v in mod.replace:
        if _is_local_path(new):
            if old in mod.require:
                out[old] = f"{old} => {old} {local_version(old)}"
        else:
            left = f"{old} {old_v}".strip()
            out[old if not old_v else f"{old}@{old_v}"] = f"{left} => {new} {new_v}".strip()
    for path, v in mod.require.items():
        if v == "v0.0.0" and path.startswith("k8s.io/") and path not in out:
            out[path] = f"{path} => {path} {local_version(path)}"
    return [out[k] for k in sorted(out)]


def wrapper_gomod(
    upstream: GoMod, upstream_text: str, module: str, version: str, local_version: Callable[[str], str]
) -> str:
    lines = [
        "// Generated by onair.localcluster.build; do not edit. Rebuilt whenever the pins change.",
        f"module onair.local/controlplane/{module.replace('/', '-')}",
        "",
        f"go {upstream.go or '1.22'}",
        "",
    ]
    # Upstream's godebug settings only take effect in the main module; keep the binaries
    # behaving as upstream's own builds do.
    lines += [f"godebug {g}" for g in upstream.godebug]
    lines += ["", f"require {module} {version}", ""]
    # Like replace, exclude only applies in the main module; Traefik excludes a tencentcloud
    # SDK version whose packages would otherwise be ambiguous imports.
    lines += [f"exclude {e}" for e in upstream.exclude]
    if upstream.exclude:
        lines.append("")
    repl = replace_lines(upstream_text, local_version)
    if repl:
        lines.append("replace (")
        lines += [f"\t{r}" for r in repl]
        lines.append(")")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- components


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    module: str
    version: str
    binaries: dict[str, str]  # output name -> package import path
    local_version: Callable[[str], str]
    ldflags: Callable[[dict], list[str]]  # receives the module's .info JSON
    # Directory of the wrapper module under src/ (default: name). Components built from the
    # same module at the same version share one wrapper, so they share go.sum and every
    # compiled package in the build cache.
    src: str = ""

    def key(self) -> str:
        """Identity of a build: any change here means the binaries must be rebuilt. The Go
        toolchain version is deliberately not part of it, so starting a cluster never needs a
        Go toolchain once binaries exist; `onair localcluster build --force` rebuilds."""
        h = hashlib.sha256(
            json.dumps(
                [self.module, self.version, sorted(self.binaries.items()), _RECIPE_REV],
            ).encode()
        ).hexdigest()
        return h[:16]


# Bump when the way binaries are produced changes (flags, ldflags), to invalidate old builds.
_RECIPE_REV = 1


def _commit(info: dict, fallback: str = "") -> str:
    """The commit of the module's tag, from the Go proxy's .info JSON."""
    return ((info.get("Origin") or {}).get("Hash")) or fallback


def _build_date(info: dict) -> str:
    # Release time of the tag rather than "now" so rebuilding yields identical binaries.
    return (info.get("Time") or "1970-01-01T00:00:00Z").replace(".000", "")


def _k8s_ldflags(info: dict) -> list[str]:
    v = versions.KUBERNETES_VERSION
    m = re.match(r"v(\d+)\.(\d+)", v)
    major, minor = (m.group(1), m.group(2)) if m else ("", "")
    commit = _commit(info)
    build_date = _build_date(info)
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitCommit={commit}",
            f"-X {pkg}.gitTreeState={'clean' if commit else 'archive'}",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return flags


def _etcd_ldflags(info: dict) -> list[str]:
    commit = _commit(info, versions.ETCD_VERSION)
    return [f"-X go.etcd.io/etcd/api/v3/version.GitSHA={commit[:10]}"]


def _coredns_ldflags(info: dict) -> list[str]:
    return [f"-X github.com/coredns/coredns/coremain.GitCommit={_commit(info)[:7]}"]


def _local_path_provisioner_ldflags(info: dict) -> list[str]:
    return [f"-X main.VERSION={versions.LOCAL_PATH_PROVISIONER_VERSION}"]


def _traefik_ldflags(info: dict) -> list[str]:
    return [
        f"-X github.com/traefik/traefik/v3/pkg/version.Version={versions.TRAEFIK_VERSION}",
        f"-X github.com/traefik/traefik/v3/pkg/version.BuildDate={_build_date(info)}",
    ]


def _seaweedfs_ldflags(info: dict) -> list[str]:
    commit = _commit(info, versions.SEAWEEDFS_VERSION.rsplit("-", 1)[-1])
    return [f"-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT={commit[:8]}"]


def _helm_ldflags(info: dict) -> list[str]:
    commit = _commit(info)
    return [
        f"-X helm.sh/helm/v3/internal/version.version={versions.HELM_VERSION}",
        f"-X helm.sh/helm/v3/internal/version.gitCommit={commit}",
        f"-X helm.sh/helm/v3/internal/version.gitTreeState={'clean' if commit else ''}",
    ]


def components() -> list[Component]:
    kv, ev = versions.KUBERNETES_VERSION, versions.ETCD_VERSION
    return [
        Component(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=ev,
            binaries={"etcd": "go.etcd.io/etcd/server/v3"},
            local_version=lambda _path: ev,  # etcd's sibling modules share the tag
            ldflags=_etcd_ldflags,
        ),
        Component(
            name="kubernetes",
            module="k8s.io/kubernetes",
            version=kv,
            binaries={
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            },
            local_version=lambda _path: staging_version(kv),
            ldflags=_k8s_ldflags,
        ),
        # The node binaries: a component of their own so control-plane-only runs never compile
        # them, but the same wrapper module as kube-apiserver.
        Component(
            name="kubernetes-node",
            module="k8s.io/kubernetes",
            version=kv,
            binaries={
                "kubelet": "k8s.io/kubernetes/cmd/kubelet",
                "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
                "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
            },
            local_version=lambda _path: staging_version(kv),
            ldflags=_k8s_ldflags,
            src="kubernetes",
        ),
        Component(
            name="coredns",
            module="github.com/coredns/coredns",
            version=versions.COREDNS_VERSION,
            binaries={"coredns": "github.com/coredns/coredns"},
            local_version=lambda _path: versions.COREDNS_VERSION,
            ldflags=_coredns_ldflags,
        ),
        Component(
            name="local-path-provisioner",
            module="github.com/rancher/local-path-provisioner",
            version=versions.LOCAL_PATH_PROVISIONER_VERSION,
            binaries={"local-path-provisioner": "github.com/rancher/local-path-provisioner"},
            local_version=lambda _path: versions.LOCAL_PATH_PROVISIONER_VERSION,
            ldflags=_local_path_provisioner_ldflags,
        ),
        # The cluster's HTTP entry point for playback routes (Ingress and Gateway API), installed
        # on the node by onair.localcluster.traefik.
        Component(
            name="traefik",
            module="github.com/traefik/traefik/v3",
            version=versions.TRAEFIK_VERSION,
            binaries={"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
            local_version=lambda _path: versions.TRAEFIK_VERSION,
            ldflags=_traefik_ldflags,
        ),
        # The S3-compatible store the recorder's uploads are tested against (tests/fixtures/s3.py);
        # a host process, never part of a cluster.
        Component(
            name="seaweedfs",
            module="github.com/seaweedfs/seaweedfs",
            version=versions.SEAWEEDFS_VERSION,
            binaries={"weed": "github.com/seaweedfs/seaweedfs/weed"},
            local_version=lambda _path: versions.SEAWEEDFS_VERSION,
            ldflags=_seaweedfs_ldflags,
        ),
        Component(
            name="helm",
            module="helm.sh/helm/v3",
            version=versions.HELM_VERSION,
            binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
            local_version=lambda _path: versions.HELM_VERSION,
            ldflags=_helm_ldflags,
        ),
    ]


# ----------------------------------------------------------------------------- paths


def cache_root() -> Path:
    env = os.environ.get("ONAIR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "onair"


def controlplane_dir() -> Path:
    return cache_root() / "controlplane" / versions.KUBERNETES_VERSION


def bin_dir() -> Path:
    return controlplane_dir() / "bin"


BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "helm")
# What a real node adds (onair.localcluster.node); built only when a node is asked for.
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "coredns", "local-path-provisioner", "traefik")
NODE_COMPONENTS = ["kubernetes-node", "coredns", "local-path-provisioner", "traefik"]
# What the tests start on the host next to the control plane (the recorder's S3 store).
TEST_BINARIES = ("weed",)


def binary_paths() -> dict[str, Path]:
    return {name: bin_dir() / name for name in BINARIES + NODE_BINARIES + TEST_BINARIES}


def find_go() -> str:
    for cand in (os.environ.get("ONAIR_GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise BuildError(
        "no Go toolchain found: set ONAIR_GO or put `go` on PATH "
        f"(need go >= {'.'.join(map(str, versions.MIN_GO_VERSION))})"
    )


class BuildError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- building


def _log(msg: str) -> None:
    print(f"[localcluster.build] {msg}", flush=True)


def go_env(go: str) -> dict[str, str]:
    root = cache_root() / "go"
    env = dict(os.environ)
    env.update(
        {
            # Own module and build caches: persistent across runs, and one directory to cache in
            # CI or delete to start cold. -modcacherw keeps that directory deletable with rm -rf.
            "GOMODCACHE": env.get("ONAIR_GOMODCACHE") or str(root / "mod"),
            "GOCACHE": env.get("ONAIR_GOCACHE") or str(root / "build"),
            "GOPATH": str(root / "path"),
            "GOFLAGS": "-mod=mod -modcacherw -buildvcs=false",
            # Never fetch a different toolchain behind our back.
            "GOTOOLCHAIN": "local",
            # Static binaries, as upstream ships its control-plane release binaries; also means
            # no C toolchain is needed.
            "CGO_ENABLED": "0",
            # A go.work somewhere above the cache dir must not pull the wrapper modules in.
            "GOWORK": "off",
        }
    )
    return env


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _check_go(go: str) -> str:
    gv = _go_version(go)
    m = re.match(r"go(\d+)\.(\d+)", gv)
    if not m or (int(m.group(1)), int(m.group(2))) < versions.MIN_GO_VERSION:
        raise BuildError(f"{go} is {gv}; need go >= {'.'.join(map(str, versions.MIN_GO_VERSION))}")
    return gv


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    _log("$ " + " ".join(cmd) + f"   (cwd {cwd}, log {log})")
    with open(log, "ab") as fh:
        fh.write(("\n$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        # Builds share the machine with tests and other work; keep them polite.
        proc = subprocess.run(
            ["nice", "-n", "10", *cmd] if shutil.which("nice") else cmd,
            cwd=cwd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise BuildError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n  cwd: {cwd}\n" + "\n".join("  | " + t for t in tail)
        )


def _mod_info(go: str, env: dict[str, str], module: str, version: str, cwd: Path, log: Path) -> dict:
    """Download only the .mod/.info of module@version and return `go mod download -json`."""
    _log(f"resolving {module}@{version}")
    # `go list -m -json` fetches just go.mod + .info (not the zip), which is all we need here.
    # Outside any module: `-mod` is meaningless (and rejected) there.
    list_env = {**env, "GOFLAGS": "-modcacherw", "GO111MODULE": "on"}
    with tempfile.TemporaryDirectory(prefix="onair-golist-") as tmp:
        proc = subprocess.run(
            [go, "list", "-m", "-json", f"{module}@{version}"], cwd=tmp, env=list_env, capture_output=True, text=True
        )
    if proc.returncode != 0:
        with open(log, "a") as fh:
            fh.write(proc.stdout + proc.stderr)
        raise BuildError(f"go list -m -json {module}@{version} failed:\n{proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    info_path = Path(env["GOMODCACHE"]) / "cache" / "download" / _escape_path(module) / "@v" / f"{version}.info"
    with contextlib.suppress(OSError, ValueError):
        data.update({k: v for k, v in json.loads(info_path.read_text()).items() if k not in data})
    return data


def _escape_path(module: str) -> str:
    """Module cache case-encoding: upper-case letters become '!' + lower-case."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)


@contextlib.contextmanager
def build_lock(directory: Path | None = None) -> Iterator[None]:
    """Serialize builds across processes (pytest-xdist workers all call ensure_built()); one lock
    per cache ``directory`` (the control plane's by default)."""
    d = directory or controlplane_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".build.lock", "w") as fh:
        t0 = time.monotonic()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another process is building in {d}; waiting for its lock")
            fcntl.flock(fh, fcntl.LOCK_EX)
            _log(f"lock acquired after {time.monotonic() - t0:.1f}s")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stamp_path(comp: Component) -> Path:
    return bin_dir() / f".{comp.name}.stamp"


def _is_built(comp: Component) -> bool:
    try:
        stamp = json.loads(_stamp_path(comp).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("key") == comp.key() and all((bin_dir() / b).is_file() for b in comp.binaries)


def unbuilt(names: list[str]) -> list[str]:
    """The components among ``names`` whose cached binaries are missing or stale (never builds)."""
    return [c.name for c in components() if c.name in names and not _is_built(c)]


def _dir_empty(p: Path) -> bool:
    return not p.exists() or not any(p.iterdir())


def build_component(comp: Component, go: str, env: dict[str, str], go_version: str, cold: bool) -> float:
    src = controlplane_dir() / "src" / (comp.src or comp.name)
    src.mkdir(parents=True, exist_ok=True)
    log = controlplane_dir() / "logs" / f"build-{comp.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = _mod_info(go, env, comp.module, comp.version, src, log)
    upstream_text = Path(info["GoMod"]).read_text()
    upstream = parse_gomod(upstream_text)
    gomod = wrapper_gomod(upstream, upstream_text, comp.module, comp.version, comp.local_version)
    # Rewrite go.mod only when it changed, so go.sum and the resolved requirements from a
    # previous run stay valid and a warm build does no network resolution at all.
    gomod_path, base_path = src / "go.mod", src / "go.mod.base"
    if not base_path.exists() or base_path.read_text() != gomod:
        base_path.write_text(gomod)
        gomod_path.write_text(gomod)
        (src / "go.sum").unlink(missing_ok=True)
    (src / "doc.go").write_text(
        "// Package wrapper exists only so this directory is a buildable module; the\n"
        "// binaries are built straight from the upstream package paths in go.mod.\n"
        "package wrapper\n"
    )

    ldflags = " ".join(["-s", "-w", *comp.ldflags(info)])
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{comp.name}-", dir=bin_dir()))
    try:
        cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp_out) + "/", *comp.binaries.values()]
        _run(cmd, cwd=src, env=env, log=log)
        for name, pkg in comp.binaries.items():
            built = tmp_out / pkg.rsplit("/", 1)[-1]
            if not built.is_file() and len(comp.binaries) == 1:
                built = next(tmp_out.iterdir())
            os.replace(built, bin_dir() / name)
    finally:
        shutil.rmtree(tmp_out, ignore_errors=True)
    elapsed = time.monotonic() - t0
    _stamp_path(comp).write_text(
        json.dumps(
            {
                "key": comp.key(),
                "module": comp.module,
                "version": comp.version,
                "go": go_version,
                "seconds": round(elapsed, 1),
                "cold_go_cache": cold,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=1,
        )
    )
    _log(f"built {comp.name} {comp.version} in {elapsed:.1f}s")
    return elapsed


def ensure_built(only: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Build whatever is missing or stale; return name -> binary path. Safe to call concurrently."""
    t0 = time.monotonic()
    wanted = [c for c in components() if not only or c.name in only or set(c.binaries) & set(only)]
    paths = binary_paths()
    # Fast path without the lock or a Go toolchain: every stamp matches the pins.
    if not force and all(_is_built(c) for c in wanted):
        return paths
    go = find_go()
    go_version = _check_go(go)
    env = go_env(go)
    bin_dir().mkdir(parents=True, exist_ok=True)
    built: list[str] = []
    with build_lock():
        # Another process may have finished the build while we waited for the lock.
        todo = [c for c in wanted if force or not _is_built(c)]
        cold_mod = _dir_empty(Path(env["GOMODCACHE"]) / "cache" / "download")
        cold_build = _dir_empty(Path(env["GOCACHE"]))
        if todo:
            _log(
                f"building {', '.join(f'{c.name} {c.version}' for c in todo)} with {go_version}; "
                f"module cache {'empty (cold)' if cold_mod else 'warm'}, "
                f"build cache {'empty (cold)' if cold_build else 'warm'}"
            )
        for comp in wanted:
            if comp not in todo:
                _log(f"{comp.name} {comp.version}: up to date")
                continue
            build_component(comp, go, env, go_version, cold_build)
            built.append(comp.name)
    if built:
        label = "cold" if cold_build and cold_mod else "warm" if not cold_build else "partly cold"
        _log(f"{label} build of {', '.join(built)} done in {time.monotonic() - t0:.1f}s; binaries in {bin_dir()}")
    return paths


GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"


def gateway_api_crds() -> list[Path]:
    """The Gateway API's standard-channel CRD YAMLs at the pinned version, from the Go module
    proxy into the build's module cache (downloaded once; no build, nothing from a Git host)."""
    go = find_go()
    env = go_env(go)
    module = f"{GATEWAY_API_MODULE}@{versions.GATEWAY_API_VERSION}"
    with tempfile.TemporaryDirectory(prefix="onair-gomod-") as tmp:
        proc = subprocess.run(
            [go, "mod", "download", "-json", module],
            cwd=tmp,
            env={**env, "GOFLAGS": "-modcacherw", "GO111MODULE": "on"},
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise BuildError(f"go mod download {module} failed:\n{(proc.stdout + proc.stderr).strip()}")
    crd_dir = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "standard"
    files = sorted(crd_dir.glob("*.yaml"))
    if not files:
        raise BuildError(f"{module} has no CRDs under {crd_dir}")
    return files


def disk_usage(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def main(argv: list[str] | None = None) -> int:
    """`python -m onair.localcluster.build`, for environments without the console script."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m onair.localcluster.build")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("only", nargs="*")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        paths = ensure_built(args.only or None, force=args.force)
    except BuildError as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    for name, p in paths.items():
        print(f"{name}: {p}")
    print(f"elapsed: {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
