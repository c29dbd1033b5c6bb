"""nginx.conf for one ingest slot: RTMP (nginx-rtmp), RTMPS (stream module TLS), internal stats.

Pure rendering plus the command line; the agent supervises the process.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jinja2

from onair import endpoints
from onair.agent.redaction import MASK

MODULES_DIR = "/usr/lib/nginx/modules"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "ingest"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class NginxParams:
    livestream: str
    slot: str
    work_dir: str
    rtmp_listen: str
    stat_listen: str
    callback_base: str
    idle_timeout_ms: int
    rtmps_listen: Optional[str] = None
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None
    rtmp_upstream: Optional[str] = None
    rtmps_bind: Optional[str] = None
    whip_listen: Optional[str] = None
    whip_upstream: Optional[str] = None
    user: Optional[str] = None
    modules_dir: str = MODULES_DIR

    @property
    def rtmps(self) -> bool:
        return bool(self.rtmps_listen and self.tls_cert_file and self.tls_key_file and self.rtmp_upstream)

    @property
    def whip_tls(self) -> bool:
        return bool(self.whip_listen and self.tls_cert_file and self.tls_key_file)


def render_nginx_conf(params: NginxParams) -> str:
    for value in (params.work_dir, params.tls_cert_file or "", params.tls_key_file or ""):
        # A path with spaces, quotes or semicolons would silently break (or extend) the config.
        if any(c in value for c in " \t\n;{}\"'#$"):
            raise ValueError(f"path {value!r} cannot be used in nginx.conf (whitespace or special characters)")
    return _env.get_template("nginx.conf.j2").render(
        **{k: getattr(params, k) for k in params.__dataclass_fields__},
        rtmps=params.rtmps,
        whip_tls=params.whip_tls,
        app=endpoints.RTMP_APP,
        internal_stream=endpoints.INTERNAL_STREAM,
    )


def listen_address(host: str, port: int) -> str:
    if ":" in host:  # IPv6 literal
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def local_address(listen_host: str) -> str:
    """Where a process in the same pod reaches a listener bound to ``listen_host``."""
    if listen_host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def worker_user() -> Optional[str]:
    """nginx drops root workers to 'nobody', who cannot write our work dir: keep the agent's user."""
    if os.geteuid() != 0:
        return None  # non-root nginx ignores 'user' (and warns about it)
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def prepare_work_dir(work_dir: str) -> Path:
    root = Path(work_dir)
    for name in TEMP_DIRS:
        (root / "tmp" / name).mkdir(parents=True, exist_ok=True)
    return root


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_argv(conf_path: str, work_dir: str, binary: Optional[str] = None) -> list[str]:
    # -e stderr: without it nginx opens its compiled-in error log before reading our config.
    return [binary or nginx_binary(), "-p", work_dir, "-c", conf_path, "-e", "stderr"]


def nginx_test_argv(conf_path: str, work_dir: str, binary: Optional[str] = None) -> list[str]:
    return [*nginx_argv(conf_path, work_dir, binary), "-t", "-q"]


_LINE = re.compile(r"^\S+ \S+ \[(?P<level>\w+)\] \d+#\d+: (?:\*\d+ )?(?P<msg>.*)$")
_CLIENT = re.compile(r", client: ([^,]+)")
# nginx-rtmp logs the stream name a publisher asked for, which is the stream key.
_NAMES = re.compile(r"\b(name|args)='[^']*'")


async def test_conf(conf: Path, work_dir: Path) -> Optional[str]:
    """``nginx -t`` of ``conf``: None when nginx takes it, else what nginx says is wrong."""
    proc = await asyncio.create_subprocess_exec(
        *nginx_test_argv(str(conf), str(work_dir.resolve())),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    except asyncio.TimeoutError:
        proc.kill()
        return "nginx -t did not finish within 15s"
    if proc.returncode == 0:
        return None
    return " ".join(out.decode(errors="replace").split())


def _hide_names(text: str) -> str:
    return _NAMES.sub(rf"\1={MASK}", text)


_SERVER = re.compile(r", server: ([^,:\s]*)(?::(\d+))?")


def classify_log_line(
    line: str, listeners: Optional[dict[int | str, str]] = None, proxy_addr: Optional[str] = None
) -> tuple[int, str]:
    """(log level, message) for one nginx error-log line: the events users need at WARNING in
    words they understand, the per-connection chatter at DEBUG. ``listeners`` names ports or
    http server names (e.g. {1936: "RTMPS", "whip": "WHIP"}); ``proxy_addr`` is where the RTMPS
    proxy connects from."""
    m = _LINE.match(line)
    if not m:
        return logging.INFO, "nginx: " + _hide_names(line)
    level, msg = m.group("level"), _hide_names(m.group("msg"))
    client = _CLIENT.search(msg)
    who = client.group(1) if client else "unknown client"
    if proxy_addr and who == proxy_addr:
        who = "a client of the RTMPS port"
    server = _SERVER.search(msg)
    listener = None
    if server:
        key = int(server.group(2)) if server.group(2) else server.group(1)
        listener = (listeners or {}).get(key)
    detail = _CLIENT.split(msg)[0]
    if detail.startswith("handshake:"):
        return (
            logging.WARNING,
            f"RTMP: bad handshake from {who} (not an RTMP client?): {detail[len('handshake:') :].strip()}",
        )
    if "SSL handshaking" in detail or "SSL_do_handshake() failed" in detail:
        return logging.WARNING, f"{listener or 'TLS'}: TLS handshake failed from {who}: {detail}"
    if re.match(r"client (sent|intended)", detail) or "while reading client request" in detail:
        return logging.WARNING, f"{listener or 'HTTP'}: malformed HTTP request from {who}: {detail}"
    if "drop idle publisher" in detail:
        return (
            logging.WARNING,
            f"RTMP: dropped the publisher from {who}: it sent nothing for too long (frozen encoder?)",
        )
    if "already publishing" in detail:
        return logging.WARNING, f"RTMP: nginx refused a second publisher from {who}: the stream is already published"
    if level in ("emerg", "alert", "crit"):
        return logging.ERROR, f"nginx: {msg}"
    if level in ("error", "warn"):
        return logging.WARNING, f"nginx: {msg}"
    return logging.DEBUG, f"nginx: {msg}"
