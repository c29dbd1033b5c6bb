"""Control-plane benchmark: the real operator (`onair run` as a subprocess) on the local pinned
kube-apiserver, with N Livestreams.

For each N it prints (and asserts nothing about time):

* create → all-children latency per Livestream (p50/p99/max) and the time until every child of
  every Livestream exists, from kopf-independent watches started before the first create;
* time until every Livestream reports status for its generation;
* operator RSS (now and peak) and CPU seconds, from /proc;
* the operator's own API requests (and writes) by verb while creating and during an idle minute
  afterwards, from the API server's audit log (which logs only the operator's user), beside the
  whole API server's `apiserver_request_total` for the same windows, and the idle window again
  with the operator stopped (the controller manager talks too);
* a spec edit of every Livestream that changes none of its children: time until every status
  shows it, operator CPU and requests;
* the time to create the same child objects directly with the Python client (server-side
  apply, at most 8 requests in flight like the operator), and the ratio operator / direct.

Each N gets a fresh cluster, with the CRDs, built-in CallTypes, ServiceAccount and RBAC from
manifests/; the operator runs with that ServiceAccount's token. No kubelet: media pods are never scheduled, so agents are
unreachable and the operator's status loop has nothing to report (the idle figures are its
floor). The cluster's Service range is widened to a /16: every Livestream has two ClusterIP
Services, and the default /24 would run out at ~127 Livestreams.

    python bench/controlplane.py --n 100 500 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

import yaml  # noqa: E402

from onair.localcluster import apply  # noqa: E402
from onair.localcluster.cluster import LocalCluster, free_port  # noqa: E402

GROUP, VERSION = "onair.dev", "v1alpha1"
NAMESPACE, DIRECT_NAMESPACE, WARMUP_NAMESPACE = "bench", "direct", "warmup"
CALLTYPE = "livestream"
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"}
# kind -> (list function name on the typed API, API attribute)
WATCHED = {
    "Secret": ("core", "list_namespaced_secret"),
    "ConfigMap": ("core", "list_namespaced_config_map"),
    "Service": ("core", "list_namespaced_service"),
    "PersistentVolumeClaim": ("core", "list_namespaced_persistent_volume_claim"),
    "Deployment": ("apps", "list_namespaced_deployment"),
    "NetworkPolicy": ("networking", "list_namespaced_network_policy"),
}
API_VERSIONS = {"Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1"}


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ----------------------------------------------------------------------------- expectations


def expected_children(name: str, namespace: str) -> set[tuple[str, str]]:
    """(kind, name) of every object the operator creates for a Livestream of CALLTYPE, from the
    operator's own renderer (so the bench never drifts from what it should wait for)."""
    from onair.api.calltype import CallType
    from onair.api.operator_config import OperatorConfig
    from onair.render.children import render_children
    from onair.render.credentials import generate_credentials

    calltype = CallType.model_validate(
        yaml.safe_load((ROOT / "charts/onair/files/calltypes" / f"{CALLTYPE}.yaml").read_text())
    )
    ls = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Livestream",
        "metadata": {"name": name, "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000000"},
        "spec": {"callType": CALLTYPE},
    }
    rendered = render_children(ls, calltype, OperatorConfig(), generate_credentials())
    return {(o["kind"], o["metadata"]["name"]) for o in rendered.objects + rendered.keep}


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ----------------------------------------------------------------------------- observation


def typed_apis(api) -> dict[str, Any]:
    from kubernetes import client

    return {"core": client.CoreV1Api(api), "apps": client.AppsV1Api(api), "networking": client.NetworkingV1Api(api)}


class ChildWatch:
    """First time each child object appears, from one watch per kind (started before creates)."""

    def __init__(self, api, namespace: str) -> None:

        self.apis = typed_apis(api)
        self.namespace = namespace
        self.first_seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self) -> None:
        ready = []
        for kind, (api_name, fn_name) in WATCHED.items():
            ev = threading.Event()
            ready.append(ev)
            t = threading.Thread(target=self._run, args=(kind, getattr(self.apis[api_name], fn_name), ev), daemon=True)
            t.start()
            self.threads.append(t)
        for ev in ready:
            ev.wait(30)

    def _run(self, kind: str, list_fn, ready: threading.Event) -> None:
        from kubernetes import watch

        rv = list_fn(self.namespace).metadata.resource_version
        ready.set()
        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    list_fn, self.namespace, resource_version=rv, timeout_seconds=5, allow_watch_bookmarks=True
                ):
                    obj = event["object"]
                    if isinstance(obj, dict):  # BOOKMARK: only a resourceVersion to resume from
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        continue
                    rv = obj.metadata.resource_version
                    if event["type"] == "ADDED":
                        key = (kind, obj.metadata.name)
                        with self.lock:
                            self.first_seen.setdefault(key, time.monotonic())
                    if self.stop.is_set():
                        break
            except Exception as e:  # noqa: BLE001 - e.g. 410 Gone: relist from now, keep going
                self.errors.append(f"{kind}: {e!r}"[:200])
                rv = list_fn(self.namespace).metadata.resource_version
            finally:
                w.stop()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def scrape_requests(api) -> Counter:
    """apiserver_request_total summed by (verb, resource) from the API server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    _, url, headers, _, _ = api.param_serialize(
        "GET", "/metrics", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"]
    )
    resp = api.call_api("GET", url, header_params=headers, _request_timeout=30)
    text = resp.read().decode()
    out: Counter = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            out[(labels.get("verb", ""), resource)] += int(sample.value)
    return out


def by_verb(diff: Counter) -> dict[str, int]:
    verbs: Counter = Counter()
    for (verb, _), n in diff.items():
        verbs[verb] += n
    return dict(sorted(verbs.items(), key=lambda kv: -kv[1]))


def writes(diff: Counter) -> int:
    return sum(n for (verb, _), n in diff.items() if verb in WRITE_VERBS)


def top_resources(diff: Counter, k: int = 8) -> str:
    items = [(f"{verb} {res}", n) for (verb, res), n in diff.items() if n > 0]
    items.sort(key=lambda kv: -kv[1])
    return ", ".join(f"{name}: {n}" for name, n in items[:k]) or "none"


OPERATOR_USER = "system:serviceaccount:onair-system:onair-operator"
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""


class AuditLog:
    """The operator's own requests, from the API server's audit log (only its user is logged):
    apiserver_request_total has no per-client label, and the controller manager is busy too."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, offset: int) -> Counter:
        """(verb, resource) counts of requests after ``offset``: one per finished request, and a
        watch when it starts (it may outlive the window)."""
        out: Counter = Counter()
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                watch = ev.get("verb") == "watch"
                if ev.get("stage") != ("ResponseStarted" if watch else "ResponseComplete"):
                    continue
                ref = ev.get("objectRef") or {}
                resource = ref.get("resource", ev.get("requestURI", "").split("?")[0])
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                out[(ev["verb"].upper(), resource)] += 1
        return out


def proc_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines() if ":" in line}
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "peak_mib": int(fields["VmHWM"].split()[0]) / 1024,
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
    }


# ----------------------------------------------------------------------------- operator


class Operator:
    def __init__(self, kubeconfig: Path, workdir: Path, poll_interval: float) -> None:
        self.port = free_port()
        self.log_path = workdir / "operator.log"
        env = {**os.environ, "ONAIR_STATUS_POLL_INTERVAL_SECONDS": str(poll_interval)}
        env.pop("KUBECONFIG", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "onair.cli",
                "run",
                "--all-namespaces",
                "--kubeconfig",
                str(kubeconfig),
                f"--liveness=http://127.0.0.1:{self.port}/healthz",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_live(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"operator liveness not up after {timeout:.0f}s; see {self.log_path}")

    def stats(self) -> dict[str, float]:
        return proc_stats(self.proc.pid)

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# ----------------------------------------------------------------------------- helpers


def create_namespace(api, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def livestream(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Livestream",
        "metadata": {"name": name},
        "spec": {"callType": CALLTYPE},
    }


def wait(predicate, timeout: float, what: str, interval: float = 0.5) -> float:
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def reconciled_count(custom, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "livestreams")["items"]
    return sum(
        1
        for o in items
        if (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
        and (o.get("status") or {}).get("conditions")
    )


_DROP_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "ownerReferences",
    "generation",
    "selfLink",
    "finalizers",
)


def portable(obj: dict, namespace: str) -> dict:
    """The object as the operator applied it, movable to another namespace (no server-set fields)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in obj["metadata"].items() if k not in _DROP_META}
    meta["namespace"] = namespace
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith(("deployment.kubernetes.io/", "pv.kubernetes.io/"))
    }
    meta["annotations"] = annotations
    out["metadata"] = meta
    if obj["kind"] == "Service":
        spec = dict(obj["spec"])
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
        out["spec"] = spec
    if obj["kind"] == "PersistentVolumeClaim":
        out["spec"] = {k: v for k, v in obj["spec"].items() if k != "volumeName"}
    return out


def fetch_children(api, namespace: str, wanted: set[tuple[str, str]]) -> list[dict]:

    apis = typed_apis(api)
    out = []
    for kind, (api_name, fn_name) in WATCHED.items():
        for item in getattr(apis[api_name], fn_name)(namespace).items:
            obj = api.sanitize_for_serialization(item)
            if (kind, obj["metadata"]["name"]) in wanted:
                obj["kind"], obj["apiVersion"] = kind, API_VERSIONS.get(kind, "v1")
                out.append(portable(obj, DIRECT_NAMESPACE))
    return out


def create_directly(kubeconfig: Path, objects: list[dict]) -> float:
    """The same children, written the operator's way (server-side apply; PVCs created) with its
    client (onair.kube, at most 8 requests in flight), but without the operator deciding anything."""
    from onair import kube as kubeclient

    order = {"Secret": 0, "ConfigMap": 0, "PersistentVolumeClaim": 1, "Service": 2, "NetworkPolicy": 2, "Deployment": 3}

    async def run() -> float:
        kube = kubeclient.Kube(kubeclient.load_config(str(kubeconfig)))
        try:
            t0 = time.monotonic()
            for rank in sorted(set(order.values())):
                batch = [o for o in objects if order[o["kind"]] == rank]
                await asyncio.gather(
                    *(
                        kube.create_if_absent(o) if o["kind"] == "PersistentVolumeClaim" else kube.apply(o)
                        for o in batch
                    )
                )
            return time.monotonic() - t0
        finally:
            await kube.close()

    return asyncio.run(run())


# ----------------------------------------------------------------------------- one run


def run_one(n: int, idle_seconds: float, poll_interval: float, timeout: float, baseline: bool) -> dict[str, Any]:

    log(f"N={n}: starting a fresh cluster")
    result: dict[str, Any] = {"n": n}
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # the audit log is written synchronously
    with tempfile.TemporaryDirectory(prefix="onair-bench-", dir=shm) as tmp:
        workdir = Path(tmp)
        (workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        audit = AuditLog(workdir / "audit.log")
        with LocalCluster(
            apiserver_args=[
                "--service-cluster-ip-range=10.0.0.0/16",
                f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={audit.path}",
                "--audit-log-maxsize=0",
                "--audit-log-mode=blocking",
            ]
        ) as cluster:
            _run_on(cluster, workdir, audit, result, n, idle_seconds, poll_interval, timeout, baseline)
    return result


def _run_on(
    cluster,
    workdir: Path,
    audit: AuditLog,
    result: dict[str, Any],
    n: int,
    idle_seconds: float,
    poll_interval: float,
    timeout: float,
    baseline: bool,
) -> None:
    from kubernetes import client
    from kubernetes.config import new_client_from_config

    # The bench watches and counts with the official client, independent of the operator's.
    api = new_client_from_config(str(cluster.kubeconfig_path))
    # The install from manifests/ (CRDs, built-in CallTypes, namespace, ServiceAccount, RBAC),
    # without its Deployment: the operator runs here as a process, with that ServiceAccount's token.
    docs = apply.load_documents(
        [ROOT / "manifests" / name for name in ("crds.yaml", "onair.yaml", "builtin-calltypes.yaml")]
    )
    apply.apply_documents(apply.client(cluster.kubeconfig_path), [d for d in docs if d["kind"] != "Deployment"])
    sa_kubeconfig = cluster.serviceaccount_kubeconfig(
        "onair-system", "onair-operator", create=False, expiration_seconds=6 * 3600
    )
    for ns in (NAMESPACE, DIRECT_NAMESPACE, WARMUP_NAMESPACE):
        create_namespace(api, ns)
    custom = client.CustomObjectsApi(api)

    op = Operator(sa_kubeconfig, workdir, poll_interval)
    try:
        op.wait_live()
        # Warm-up stream in its own namespace: the timed run starts with watches running.
        custom.create_namespaced_custom_object(GROUP, VERSION, WARMUP_NAMESPACE, "livestreams", livestream("warmup"))
        wait(lambda: reconciled_count(custom, WARMUP_NAMESPACE) == 1, 120, "the warm-up Livestream")
        result["rss_before_mib"] = op.stats()["rss_mib"]

        watcher = ChildWatch(api, NAMESPACE)
        watcher.start()
        names = [f"ls-{i:05d}" for i in range(n)]
        wanted = {name: expected_children(name, NAMESPACE) for name in names}
        all_wanted = set().union(*wanted.values())
        req0, aud0, cpu0 = scrape_requests(api), audit.offset(), op.stats()["cpu_s"]

        created_at: dict[str, float] = {}
        t_start = time.monotonic()
        for name in names:
            created_at[name] = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "livestreams", livestream(name))
        result["create_calls_s"] = time.monotonic() - t_start

        def all_children() -> bool:
            with watcher.lock:
                return all_wanted.issubset(watcher.first_seen)

        wait(all_children, timeout, f"all {len(all_wanted)} children of {n} Livestreams", interval=0.2)
        with watcher.lock:
            seen = dict(watcher.first_seen)
        result["all_children_s"] = max(seen[k] for k in all_wanted) - t_start
        latencies = [max(seen[k] for k in wanted[name]) - created_at[name] for name in names]
        result.update(
            children=len(all_wanted),
            p50_s=percentile(latencies, 50),
            p99_s=percentile(latencies, 99),
            max_s=max(latencies),
        )
        wait(lambda: reconciled_count(custom, NAMESPACE) == n, timeout, f"status of {n} Livestreams", interval=1)
        result["all_status_s"] = time.monotonic() - t_start
        watcher.close()
        if watcher.errors:
            log(f"watch restarts: {len(watcher.errors)} (first: {watcher.errors[0]})")

        stats = op.stats()
        result.update(rss_mib=stats["rss_mib"], peak_mib=stats["peak_mib"], create_cpu_s=stats["cpu_s"] - cpu0)
        op_create, all_create = audit.since(aud0), scrape_requests(api) - req0
        result.update(
            op_create=sum(op_create.values()),
            op_create_writes=writes(op_create),
            op_create_by_verb=by_verb(op_create),
            op_create_top=top_resources(op_create),
            all_create=sum(all_create.values()),
            all_create_writes=writes(all_create),
        )

        # A spec edit of every Livestream that changes none of its children (the display name):
        # what a burst of phase changes costs the API server.
        time.sleep(5)
        aud1, cpu1, t_edit = audit.offset(), op.stats()["cpu_s"], time.monotonic()
        for name in names:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "livestreams", name, {"spec": {"displayName": f"{name} edited"}}
            )
        wait(lambda: reconciled_count(custom, NAMESPACE) == n, timeout, f"status of {n} edited Livestreams", interval=1)
        op_edit = audit.since(aud1)
        result.update(
            edit_s=time.monotonic() - t_edit,
            edit_cpu_s=op.stats()["cpu_s"] - cpu1,
            op_edit=sum(op_edit.values()),
            op_edit_writes=writes(op_edit),
            op_edit_top=top_resources(op_edit),
        )

        # Idle: everything converged, nobody changes anything.
        time.sleep(5)
        req2, aud2, cpu2 = scrape_requests(api), audit.offset(), op.stats()["cpu_s"]
        time.sleep(idle_seconds)
        op_idle, all_idle, stats = audit.since(aud2), scrape_requests(api) - req2, op.stats()
        result.update(
            op_idle=sum(op_idle.values()),
            op_idle_writes=writes(op_idle),
            op_idle_by_verb=by_verb(op_idle),
            op_idle_top=top_resources(op_idle),
            all_idle=sum(all_idle.values()),
            all_idle_writes=writes(all_idle),
            all_idle_by_verb=by_verb(all_idle),
            idle_cpu_s=stats["cpu_s"] - cpu2,
            rss_idle_mib=stats["rss_mib"],
            peak_mib=stats["peak_mib"],
        )
    finally:
        op.stop()

    if baseline:
        # The same idle window without the operator: the rest of the control plane's background.
        time.sleep(5)
        req4 = scrape_requests(api)
        time.sleep(idle_seconds)
        base = scrape_requests(api) - req4
        result.update(base_idle=sum(base.values()), base_idle_writes=writes(base), base_idle_by_verb=by_verb(base))

    objects = fetch_children(api, NAMESPACE, all_wanted)
    assert len(objects) == len(all_wanted), f"fetched {len(objects)} of {len(all_wanted)} children"
    result["direct_s"] = create_directly(cluster.kubeconfig_path, objects)
    result["ratio"] = result["all_children_s"] / result["direct_s"]
    api.close()


def report(r: dict[str, Any], idle_seconds: float) -> None:
    n = r["n"]
    print(f"\n=== N = {n} Livestreams ({r['children']} children, CallType {CALLTYPE}) ===")
    print(f"create calls (client, sequential)    {r['create_calls_s']:8.2f} s")
    print(f"all children exist                   {r['all_children_s']:8.2f} s after the first create")
    print(
        f"create -> children per Livestream    p50 {r['p50_s']:.2f} s   p99 {r['p99_s']:.2f} s   max {r['max_s']:.2f} s"
    )
    print(f"every Livestream has status          {r['all_status_s']:8.2f} s")
    print(f"same children created directly      {r['direct_s']:8.2f} s   operator/direct = {r['ratio']:.2f}x")
    print(
        f"operator RSS                         {r['rss_before_mib']:.0f} MiB with 1 stream, {r['rss_mib']:.0f} MiB "
        f"after {n}, {r['rss_idle_mib']:.0f} MiB idle, peak {r['peak_mib']:.0f} MiB"
    )
    print(
        f"operator CPU                         {r['create_cpu_s']:.1f} s while creating, "
        f"{r['idle_cpu_s']:.2f} s in the idle {idle_seconds:.0f} s"
    )
    print(
        f"operator requests while creating     {r['op_create']} ({r['op_create_writes']} writes, "
        f"{r['op_create'] / n:.1f}/Livestream): {r['op_create_by_verb']}"
    )
    print(f"  top: {r['op_create_top']}")
    print(f"  (whole API server meanwhile: {r['all_create']} requests, {r['all_create_writes']} writes)")
    print(
        f"spec edit of every Livestream        {r['edit_s']:8.2f} s until every status has it, operator CPU "
        f"{r['edit_cpu_s']:.1f} s, {r['op_edit']} operator requests ({r['op_edit_writes']} writes)"
    )
    print(f"  top: {r['op_edit_top']}")
    print(
        f"operator requests, idle {idle_seconds:.0f} s       {r['op_idle']} ({r['op_idle_writes']} writes): "
        f"{r['op_idle_by_verb']}  top: {r['op_idle_top']}"
    )
    print(
        f"whole API server, idle {idle_seconds:.0f} s        {r['all_idle']} ({r['all_idle_writes']} writes): "
        f"{r['all_idle_by_verb']}"
    )
    if "base_idle" in r:
        print(
            f"whole API server, idle, no operator  {r['base_idle']} ({r['base_idle_writes']} writes): "
            f"{r['base_idle_by_verb']}"
        )


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n", type=int, nargs="+", default=[100, 500, 1000], help="Livestream counts (default: %(default)s)"
    )
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--poll-interval", type=float, default=5.0, help="ONAIR_STATUS_POLL_INTERVAL_SECONDS (default 5)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per wait, seconds")
    ap.add_argument("--no-baseline", action="store_true", help="skip the idle minute without the operator")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args(argv)
    results = []
    for n in args.n:
        r = run_one(n, args.idle_seconds, args.poll_interval, args.timeout, not args.no_baseline)
        report(r, args.idle_seconds)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
