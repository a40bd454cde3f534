"""Published ports of a Sandbox (a mixin, to keep _sandbox.py small)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ._client import SANDBOX_SERVICE, Client
from ._network import ExposedPort, exposed_port_from_wire, exposed_ports_from_wire, ports_to_wire
from ._types import OperationRef

__all__ = ["PortsMixin"]


class PortsMixin:
    """exposed_ports, service_urls, address, expose_port and unexpose_port of Sandbox."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        _id: Optional[str]
        _info: Dict[str, Any]
        _lock: threading.RLock

        @property
        def _client(self) -> Client: ...

        def _ensure_running(self, timeout: Optional[float] = None) -> None: ...

        def _start(self) -> None: ...

    @property
    def ports(self) -> Tuple[ExposedPort, ...]:
        """The published ports with their URLs, as the last call saw them."""
        return exposed_ports_from_wire(self._info.get("ports"))

    @property
    def exposed_ports(self) -> Tuple[int, ...]:
        """The numbers of the published ports."""
        return tuple(p.port for p in self.ports)

    @property
    def service_urls(self) -> Dict[int, str]:
        """Port -> URL of each published port (host form; see ``ports`` for the path form).
        A private port's URL needs the API key as ``Authorization: Bearer <key>``."""
        return {p.port: p.url for p in self.ports}

    @property
    def address(self) -> Optional[str]:
        """The sandbox's IPv4 address on the sandbox network once running, else None."""
        return self._info.get("address") or None

    def expose_port(self, port: int, public: bool = False) -> OperationRef[ExposedPort]:
        """Publish a port through the server's proxy (waiting until the sandbox runs), or
        change its visibility; the operation returns its ExposedPort. A public port needs
        no API key; its URL holds an unguessable token."""
        spec = ports_to_wire([{"port": port, "public": bool(public)}], "port")[0]

        def run() -> ExposedPort:
            self._ensure_running()
            resp = self._client.call(SANDBOX_SERVICE, "ExposePort", {"sandboxId": self._id, "port": spec}, sandbox_id=self._id)
            w = resp.get("port") or {}
            with self._lock:
                kept: List[Any] = [p for p in self._info.get("ports") or () if int(p.get("port") or 0) != spec["port"]]
                self._info["ports"] = sorted(kept + [w], key=lambda p: int(p.get("port") or 0))
            return exposed_port_from_wire(w)

        return OperationRef.spawn(run, name="sbx-expose-port")

    def unexpose_port(self, port: int) -> OperationRef[None]:
        """Stop publishing a port; open proxied connections to it are closed. A port
        that is not published is fine."""
        n = ports_to_wire([port], "port")[0]["port"]

        def run() -> None:
            self._start()
            self._client.call(SANDBOX_SERVICE, "UnexposePort", {"sandboxId": self._id, "port": n}, sandbox_id=self._id)
            with self._lock:
                self._info["ports"] = [p for p in self._info.get("ports") or () if int(p.get("port") or 0) != n]

        return OperationRef.spawn(run, name="sbx-unexpose-port")
