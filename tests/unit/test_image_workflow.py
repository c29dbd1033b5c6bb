"""The release workflow (.github/workflows/image.yml) cannot run here; this keeps it honest.

It must build the repository's Dockerfile for amd64 and arm64, vendor hls.js first (the
Dockerfile copies it), and push exactly the tag the chart installs by default: its appVersion.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "image.yml"


def _steps() -> list[dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    (job,) = doc["jobs"].values()
    return job["steps"]


def _step(uses_prefix: str) -> tuple[int, dict]:
    return next((n, s) for n, s in enumerate(_steps()) if s.get("uses", "").startswith(uses_prefix))


def test_builds_and_pushes_both_architectures_from_the_dockerfile():
    _, build = _step("docker/build-push-action@")
    assert build["with"]["context"] == "."
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    assert "file" not in build["with"], "the repository's Dockerfile, as users build it"
    # arm64 on an amd64 runner needs QEMU; buildx does the multi-platform build.
    n_build, _ = _step("docker/build-push-action@")
    assert _step("docker/setup-qemu-action@")[0] < n_build
    assert _step("docker/setup-buildx-action@")[0] < n_build
    assert _step("docker/login-action@")[0] < n_build


def test_vendors_the_player_before_the_build():
    steps = _steps()
    n_player = next(n for n, s in enumerate(steps) if s.get("run", "").strip() == "scripts/build-player")
    assert n_player < _step("docker/build-push-action@")[0]


def test_tag_is_the_charts_app_version():
    steps = _steps()
    version_step = next(s for s in steps if s.get("id") == "version")
    _, build = _step("docker/build-push-action@")
    assert build["with"]["tags"] == "${{ steps.version.outputs.image }}:${{ steps.version.outputs.version }}"
    # Run the step's own extraction on the chart (not on a tag: no tag check, no GitHub output file).
    script = version_step["run"]
    sed = re.search(r'version="\$\((sed .*?charts/onair/Chart\.yaml)\)"', script)
    assert sed, script
    out = subprocess.run(["sh", "-c", sed.group(1)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    chart = yaml.safe_load((ROOT / "charts/onair/Chart.yaml").read_text())
    assert out.strip() == str(chart["appVersion"])
    # A release tag that disagrees with the chart fails instead of pushing a tag nobody installs.
    assert '"$GITHUB_REF_NAME" != "v$version"' in script


def test_pushes_where_the_chart_pulls_from_by_default():
    values = yaml.safe_load((ROOT / "charts/onair/values.yaml").read_text())
    version_step = next(s for s in _steps() if s.get("id") == "version")
    # ghcr.io/<owner>/<repo> of the upstream repository is the chart's default repository.
    assert values["image"]["repository"] == "ghcr.io/onair-dev/onair"
    assert "image=ghcr.io/${GITHUB_REPOSITORY,,}" in version_step["run"]
    assert yaml.safe_load(WORKFLOW.read_text())["permissions"]["packages"] == "write"
