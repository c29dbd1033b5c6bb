"""The readinessProbe of a local pod: its httpGet on the pod's local port."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Optional

from .. import loopback

PROBE_TIMEOUT_SECONDS = 1.0


def http_ready(path: str, local_port: Optional[int]) -> bool:
    """True when ``GET path`` on the local port answers 2xx or 3xx, as the kubelet judges httpGet."""
    if local_port is None:
        return False
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"http://{loopback.LOCAL_HOST}:{local_port}{path}", timeout=PROBE_TIMEOUT_SECONDS) as resp:
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False
