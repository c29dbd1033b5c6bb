"""The Dockerfile's structure, checked in milliseconds (tests/image/ builds and runs it).

It must install exactly the package lists, expose every port of onair.roles, run as a non-root
user, take its base from a build argument (public default, local Debian-built base), install the
package into a venv with wheels only, copy the vendored player, and the packages it installs must
be the ones that provide every binary the agents run (checked with dpkg on this machine, which
installs the same list).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from onair.roles import MEDIA_ROLES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PACKAGE_LIST = ROOT / "system-packages" / "debian-packages.txt"
IMAGE_PACKAGE_LIST = ROOT / "system-packages" / "debian-image-packages.txt"
DPKG_EXCLUDES = ROOT / "system-packages" / "dpkg-image-excludes.cfg"

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
    # ARGs declared before the first FROM, name -> default (only FROM lines can use them)
    global_args: dict[str, str | None] = field(default_factory=dict)

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
    global_args: dict[str, str | None] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, [], dict(global_args)))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
        elif keyword == "ARG":
            arg, _, default = args.strip().partition("=")
            global_args[arg] = default or None
    return stages


def listed_packages(*lists: Path) -> list[str]:
    names = []
    for path in lists or (PACKAGE_LIST,):
        for line in path.read_text().splitlines():
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


def test_one_stage_whose_base_is_a_build_argument_defaulting_to_public_debian_bookworm(stages, final):
    """`docker build .` pulls debian:bookworm-slim; scripts/build-image passes its Debian-built base."""
    assert len(stages) == 1, "no builder stages: hls.js is vendored before the build (scripts/build-player)"
    assert final.base == "${BASE_IMAGE}"
    assert final.global_args == {"BASE_IMAGE": "debian:bookworm-slim"}


def test_installs_exactly_the_package_lists(final):
    runs = final.all("RUN")
    copies = final.all("COPY")
    assert any(
        "system-packages/debian-packages.txt" in c and "system-packages/debian-image-packages.txt" in c for c in copies
    ), "the lists must be copied into the build"
    installs = [r for r in runs if "apt-get install" in r]
    assert len(installs) == 1, "one apt-get install, fed by the lists"
    install = installs[0]
    assert re.search(r"xargs apt-get install -y --no-install-recommends\s*(&&|$)", install), install
    assert "debian-packages.txt" in install and "debian-image-packages.txt" in install
    assert "rm -rf /var/lib/apt/lists/*" in install
    # Comments are stripped before xargs sees the list (a '#' word would be a package name).
    assert "sed" in install or "grep" in install
    for package in listed_packages(PACKAGE_LIST, IMAGE_PACKAGE_LIST):
        assert not re.search(rf"apt-get install[^&]*\b{re.escape(package)}\b", install), (
            f"{package} is named in the Dockerfile instead of coming from a list"
        )


def test_the_lists_strip_to_package_names_the_way_the_dockerfile_does():
    """Run the Dockerfile's own sed over the lists: what xargs gets is the lists, nothing else."""
    install = next(r for r in parse(DOCKERFILE.read_text())[-1].all("RUN") if "apt-get install" in r)
    sed = re.search(r"(sed .*?debian-image-packages\.txt)", install)
    assert sed, install
    command = (
        sed.group(1)
        .replace("/tmp/debian-packages.txt", shlex.quote(str(PACKAGE_LIST)))
        .replace("/tmp/debian-image-packages.txt", shlex.quote(str(IMAGE_PACKAGE_LIST)))
    )
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10, check=True).stdout
    assert out.split() == listed_packages(PACKAGE_LIST, IMAGE_PACKAGE_LIST)
    assert {"python3", "python3-venv"} <= set(out.split())


def test_dpkg_excludes_are_in_place_before_the_install(final):
    keywords = [(i.keyword, i.args) for i in final.instructions]
    copy_at = next(
        n
        for n, (k, a) in enumerate(keywords)
        if k == "COPY" and a.split()[0] == "system-packages/dpkg-image-excludes.cfg"
    )
    assert keywords[copy_at][1].split()[1].startswith("/etc/dpkg/dpkg.cfg.d/")
    install_at = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "apt-get install" in a)
    assert copy_at < install_at
    for line in DPKG_EXCLUDES.read_text().splitlines():
        line = line.strip()
        assert not line or line.startswith("#") or re.fullmatch(r"path-(exclude|include)=/\S+", line), line


def test_python_package_goes_into_a_venv_on_path_from_wheels(final):
    """Debian's pip refuses system installs (PEP 668); the image has no compiler."""
    env = " ".join(final.all("ENV"))
    assert re.search(r"\bPATH=/opt/onair/bin:", env)
    runs = final.all("RUN")
    deps = next(r for r in runs if "pip install" in r and "-r /tmp/requirements.txt" in r)
    assert "python3 -m venv /opt/onair" in deps
    assert "--only-binary=:all:" in deps
    package = next(r for r in runs if "pip install --no-deps ." in r)
    assert "pip uninstall -y pip setuptools" in package
    # The CA bundle for pip is a build argument (not kept), never an ENV (kept in the image).
    assert "PIP_CERT" in final.all("ARG")
    assert "PIP_CERT" not in env


def test_the_dependency_step_installs_exactly_pyprojects_dependencies(final):
    """Run the Dockerfile's own extraction over pyproject.toml."""
    deps = next(r for r in final.all("RUN") if "-r /tmp/requirements.txt" in r)
    script = re.search(r"python3 -c ('[^']*')", deps)
    assert script, deps
    out = subprocess.run(
        ["sh", "-c", f"python3 -c {script.group(1)}"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.splitlines() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_every_role_port_is_exposed(final):
    exposed = set()
    for args in final.all("EXPOSE"):
        for word in args.split():
            port, _, proto = word.partition("/")
            exposed.add((int(port), (proto or "tcp").lower()))
    wanted = {(p.number, p.protocol.lower()) for role in MEDIA_ROLES.values() for p in role.ports}
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


def test_vendored_player_is_copied_and_checked_before_the_package_install(final):
    keywords = [(i.keyword, i.args) for i in final.instructions]
    copy_at = next(n for n, (k, a) in enumerate(keywords) if k == "COPY" and a.split()[0] == "operator")
    pip_at = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "pip install --no-deps ." in a)
    assert copy_at < pip_at
    install = keywords[pip_at][1]
    # The check comes first in the same step and names the fix.
    assert install.index("static/vendor/hls.min.js") < install.index("pip install")
    assert "scripts/build-player" in install
    # The vendored file is in the build context (and in the image's input digest).
    from onair.localcluster.image import is_ignored, parse_dockerignore

    patterns = parse_dockerignore((ROOT / ".dockerignore").read_text())
    assert not is_ignored("operator/onair/agent/static/vendor/hls.min.js", patterns)


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
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "**/node_modules"} <= ignored
    for needed in ("operator", "pyproject.toml", "README.md", "system-packages"):
        assert needed not in ignored
