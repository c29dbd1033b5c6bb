"""scripts/install-deps must hand apt plain package names (CI runs it on a fresh machine)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_lists_expand_to_plain_names():
    script = (ROOT / "scripts" / "install-deps").read_text()
    func = next(line for line in script.splitlines() if line.startswith("want_pkgs()"))
    out = subprocess.run(
        [
            "bash",
            "-c",
            f"{func}\nwant_pkgs system-packages/debian-packages.txt system-packages/debian-test-packages.txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "ffmpeg" in out and "libnginx-mod-rtmp" in out and "chromium" in out
    assert all(name and ":" not in name and "/" not in name and not name.startswith("#") for name in out), out
