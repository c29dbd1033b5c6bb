"""The onair image as built here (scripts/build-image) and run by containerd, as a node runs it.

Every container runs as the image's own user (containerd applies the image config), loaded from
the same OCI archive the node tests import; see tests/fixtures/image.py.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from onair import endpoints
from onair.localcluster.image import IMAGE_REPOSITORY, archive_layers
from onair.roles import MEDIA_ROLES
from tests.fixtures.ingest import self_signed_cert
from tests.fixtures.media import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
# The unpacked image today is ~725 MiB (Debian's ffmpeg and its codec libraries are most of it).
# A budget with some headroom for Debian updates, so that growth (a compiler, recommends, a
# second Python) fails here instead of going unnoticed.
SIZE_BUDGET_MIB = 800


def _ok(proc, what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_archive_loads_into_containerd_under_a_stable_local_name(onair_image, image_runtime):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    app_version = str(yaml.safe_load((ROOT / "charts/onair/Chart.yaml").read_text())["appVersion"])
    assert version == app_version, "the image's version tag follows the chart's appVersion"
    assert re.fullmatch(rf"{re.escape(IMAGE_REPOSITORY)}:{re.escape(version)}-[0-9a-f]{{12}}", onair_image.name)
    assert onair_image.digest.startswith(onair_image.tag.rsplit("-", 1)[1])
    names = image_runtime.ctr("images", "list", "--quiet").stdout.split()
    assert onair_image.name in names


def test_image_config_is_what_the_pods_expect(onair_image):
    config, layers = archive_layers(onair_image.archive)
    c = config["config"]
    assert config["architecture"] and config["os"] == "linux"
    assert c["User"] == "10001:10001"
    assert c["Entrypoint"] == ["onair"]
    assert c["WorkingDir"] == "/var/lib/onair"
    exposed = set(c["ExposedPorts"])
    wanted = {f"{p.number}/{p.protocol.lower()}" for role in MEDIA_ROLES.values() for p in role.ports}
    assert exposed == wanted
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["PATH"].startswith("/opt/onair/bin:")
    # The build's CA bundle is a build argument: it must not become part of the image.
    assert not any(k.startswith("PIP_CERT") for k in env)
    assert all(layer["mediaType"].endswith("tar+gzip") for layer in layers)


def test_image_is_small(onair_image):
    size_mib = onair_image.size_bytes / 2**20
    print(f"{onair_image.name}: {size_mib:.0f} MiB unpacked, {onair_image.archive_bytes / 2**20:.0f} MiB archive")
    assert size_mib < SIZE_BUDGET_MIB, (
        f"the image grew to {size_mib:.0f} MiB unpacked (budget {SIZE_BUDGET_MIB}): look at the newest "
        "Dockerfile or system-packages/ change; if the growth is wanted, raise the budget and the README figure"
    )


def test_runs_as_uid_10001_not_root(image_runtime):
    out = _ok(image_runtime.run("id"), "id")
    assert out.strip() == "uid=10001(onair) gid=10001(onair) groups=10001(onair)"
    # The host's CA bundle was mounted into the build only.
    _ok(image_runtime.run("sh", "-c", "test ! -e /run/onair-build"), "no build mount left in the image")


def test_onair_help(image_runtime):
    out = _ok(image_runtime.run("onair", "--help"), "onair --help")
    for command in ("run", "agent", "crds", "token"):
        assert re.search(rf"^\s+{command}\s", out, re.M), out


def test_operator_loads(image_runtime):
    """`onair run --help` imports the operator: kopf, the kubernetes client, pydantic."""
    out = _ok(image_runtime.run("onair", "run", "--help"), "onair run --help")
    assert "usage: onair run" in out


@pytest.mark.parametrize("role", sorted(MEDIA_ROLES))
def test_agent_role_help(image_runtime, role):
    out = _ok(image_runtime.run("onair", "agent", role, "--help"), f"onair agent {role} --help")
    assert f"usage: onair agent {role}" in out
    assert "--config" in out


def test_every_module_of_the_package_and_its_native_wheels_import(image_runtime):
    """What `--help` leaves out: the agents load aiortc/av (WHIP), cryptography and the rest only
    when they run; every module must import, and the manylinux wheels load on the image's glibc."""
    code = (
        "import importlib, pkgutil, onair\n"
        "names = [m.name for m in pkgutil.walk_packages(onair.__path__, 'onair.')]\n"
        "for name in names + ['aiortc', 'av', 'pylibsrtp', 'cryptography.x509', 'lightkube', 'uvloop']:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    count = int(_ok(image_runtime.run("python3", "-c", code), "imports").strip())
    assert count > 50


def test_media_binaries(image_runtime):
    ffmpeg = _ok(image_runtime.run("ffmpeg", "-hide_banner", "-version"), "ffmpeg -version")
    assert ffmpeg.startswith("ffmpeg version")
    assert "--enable-libx264" in ffmpeg
    _ok(image_runtime.run("ffprobe", "-hide_banner", "-version"), "ffprobe -version")
    srt = image_runtime.run("srt-live-transmit", "-version")
    assert "SRT Library version" in srt.stdout + srt.stderr
    out = _ok(image_runtime.run("sh", "-c", "nginx -V 2>&1; ls /usr/lib/nginx/modules"), "nginx -V")
    assert "nginx version" in out
    assert "ngx_rtmp_module.so" in out and "ngx_stream_module.so" in out
    _ok(image_runtime.run("openssl", "version"), "openssl version")
    # The chart's TURN relay (turn.enabled) runs coturn from this image.
    turn = image_runtime.run("turnserver", "--version")
    assert re.match(r"^4\.\d+\.\d+", (turn.stdout + turn.stderr).strip()), turn.stdout + turn.stderr


def test_nginx_loads_the_rtmp_module_as_the_ingest_configures_it(image_runtime):
    """The ingest's own nginx.conf (RTMP + RTMPS through the stream module), rendered and checked with
    `nginx -t` inside the image as uid 10001 on a read-only root, as the pod runs it."""
    code = """
import subprocess, sys
from onair.agent.ingest.nginx import NginxParams, nginx_test_argv, prepare_work_dir, render_nginx_conf
wd = "/var/lib/onair/ingest"
prepare_work_dir(wd)
cert = wd + "/tls.crt"
key = wd + "/tls.key"
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=onair", "-days", "1", "-keyout", key, "-out", cert], check=True, capture_output=True)
conf = render_nginx_conf(NginxParams(
    livestream="ns/img", slot="main", work_dir=wd, rtmp_listen="127.0.0.1:1935", stat_listen="127.0.0.1:18080",
    callback_base="http://127.0.0.1:8080/hooks", idle_timeout_ms=3000, rtmps_listen="0.0.0.0:1936",
    tls_cert_file=cert, tls_key_file=key, rtmp_upstream="127.0.0.1:1935"))
assert "ngx_rtmp_module.so" in conf and "ngx_stream_module.so" in conf
open(wd + "/nginx.conf", "w").write(conf)
proc = subprocess.run(nginx_test_argv(wd + "/nginx.conf", wd), capture_output=True, text=True)
print(proc.returncode, proc.stderr)
sys.exit(proc.returncode)
"""
    _ok(image_runtime.run("python3", "-c", code, pod_like=True), "nginx -t of the ingest's config")


def test_player_script_is_in_the_package(image_runtime):
    code = "from onair.agent.origin.server import HLS_JS; print(HLS_JS.stat().st_size)"
    size = int(_ok(image_runtime.run("python3", "-c", code), "hls.min.js").strip())
    assert size > 100_000, "the origin's /player would serve an empty hls.js"


def test_every_binary_and_library_finds_its_libraries(image_runtime):
    """Programs and libraries resolve every shared library they link, also after the dpkg excludes
    of system-packages/dpkg-image-excludes.cfg (the GPU drivers and LLVM that only libGL would load).
    Plugins (subdirectories of the library directory, opened on demand) may lack an optional
    library Debian does not make a dependency (tc's ATM, libcaca's GL), never an excluded one."""
    code = r"""
import glob, os, subprocess
roots = ["/usr/bin", "/usr/sbin", "/usr/lib/nginx/modules", "/opt/onair"] + glob.glob("/usr/lib/*-linux-gnu")
checked = 0
for root in roots:
    for dirpath, _dirs, files in os.walk(root):
        plugin = dirpath != root and dirpath.startswith("/usr/lib/") and "-linux-gnu/" in dirpath + "/"
        for f in files:
            path = os.path.join(dirpath, f)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            checked += 1
            out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if "not found" in line:
                    print(("plugin" if plugin else "linked"), path, line.strip())
print("checked", checked)
"""
    out = _ok(image_runtime.run("python3", "-c", code, timeout=600), "ldd over the image")
    lines = out.splitlines()
    assert lines[-1].startswith("checked ") and int(lines[-1].split()[1]) > 500, out
    missing = lines[:-1]
    assert not [m for m in missing if m.startswith("linked ")], "\n".join(missing)
    excluded = re.compile(r"libLLVM|libz3|_dri\.so|libgallium")
    assert not [m for m in missing if excluded.search(m.split(" ", 2)[2])], "\n".join(missing)
    assert _ok(image_runtime.run("sh", "-c", "ls /usr/lib/*/dri 2>/dev/null | wc -l"), "dri").strip() == "0"


def test_ingest_agent_takes_rtmp_and_srt_pushes_in_a_pod_like_container(image_runtime, tmp_path, publishers):
    """The real `onair agent ingest` in the image, restricted like the media pods (uid 10001,
    read-only root, no capabilities, config and secrets mounted read-only), takes pushes from
    encoders outside the container."""
    from onair.api.agent import IngestConfig

    etc = tmp_path / "etc-onair"
    (etc / "secret").mkdir(parents=True)
    stream_key, passphrase = f"sk_{secrets.token_urlsafe(12)}", secrets.token_hex(12)
    for name, value in (
        ("streamKey", stream_key),
        ("srtPassphrase", passphrase),
        ("whipToken", secrets.token_urlsafe(16)),
    ):
        (etc / "secret" / name).write_text(value + "\n")
    self_signed_cert(etc / "secret")
    ports = {name: free_port() for name in ("agent", "rtmp", "rtmps", "whip")}
    ports["srt"] = free_port(socket.SOCK_DGRAM)
    config = IngestConfig(
        livestream="image-test/ingest",
        listen_host="127.0.0.1",
        agent_port=ports["agent"],
        rtmp_port=ports["rtmp"],
        rtmps_port=ports["rtmps"],
        srt_port=ports["srt"],
        whip_port=ports["whip"],
        tls_cert_file="/etc/onair/secret/tls.crt",
        tls_key_file="/etc/onair/secret/tls.key",
        whip_ice_addresses=["127.0.0.1"],
    )
    (etc / "config.json").write_text(config.model_dump_json(by_alias=True, indent=2))
    for p in [etc, etc / "secret"]:
        p.chmod(0o755)
    for p in etc.rglob("*"):
        if p.is_file():
            p.chmod(0o644)

    agent = image_runtime.start_container(
        "onair",
        "agent",
        "ingest",
        "--config",
        "/etc/onair/config.json",
        log=tmp_path / "agent.log",
        mounts=[f"type=bind,src={etc},dst=/etc/onair,options=rbind:ro"],
        net_host=True,
        pod_like=True,
    )
    base = f"http://127.0.0.1:{ports['agent']}"

    def status() -> dict:
        with urllib.request.urlopen(base + "/status", timeout=2) as r:
            return json.load(r)

    def receiving(want: bool):
        st = status()
        return st if st["receiving"] is want and (not want or st.get("video", {}).get("width")) else None

    try:
        wait_for(
            lambda: urllib.request.urlopen(base + "/readyz", timeout=2).status == 200,
            60,
            what="the containerized ingest to be ready",
        )
        rtmp = publishers.rtmp(endpoints.rtmp_publish_url("127.0.0.1", stream_key, ports["rtmp"]))
        st = wait_for(lambda: receiving(True), 30, what="RTMP push received")
        assert st["video"]["width"] == 640
        rtmp.stop()
        wait_for(lambda: receiving(False), 30, what="RTMP push gone")
        publishers.srt(endpoints.srt_push_url("127.0.0.1", ports["srt"], passphrase, config.srt_latency_ms))
        st = wait_for(lambda: receiving(True), 30, what="SRT push received")
        assert st["video"]["width"] == 640
    except Exception:
        print(agent.output()[-5000:])
        raise
    # Kubernetes stops a pod with SIGTERM to its PID 1, which the agent is here: it must exit by
    # itself, not wait for the SIGKILL.
    assert agent.stop(timeout=20) == 0, agent.output()[-3000:]
