"""Resource usage of a Sandbox (a mixin, to keep _sandbox.py small)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._client import SANDBOX_SERVICE, Client
from ._types import OperationRef
from ._wire import parse_timestamp

__all__ = ["SandboxStats", "StatsMixin", "stats_from_wire"]


@dataclasses.dataclass(frozen=True)
class SandboxStats:
    """One reading of what a sandbox uses and its limits, which the server reads
    from the sandbox's cgroups and disk quota. Under gVisor (runtime runsc) CPU,
    memory and pids include gVisor's own Sentry and gofer.

    Attributes:
        cpu_seconds: CPU time (user + system) its processes used since it started.
        memory_bytes: Memory charged to it now, page cache included (files in
            /tmp or /dev/shm count until deleted).
        memory_peak_bytes: Highest memory_bytes since it started; 0 if the
            server's kernel does not say.
        memory_limit_bytes: Its memory limit; above it the OOM killer ends one
            of its processes.
        oom_kills: Processes the OOM killer ended in it since it started.
        pids: Its processes and threads now.
        pids_limit: Their limit.
        disk_bytes: What its writable root filesystem holds, as its disk limit
            counts it; lags writes by up to ~30 s (a ``sync`` in the sandbox
            updates it). 0 when the server runs without disk limits.
        disk_limit_bytes: Its disk limit; 0 when it has none.
        read_at: When the server read these values.
    """

    cpu_seconds: float = 0.0
    memory_bytes: int = 0
    memory_peak_bytes: int = 0
    memory_limit_bytes: int = 0
    oom_kills: int = 0
    pids: int = 0
    pids_limit: int = 0
    disk_bytes: int = 0
    disk_limit_bytes: int = 0
    read_at: Optional[datetime] = None


def stats_from_wire(w: Optional[Mapping[str, Any]]) -> SandboxStats:
    """Decode the JSON form of sbx.v1.SandboxStats (int64s arrive as strings;
    zero fields are left out)."""
    w = w or {}

    def n(key: str) -> int:
        return int(w.get(key) or 0)

    return SandboxStats(
        cpu_seconds=float(w.get("cpuSeconds") or 0.0),
        memory_bytes=n("memoryBytes"),
        memory_peak_bytes=n("memoryPeakBytes"),
        memory_limit_bytes=n("memoryLimitBytes"),
        oom_kills=n("oomKills"),
        pids=n("pids"),
        pids_limit=n("pidsLimit"),
        disk_bytes=n("diskBytes"),
        disk_limit_bytes=n("diskLimitBytes"),
        read_at=parse_timestamp(w.get("readAt")),
    )


class StatsMixin:
    """stats() of Sandbox."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        _id: Optional[str]

        @property
        def _client(self) -> Client: ...

        def _start(self) -> None: ...

    def stats(self) -> OperationRef[SandboxStats]:
        """Read what the sandbox uses now (CPU, memory, OOM kills, processes, disk)
        and its limits: to size its resources, or to tell an OOM kill from a crash.
        Cheap for the server (nothing runs in the sandbox), so polling it every
        second is fine. A sandbox that is still starting is waited for.

        Raises (from result()):
            SandboxNotRunningError: the sandbox has ended.
            SandboxNotFoundError: no such sandbox.
        """
        return OperationRef.spawn(self._stats_sync, name="sbx-stats")

    def _stats_sync(self) -> SandboxStats:
        self._start()
        resp = self._client.call(SANDBOX_SERVICE, "GetStats", {"sandboxId": self._id}, sandbox_id=self._id)
        return stats_from_wire(resp.get("stats"))
