"""The Dockerfile cannot be built here (no Docker engine); this keeps it honest instead.

It must install exactly packaging/debian-packages.txt, expose every port of onair.roles, run as
a non-root user, build the player, and the packages it installs must be the ones that provide
every binary the agents run (checked with dpkg on this machine, which installs the same list).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from onair.roles import ROLES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PACKAGE_LIST = ROOT / "packaging" / "debian-packages.txt"

# What the agents execute or load; each must come from a package in the list.
AGENT_BINARIES = ("nginx", "ffmpeg", "ffprobe", "srt-live-transmit")
AGENT_FILES = ("/usr/lib/nginx/modules/ngx_rtmp_module.so", "/usr/lib/nginx/modules/ngx_stream_module.so")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, backslash continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return stages


def listed_packages() -> list[str]:
    names = []
    for line in PACKAGE_LIST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.extend(line.split())
    return names


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages) -> Stage:
    return stages[-1]


def test_runtime_base_is_python_311_slim_bookworm(final):
    assert final.base == "python:3.11-slim-bookworm"


def test_installs_exactly_the_package_list(final):
    runs = final.all("RUN")
    copies = final.all("COPY")
    assert any("packaging/debian-packages.txt" in c for c in copies), "the list must be copied into the build"
    installs = [r for r in runs if "apt-get install" in r]
    assert len(installs) == 1, "one apt-get install, fed by the list"
    install = installs[0]
    assert re.search(r"xargs apt-get install -y --no-install-recommends\s*(&&|$)", install), install
    assert "debian-packages.txt" in install
    # Comments are stripped before xargs sees the list (a '#' word would be a package name).
    assert "sed" in install or "grep" in install
    for package in listed_packages():
        assert not re.search(rf"apt-get install[^&]*\b{re.escape(package)}\b", install), \
            f"{package} is named in the Dockerfile instead of coming from the list"


def test_the_list_strips_to_package_names_the_way_the_dockerfile_does():
    """Run the Dockerfile's own sed over the list: what xargs gets is the list, nothing else."""
    install = next(r for r in parse(DOCKERFILE.read_text())[-1].all("RUN") if "apt-get install" in r)
    sed = re.search(r"(sed .*?debian-packages\.txt)", install)
    assert sed, install
    command = sed.group(1).replace("/tmp/debian-packages.txt", shlex.quote(str(PACKAGE_LIST)))
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10, check=True).stdout
    assert out.split() == listed_packages()


def test_every_role_port_is_exposed(final):
    exposed = set()
    for args in final.all("EXPOSE"):
        for word in args.split():
            port, _, proto = word.partition("/")
            exposed.add((int(port), (proto or "tcp").lower()))
    wanted = {(p.number, p.protocol.lower()) for role in ROLES.values() for p in role.ports}
    assert wanted <= exposed, f"missing EXPOSE for {sorted(wanted - exposed)}"
    assert exposed <= wanted, f"EXPOSEd ports no role uses: {sorted(exposed - wanted)}"


def test_runs_as_uid_10001_not_root(final):
    users = final.all("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user in ("10001", "onair")
    assert any("--uid 10001" in r for r in final.all("RUN")), "the user must exist with uid 10001"
    # Nothing may switch back to root after the last USER.
    last_user = max(i for i, ins in enumerate(final.instructions) if ins.keyword == "USER")
    assert not any(ins.keyword == "RUN" for ins in final.instructions[last_user:])


def test_entrypoint_is_the_onair_cli(final):
    assert final.all("ENTRYPOINT") == ['["onair"]']


def test_player_is_built_in_a_builder_stage_and_copied_in(stages, final):
    builders = [s for s in stages[:-1] if any("scripts/build-player" in r for r in s.all("RUN"))]
    assert builders, "hls.js must be vendored by scripts/build-player at image build time"
    builder = builders[0]
    assert builder.name
    assert any("package-lock.json" in c for c in builder.all("COPY")), "npm ci needs the lock file"
    assert any(c.startswith(f"--from={builder.name} ") and "static/vendor" in c for c in final.all("COPY"))
    # The copy lands before pip install, so the package data includes it.
    keywords = [(i.keyword, i.args) for i in final.instructions]
    copy_at = next(n for n, (k, a) in enumerate(keywords) if k == "COPY" and a.startswith(f"--from={builder.name}"))
    pip_at = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "pip install" in a)
    assert copy_at < pip_at


def test_files_the_dockerfile_copies_exist():
    for stage in parse(DOCKERFILE.read_text()):
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def _owning_package(path: str) -> str:
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"dpkg knows no package for {path}: {out.stderr.strip()}"
    # "pkg[:arch][, pkg2]: /path"
    return out.stdout.split(":", 1)[0].split(",")[0].strip()


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian), like the image")
@pytest.mark.parametrize("binary", AGENT_BINARIES)
def test_agent_binary_comes_from_a_listed_package(binary):
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert path, f"{binary} is not installed here; run scripts/install-deps"
    assert _owning_package(str(Path(path).resolve())) in listed_packages()


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian), like the image")
@pytest.mark.parametrize("path", AGENT_FILES)
def test_nginx_module_comes_from_a_listed_package(path):
    assert Path(path).exists(), f"{path} is not installed here; run scripts/install-deps"
    assert _owning_package(path) in listed_packages()


def test_dockerignore_keeps_the_context_small_but_not_the_sources():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", "**/node_modules"} <= ignored
    for needed in ("operator", "pyproject.toml", "README.md", "packaging", "scripts"):
        assert needed not in ignored
