"""The image cache key (onair.localcluster.image): what the build reads, and nothing else.

A digest that misses a file the Dockerfile copies would hand out a stale image; one that hashes
caches or tests would rebuild for nothing. .dockerignore semantics follow Docker's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from onair.localcluster import image
from onair.localcluster.image import (
    context_files,
    copy_sources,
    image_name,
    inputs_digest,
    is_ignored,
    parse_dockerignore,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "pattern,path,ignored",
    [
        ("**/__pycache__", "operator/onair/__pycache__/x.pyc", True),
        ("**/__pycache__", "__pycache__/x.pyc", True),
        ("**/*.pyc", "operator/onair/a.pyc", True),
        ("**/node_modules", "operator/onair/agent/player/node_modules/hls.js/x.js", True),
        ("tests", "tests/unit/test_x.py", True),
        ("tests", "operator/tests/x.py", False),  # not anchored anywhere but the root
        ("*.log", "build.log", True),
        ("*.log", "operator/build.log", False),  # `*` never crosses a directory
        ("/build", "build/lib/x", True),
        ("operator/onair/agent/static/vendor", "operator/onair/agent/static/vendor/hls.min.js", True),
        ("op?rator", "operator/x", True),
        ("[a-c]ench", "bench/x.py", True),
    ],
)
def test_dockerignore_patterns(pattern, path, ignored):
    assert is_ignored(path, parse_dockerignore(pattern)) is ignored


def test_dockerignore_last_match_wins_and_exceptions():
    patterns = parse_dockerignore("# comment\n\ndocs\n!docs/keep.md\n")
    assert is_ignored("docs/other.md", patterns)
    assert not is_ignored("docs/keep.md", patterns)
    assert not is_ignored("README.md", patterns)


def test_copy_sources_of_the_real_dockerfile():
    sources = copy_sources((ROOT / "Dockerfile").read_text())
    assert "operator" in sources and "pyproject.toml" in sources and "README.md" in sources
    assert {
        "system-packages/debian-packages.txt",
        "system-packages/debian-image-packages.txt",
        "system-packages/dpkg-image-excludes.cfg",
    } <= set(sources)
    assert not any(s.startswith("/") for s in sources), "destinations are not sources"


def test_copy_sources_skips_stages_and_flags_and_reads_json_form():
    text = (
        "FROM x AS a\nCOPY --chown=1:1 a.txt \\\n  b.txt /dst/\n# COPY commented.txt /\n"
        'COPY --from=a /built /built\nADD ["c d.txt", "/e/"]\n'
    )
    assert copy_sources(text) == ["a.txt", "b.txt", "c d.txt"]


def _mini_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "operator/onair/agent/static/vendor").mkdir(parents=True)
    (root / "operator/onair/__pycache__").mkdir(parents=True)
    (root / "operator/onair/agent/player/node_modules/hls.js").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "system-packages").mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY system-packages/list.txt /tmp/\nCOPY operator ./operator\n")
    (root / ".dockerignore").write_text("**/__pycache__\n**/node_modules\ntests\n")
    (root / "system-packages/list.txt").write_text("ffmpeg\n")
    (root / "system-packages/unused.txt").write_text("not copied\n")
    (root / "operator/onair/__init__.py").write_text("")
    (root / "operator/onair/__pycache__/__init__.cpython-311.pyc").write_bytes(b"cache")
    (root / "operator/onair/agent/static/vendor/hls.min.js").write_text("hls")
    (root / "operator/onair/agent/player/node_modules/hls.js/x.js").write_text("module")
    (root / "tests/test_x.py").write_text("")
    return root


def test_context_files_are_what_the_dockerfile_copies_minus_dockerignore(tmp_path):
    root = _mini_repo(tmp_path)
    assert context_files(root) == [
        ".dockerignore",
        "Dockerfile",
        "operator/onair/__init__.py",
        "operator/onair/agent/static/vendor/hls.min.js",
        "system-packages/list.txt",
    ]


def test_an_exception_brings_a_file_back_from_an_ignored_directory(tmp_path):
    root = _mini_repo(tmp_path)
    (root / ".dockerignore").write_text("**/node_modules\n!operator/onair/agent/player/node_modules/hls.js/x.js\n")
    files = context_files(root)
    assert "operator/onair/agent/player/node_modules/hls.js/x.js" in files
    assert "operator/onair/__pycache__/__init__.cpython-311.pyc" in files  # no longer ignored


def test_digest_follows_the_build_inputs_only(tmp_path):
    root = _mini_repo(tmp_path)
    base = "sha256:" + "a" * 64
    d0 = inputs_digest(root, base)
    assert inputs_digest(root, base) == d0
    # Outside what the build reads: same digest.
    (root / "operator/onair/__pycache__/other.pyc").write_bytes(b"x")
    (root / "tests/test_y.py").write_text("")
    (root / "system-packages/unused.txt").write_text("changed")
    (root / "operator/onair/agent/player/node_modules/hls.js/y.js").write_text("")
    assert inputs_digest(root, base) == d0
    # What the build reads: a new digest for each change.
    seen = {d0}
    for change in (
        lambda: (root / "operator/onair/__init__.py").write_text("# changed\n"),
        lambda: (root / "operator/onair/new.py").write_text(""),
        lambda: (root / "operator/onair/agent/static/vendor/hls.min.js").write_text("hls 2"),
        lambda: os.chmod(root / "operator/onair/new.py", 0o755),
        lambda: (root / "Dockerfile").write_text((root / "Dockerfile").read_text() + "USER 1\n"),
        lambda: (root / ".dockerignore").write_text("tests\n"),
        lambda: (root / "operator/onair/new.py").unlink(),
    ):
        change()
        d = inputs_digest(root, base)
        assert d not in seen
        seen.add(d)
    assert inputs_digest(root, "sha256:" + "b" * 64) not in seen, "a new base is a new image"


def test_real_context_has_the_package_and_no_tests(tmp_path):
    files = context_files(ROOT)
    assert "operator/onair/cli.py" in files and "pyproject.toml" in files
    assert not [f for f in files if f.startswith("tests/") or "__pycache__" in f or "node_modules" in f]


def test_image_name_is_local_and_versioned():
    name = image_name("0.1.0", "0123456789abcdef" * 4)
    assert name == "localhost/onair:0.1.0-0123456789ab"
    assert re.fullmatch(r"localhost/[a-z0-9-]+:[\w.-]{1,128}", name)


def test_cached_image_is_none_without_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("ONAIR_CACHE", str(tmp_path / "cache"))
    assert image.cached_image(ROOT) is None


def test_image_ref_round_trips_through_its_stamp(tmp_path):
    ref = image.ImageRef(
        name="localhost/onair:0.1.0-0123456789ab",
        archive=tmp_path / "a.tar",
        digest="0" * 64,
        size_bytes=1,
        archive_bytes=2,
        build_seconds=3.0,
    )
    assert image.ImageRef.from_json(ref.to_json()) == ref
    assert (ref.repository, ref.tag) == ("localhost/onair", "0.1.0-0123456789ab")
