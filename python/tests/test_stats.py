"""Integration tests of Sandbox.stats() against the real `sbx serve`: what a
busybox sandbox uses, read from its cgroups, as a SandboxStats."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

import sbx
from sbx import Sandbox, SandboxStats


def test_stats_of_a_running_sandbox(server: Any) -> None:
    sb = Sandbox.run(container_image="busybox", resources={"memory": "128Mi", "pids": 100}, max_lifetime_seconds=300)
    try:
        # No wait(): stats() waits for a sandbox that is starting.
        first = sb.stats().result(timeout=120)
        assert isinstance(first, SandboxStats)
        assert first.memory_limit_bytes == 128 << 20
        assert first.pids_limit == 100
        assert first.pids >= 1 and first.memory_bytes > 0
        assert first.read_at is not None
        with pytest.raises(dataclasses.FrozenInstanceError):
            first.pids = 0  # type: ignore[misc]

        sb.exec(["sh", "-c", "dd if=/dev/zero of=/dev/shm/x bs=1M count=40"], check=True).result(timeout=60)
        after = sb.stats().result(timeout=60)
        assert after.memory_bytes >= 40 << 20, after
        assert after.memory_peak_bytes >= 40 << 20, after
        assert after.cpu_seconds > 0, after
        assert after.oom_kills == 0
        # Disk: this server may or may not have disk limits; the values are ints either way.
        assert isinstance(after.disk_bytes, int) and isinstance(after.disk_limit_bytes, int)

        # The operation can be awaited, as the SDK's others.
        async def main() -> SandboxStats:
            return await sb.stats()

        assert asyncio.run(main()).memory_limit_bytes == 128 << 20
        # A sandbox looked up by id reads the same one.
        again = Sandbox.from_id(sb.sandbox_id).result(timeout=60).stats().result(timeout=60)
        assert again.memory_peak_bytes >= 40 << 20
    finally:
        sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result(timeout=60)
    with pytest.raises(sbx.SandboxNotRunningError):
        sb.stats().result(timeout=60)



def test_stats_from_wire() -> None:
    from sbx._stats import stats_from_wire

    # protojson: int64 as strings, zero fields left out.
    st = stats_from_wire({"cpuSeconds": 1.5, "memoryBytes": "41943040", "pidsLimit": "64",
                          "readAt": "2026-01-02T03:04:05.123456789Z"})
    assert st.cpu_seconds == 1.5 and st.memory_bytes == 40 << 20 and st.pids_limit == 64
    assert st.memory_peak_bytes == 0 and st.oom_kills == 0 and st.disk_bytes == 0
    assert st.read_at is not None and (st.read_at.year, st.read_at.microsecond) == (2026, 123456)
    assert stats_from_wire(None) == SandboxStats()
