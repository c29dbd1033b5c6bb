import logging

import pytest

from onair.agent.ingest import nginx, ports


def params(**kw):
    base = dict(
        livestream="ns/show",
        slot="main",
        work_dir="/work/ingest",
        rtmp_listen="0.0.0.0:1935",
        stat_listen="127.0.0.1:40000",
        callback_base="http://127.0.0.1:8080/internal/rtmp",
        idle_timeout_ms=3000,
        user=None,
    )
    base.update(kw)
    return nginx.NginxParams(**base)


def test_rtmp_only_conf():
    conf = nginx.render_nginx_conf(params())
    assert "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;" in conf
    assert "ngx_stream_module" not in conf and "stream {" not in conf
    for line in (
        "listen 0.0.0.0:1935;",
        "publish_notify on;",
        "drop_idle_publisher 3000ms;",
        "on_publish http://127.0.0.1:8080/internal/rtmp/publish;",
        "on_publish_done http://127.0.0.1:8080/internal/rtmp/publish_done;",
        "on_play http://127.0.0.1:8080/internal/rtmp/play;",
        "pid /work/ingest/nginx.pid;",
        "listen 127.0.0.1:40000;",
        "rtmp_stat all;",
        "rtmp_control all;",
        "worker_processes 1;",
        "daemon off;",
        "application live {",
    ):
        assert line in conf, line
    # Nothing outside the work dir is written (module directory is read only).
    for line in conf.splitlines():
        if "/" in line and not line.lstrip().startswith(("#", "load_module", "on_publish", "on_play", "location")):
            assert "/work/ingest" in line, line
    assert "user " not in conf
    # http and nginx-rtmp both default to an access log under /var/log.
    assert conf.count("access_log off;") == 2


def test_rtmps_conf_proxies_tls_to_rtmp_from_the_marker_address():
    conf = nginx.render_nginx_conf(
        params(
            rtmps_listen="0.0.0.0:1936",
            tls_cert_file="/s/tls.crt",
            tls_key_file="/s/tls.key",
            rtmp_upstream="127.0.0.1:1935",
            rtmps_bind="127.0.0.2",
            user="root root",
        )
    )
    assert "load_module /usr/lib/nginx/modules/ngx_stream_module.so;" in conf
    for line in (
        "listen 0.0.0.0:1936 ssl;",
        "ssl_certificate /s/tls.crt;",
        "ssl_certificate_key /s/tls.key;",
        "proxy_pass 127.0.0.1:1935;",
        "proxy_bind 127.0.0.2;",
        "user root root;",
    ):
        assert line in conf, line


def test_whip_is_proxied_with_tls_when_a_certificate_is_there():
    conf = nginx.render_nginx_conf(
        params(
            whip_listen="0.0.0.0:8443",
            whip_upstream="127.0.0.1:41000",
            tls_cert_file="/s/tls.crt",
            tls_key_file="/s/tls.key",
        )
    )
    for line in (
        "listen 0.0.0.0:8443 ssl;",
        "proxy_pass http://127.0.0.1:41000;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "ssl_certificate /s/tls.crt;",
    ):
        assert line in conf, line
    assert "stream {" not in conf  # TLS certificate alone does not make RTMPS
    plain = nginx.render_nginx_conf(params(whip_listen="0.0.0.0:8443", whip_upstream="127.0.0.1:41000"))
    assert "listen 0.0.0.0:8443;" in plain and "ssl_certificate" not in plain


def test_rtmps_needs_every_piece():
    assert not params(rtmps_listen="0.0.0.0:1936", tls_cert_file="/c").rtmps


@pytest.mark.parametrize("bad", ["/work dir", "/w;x", "/w{", "/w'q"])
def test_paths_that_would_break_the_config_are_refused(bad):
    with pytest.raises(ValueError):
        nginx.render_nginx_conf(params(work_dir=bad))


def test_addresses():
    assert nginx.listen_address("::", 1935) == "[::]:1935"
    assert nginx.local_address("0.0.0.0") == "127.0.0.1"
    assert nginx.local_address("10.0.0.5") == "10.0.0.5"
    assert nginx.nginx_argv("/w/nginx.conf", "/w", binary="nginx") == [
        "nginx",
        "-p",
        "/w",
        "-c",
        "/w/nginx.conf",
        "-e",
        "stderr",
    ]


def test_log_lines_become_words():
    level, msg = nginx.classify_log_line(
        "2026/11/21 10:58:29 [info] 24081#24081: *88 handshake: unexpected RTMP version: 29, client: 10.1.2.3, "
        "server: 127.0.0.1:50837"
    )
    assert level == logging.WARNING and "bad handshake from 10.1.2.3" in msg and "version: 29" in msg
    level, msg = nginx.classify_log_line(
        "2026/11/21 10:58:30 [info] 24081#24081: *91 SSL_do_handshake() failed (SSL: error:0A00009C:SSL "
        "routines::http request) while SSL handshaking, client: 10.1.2.3, server: 127.0.0.1:55927",
        {55927: "RTMPS"},
    )
    assert level == logging.WARNING and msg.startswith("RTMPS: TLS handshake failed from 10.1.2.3")
    level, msg = nginx.classify_log_line(
        "2026/11/21 10:58:30 [info] 1#1: *9 client sent invalid method while reading client request line, "
        'client: 10.1.2.3, server: whip, request: "\x02"',
        {8443: "WHIP", "whip": "WHIP"},
    )
    assert level == logging.WARNING and msg.startswith("WHIP: malformed HTTP request from 10.1.2.3")
    _, msg = nginx.classify_log_line(
        "2026/11/21 10:58:29 [info] 1#1: *8 handshake: error parsing challenge, client: 127.0.0.2, server: x:1",
        proxy_addr="127.0.0.2",
    )
    assert "from a client of the RTMPS port" in msg
    level, msg = nginx.classify_log_line(
        "2026/11/21 10:56:39 [error] 24081#24081: *49 live: drop idle publisher, client: 127.0.0.1, server: x"
    )
    assert level == logging.WARNING and "frozen" in msg
    assert nginx.classify_log_line("2026/11/21 10:56:39 [emerg] 1#1: bind() failed")[0] == logging.ERROR
    assert nginx.classify_log_line("2026/11/21 10:56:08 [info] 1#1: *3 createStream, client: x")[0] == logging.DEBUG


def test_port_checks_name_the_field():
    listeners = [
        ports.Listener("rtmpPort", "RTMP", "127.0.0.1", 1935),
        ports.Listener("whipPort", "WHIP", "127.0.0.1", 1935),
    ]
    assert (
        ports.duplicate_ports(listeners) == "rtmpPort and whipPort are both 1935/tcp; every listener needs its own port"
    )
    udp_and_tcp = [
        ports.Listener("srtPort", "SRT", "127.0.0.1", 9998, udp=True),
        ports.Listener("rtmpPort", "RTMP", "127.0.0.1", 9998),
    ]
    assert ports.duplicate_ports(udp_and_tcp) is None


def test_bind_problem_names_port_and_field():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        problem = ports.bind_problem(ports.Listener("rtmpPort", "RTMP", "127.0.0.1", port))
    assert f"127.0.0.1:{port}/tcp (rtmpPort, RTMP)" in problem and "change rtmpPort" in problem


def test_stream_names_are_never_logged():
    level, msg = nginx.classify_log_line(
        "2026/11/21 11:02:27 [info] 1#1: *5 publish: name='sk_secret' args='k=v' type=live silent=0, client: 1.2.3.4"
    )
    assert "sk_secret" not in msg and "k=v" not in msg and "name=***" in msg
    assert "sk_secret" not in nginx.classify_log_line("garbage name='sk_secret'")[1]
