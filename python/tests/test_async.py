"""The same calls from asyncio code: every operation is awaitable, streams are
async-iterable, and sandboxes and sessions are async context managers.
(Debian has no pytest-asyncio, so each test runs its own event loop.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import sbx
from sbx import Sandbox, SandboxDefaults, SandboxStatus, Session


def test_async_sandbox(server: Any) -> None:
    async def main() -> None:
        async with Sandbox(container_image="python:3.11", tags=("pytest-async",)) as sb:
            assert sb.sandbox_id is not None
            r = await sb.exec(["python", "--version"])
            assert r.stdout.startswith("Python 3.11")
            # Concurrent execs on one event loop.
            rs = await asyncio.gather(*(sb.exec(["sh", "-c", f"echo {i}"]) for i in range(5)))
            assert [x.stdout for x in rs] == [f"{i}\n" for i in range(5)]
            p = sb.exec(["sh", "-c", "echo a; echo b; echo c >&2"])
            assert [line async for line in p.stdout] == ["a\n", "b\n"]
            assert [line async for line in p.stderr] == ["c\n"]
            assert (await p).returncode == 0
            p = sb.exec(["cat"], stdin=True)
            assert p.stdin is not None
            await p.stdin.write("in")
            await p.stdin.close()
            assert (await p).stdout == "in"
            with pytest.raises(sbx.SandboxExecutionError):
                await sb.exec(["false"], check=True)
            await sb.write_file("/tmp/a", b"async")
            assert await sb.read_file("/tmp/a") == b"async"
            with pytest.raises(sbx.SandboxFileError):
                await sb.read_file("/nope")
            got = await Sandbox.from_id(sb.sandbox_id)
            assert got.sandbox_id == sb.sandbox_id
            assert sb.sandbox_id in {s.sandbox_id for s in await Sandbox.list(tags=["pytest-async"])}
        assert sb.status == SandboxStatus.TERMINATED
        assert (await sb.wait_until_complete(raise_on_termination=False)) is sb
        await Sandbox.delete(sb.sandbox_id or "")

    asyncio.run(main())


def test_async_main_command_and_logs(server: Any) -> None:
    async def main() -> None:
        sb = Sandbox.run("sh", "-c", "echo one; echo two", container_image="busybox")
        await sb.wait_until_complete(timeout=120)
        assert sb.returncode == 0 and sb.status == SandboxStatus.COMPLETED
        assert [line async for line in sb.stream_logs()] == ["one\n", "two\n"]
        follow = Sandbox.run("sh", "-c", "sleep 1; echo late", container_image="busybox")
        assert "late\n" in [line async for line in follow.stream_logs(follow=True)]
        await follow.stop(missing_ok=True)

    asyncio.run(main())


def test_async_session(server: Any) -> None:
    tag = f"async-sess-{time.monotonic_ns()}"

    async def main() -> None:
        async with Session(SandboxDefaults(container_image="busybox", tags=(tag,))) as session:
            a, b = session.sandbox(), session.sandbox()
            ra, rb = await asyncio.gather(a.exec(["echo", "a"]), b.exec(["echo", "b"]))
            assert (ra.stdout, rb.stdout) == ("a\n", "b\n")
            assert len(await session.list()) == 2
        for sb in (a, b):
            assert sb.get_status() == SandboxStatus.TERMINATED

    asyncio.run(main())
