"""Local ports: what stands in for pod IPs and Services when every pod is a process on 127.0.0.1.

Every container port of a wanted pod gets a free local port, stable for the runner's lifetime per
(namespace, Deployment, container port), so a restarted origin keeps the address the transcoder
was configured with, as a Service would. A Service port maps to the local port of the pod its
selector picks; role configs are rewritten with that table.

A config may name a Service that does not exist (the backup ingest of a Livestream that has none:
it is there for when it is turned on, without restarting the reader). Like a ClusterIP that
refuses connections, it gets a local port nobody listens on yet, and the pod that comes to back
that Service later is given exactly that port.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Iterable, Mapping

from onair.freeport import free_port

from .. import loopback
from ..loopback import PodPlan
from .pods import Pending

PortKey = tuple[str, str, int]  # (namespace, Deployment or Service name, port number)


def _free_port(protocol: str, taken: set[int]) -> int:
    kind = socket.SOCK_DGRAM if protocol.upper() == "UDP" else socket.SOCK_STREAM
    return free_port(kind, loopback.LOCAL_HOST, taken)


class PortTable:
    """Container ports and Service ports -> local ports; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ports: dict[PortKey, int] = {}  # (namespace, Deployment, container port) -> local
        # Service ports of every wanted pod (what configs are rewritten with: DNS resolves before
        # a pod is ready) and of ready pods only (what users are shown, as Service endpoints).
        self._services: dict[PortKey, int] = {}
        self._ready_services: dict[PortKey, int] = {}
        self._service_names: set[tuple[str, str]] = set()
        self._known_services: dict[PortKey, int] = {}  # every Service port ever resolved
        self._reserved: dict[PortKey, int] = {}  # absent Service port -> its local port
        self._reserved_for: dict[PortKey, set[tuple[str, str]]] = {}  # -> pods using it

    def _taken(self) -> set[int]:
        return set(self._ports.values()) | set(self._reserved.values())

    def allocate(self, plan: PodPlan, numbers: Iterable[tuple[int, str]]) -> None:
        """Local ports for the pod's ``(container port number, protocol)`` pairs that have none yet."""
        with self._lock:
            taken = self._taken()
            for number, protocol in numbers:
                key = (plan.namespace, plan.name, number)
                if key not in self._ports:
                    self._ports[key] = _free_port(protocol, taken)
                    taken.add(self._ports[key])

    def local(self, plan: PodPlan, number: int) -> int | None:
        with self._lock:
            return self._ports.get((plan.namespace, plan.name, number))

    def by_number(self, plan: PodPlan) -> dict[int, int]:
        """Container port number -> local port, for every allocated port of the pod."""
        with self._lock:
            return {
                n: local for (ns, name, n), local in self._ports.items() if ns == plan.namespace and name == plan.name
            }

    def by_name(self, plan: PodPlan) -> dict[str, int]:
        """Container port name (its number if unnamed) -> local port, for every declared port."""
        with self._lock:
            return {
                p.name or str(p.number): self._ports[(plan.namespace, plan.name, p.number)]
                for p in plan.ports
                if (plan.namespace, plan.name, p.number) in self._ports
            }

    def ready_services(self) -> dict[PortKey, int]:
        with self._lock:
            return dict(self._ready_services)

    def update_services(
        self, services: list[dict[str, Any]], wanted: Iterable[PodPlan], ready: Iterable[PodPlan]
    ) -> None:
        """The Service tables for this round: of every wanted pod, and of the ready ones."""
        with self._lock:
            self._service_names = {
                (meta.get("namespace") or "", meta.get("name") or "")
                for meta in (s.get("metadata") or {} for s in services)
            }
            self._services = loopback.service_table(services, wanted, self._ports)
            self._known_services.update(self._services)
            self._ready_services = loopback.service_table(services, ready, self._ports)

    def claim_reservations(self, services: list[dict[str, Any]], plans: Iterable[PodPlan]) -> set[tuple[str, str]]:
        """A Service that was reserved a port now exists: the pod behind it gets that port. Should
        that pod already have another one (it was planned before its Service was listed), returns
        the pods that were given the reserved port: they must start again with the real one."""
        stale: set[tuple[str, str]] = set()
        with self._lock:
            for service_port, target in loopback.service_targets(services, plans).items():
                reserved = self._reserved.pop(service_port, None)
                if reserved is None:
                    continue
                users = self._reserved_for.pop(service_port, set())
                if self._ports.setdefault(target, reserved) != reserved:
                    stale |= users
        return stale

    def _reserve(self, plan: PodPlan, addresses: Iterable[str]) -> dict[PortKey, int]:
        """Local ports for the unresolved ``addresses`` that name Services which do not exist (those
        that exist but have no pod yet are waited for)."""
        out: dict[PortKey, int] = {}
        with self._lock:
            for address in addresses:
                service_port = loopback.service_port_of(address)
                if service_port is None or service_port[:2] in self._service_names:
                    continue
                local = self._known_services.get(service_port) or self._reserved.get(service_port)
                if local is None:
                    local = self._reserved[service_port] = _free_port("TCP", self._taken())
                if service_port in self._reserved:
                    self._reserved_for.setdefault(service_port, set()).add((plan.namespace, plan.name))
                out[service_port] = local
        return out

    def rewrite(self, plan: PodPlan, text: str, mounts: Mapping[str, str]) -> bytes:
        """A role config (JSON with a ``role``) rewritten for loopback; any other file as it is.
        Raises ``Pending`` while a Service it names exists but has no local pod."""
        try:
            config = json.loads(text)
        except ValueError:
            return text.encode()
        if not isinstance(config, dict) or "role" not in config:
            return text.encode()
        self.allocate(plan, [(n, "TCP") for n in sorted(loopback.config_ports(config))])
        ports = self.by_number(plan)
        with self._lock:
            services = dict(self._services)
        result = loopback.rewrite_config(
            config, namespace=plan.namespace, ports=ports, mounts=mounts, services=services
        )
        if not result.ok:
            absent = self._reserve(plan, result.unresolved)
            if absent:
                result = loopback.rewrite_config(
                    config, namespace=plan.namespace, ports=ports, mounts=mounts, services={**services, **absent}
                )
        if not result.ok:
            raise Pending(f"waiting for Service(s) {', '.join(sorted(set(result.unresolved)))} to have a local pod")
        return (json.dumps(result.config, indent=2, sort_keys=True) + "\n").encode()
