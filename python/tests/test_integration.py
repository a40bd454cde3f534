"""Integration tests of every SDK call against the real `sbx serve` (sync API)."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pytest

import sbx
from sbx import Sandbox, SandboxDefaults, SandboxStatus, Session


def test_exec_result_and_errors(server: Any, idle: Sandbox) -> None:
    r = idle.exec(["python", "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"]).result()
    assert (r.stdout, r.stderr, r.returncode) == ("out\n", "err\n", 3)
    assert r.stdout_bytes == b"out\n" and r.stderr_bytes == b"err\n"
    assert r.command == ["python", "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"]
    assert idle.exec(["pwd"], cwd="/tmp").result().stdout == "/tmp\n"
    assert idle.exec(["sh", "-c", "echo $FOO"], env={"FOO": "bar"}).result().stdout == "bar\n"


def test_exec_check(server: Any, idle: Sandbox) -> None:
    with pytest.raises(sbx.SandboxExecutionError) as ei:
        idle.exec(["sh", "-c", "echo bad >&2; exit 7"], check=True).result()
    res = ei.value.exec_result
    assert res is not None and res.returncode == 7 and res.stderr == "bad\n"
    assert "exited with code 7" in str(ei.value)
    assert idle.exec(["true"], check=True).result().returncode == 0


def test_exec_streaming_output(server: Any, idle: Sandbox) -> None:
    # The command waits for a file that the test writes only after it read
    # the first line: this proves output arrives while the process runs.
    p = idle.exec(["sh", "-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; echo e >&2"])
    it = iter(p.stdout)
    assert next(it) == "first\n"
    assert p.poll() is None and p.returncode is None
    idle.write_file("/tmp/go", b"").result()
    assert list(it) == ["second\n"]
    assert list(p.stderr) == ["e\n"]
    assert p.wait(timeout=60) == 0
    r = p.result()
    assert r.stdout == "first\nsecond\n"


def test_exec_stdin(server: Any, idle: Sandbox) -> None:
    p = idle.exec(["python", "-c", "import sys; print(sys.stdin.read().upper(), end='')"], stdin=True)
    assert p.stdin is not None
    p.stdin.write(b"abc ")
    p.stdin.write("d\xe9f ")
    p.stdin.writeline("ghi")
    p.stdin.close().result()
    assert p.result().stdout == "ABC D\xc9F GHI\n"
    # Interactive: one line in, one line out.
    p = idle.exec(["sh", "-c", "while read l; do echo got $l; done"], stdin=True)
    assert p.stdin is not None
    lines = iter(p.stdout)
    p.stdin.writeline("1").result()
    assert next(lines) == "got 1\n"
    p.stdin.writeline("2")
    assert next(lines) == "got 2\n"
    p.stdin.close()
    assert p.wait() == 0


def test_exec_timeout_and_cancel(server: Any, idle: Sandbox) -> None:
    with pytest.raises(sbx.SandboxCommandTimeoutError) as ei:
        idle.exec(["sleep", "60"], timeout_seconds=1).result()
    assert ei.value.exec_result is not None and ei.value.exec_result.timed_out
    p = idle.exec(["sh", "-c", "echo up; sleep 60"])
    assert next(iter(p.stdout)) == "up\n"
    assert p.cancel() is True
    assert p.wait(timeout=60) != 0
    assert p.result().signal == "SIGKILL"


def test_files(server: Any, idle: Sandbox) -> None:
    idle.write_file("/work/dir/a.txt", "h\xe9llo").result()
    assert idle.read_file("/work/dir/a.txt").result() == "h\xe9llo".encode()
    idle.write_file("/work/empty", b"").result()
    assert idle.read_file("/work/empty").result() == b""
    with pytest.raises(sbx.SandboxFileError) as ei:
        idle.read_file("/does/not/exist").result()
    assert ei.value.reason == "FILE_NOT_FOUND" and ei.value.filepath == "/does/not/exist"
    with pytest.raises(sbx.SandboxFileError):
        idle.read_file("relative/path").result()


def test_large_file_50mib(server: Any, idle: Sandbox) -> None:
    data = os.urandom(50 << 20)
    idle.write_file("/tmp/big.bin", data).result(timeout=600)
    r = idle.exec(["sha256sum", "/tmp/big.bin"]).result()
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    back = idle.read_file("/tmp/big.bin").result(timeout=600)
    assert len(back) == len(data) and back == data


def test_lifecycle_and_main_command(server: Any) -> None:
    sb = Sandbox.run("sh", "-c", "echo to-log; echo to-err >&2; exit 4", container_image="busybox", tags=("pytest", "main"))
    assert sb.sandbox_id and sb.sandbox_id.startswith("sb-")
    assert sb.status in (SandboxStatus.PENDING, SandboxStatus.CREATING, SandboxStatus.RUNNING)
    got = sb.wait_until_complete(timeout=120).result()
    assert got is sb
    assert sb.status == SandboxStatus.FAILED and sb.returncode == 4
    assert sb.get_status() == SandboxStatus.FAILED
    logs = "".join(sb.stream_logs())
    assert "to-log\n" in logs and "to-err\n" in logs
    assert list(sb.stream_logs(tail_lines=1))
    ok = Sandbox.run("true", container_image="busybox")
    ok.wait_until_complete().result()
    assert ok.status == SandboxStatus.COMPLETED and ok.returncode == 0
    assert ok.wait() is ok  # a COMPLETED sandbox is not an error for wait()
    with pytest.raises(sbx.SandboxNotRunningError):
        ok.exec(["true"]).result()


def test_explicit_start_wait_stop(server: Any) -> None:
    sb = Sandbox(container_image="busybox", tags=("pytest",))
    assert sb.sandbox_id is None and sb.status == SandboxStatus.PENDING
    sb.start().result()
    assert sb.sandbox_id is not None
    assert sb.wait(timeout=120) is sb and sb.status == SandboxStatus.RUNNING
    sb.stop(graceful_shutdown_seconds=1).result()
    assert sb.status == SandboxStatus.TERMINATED
    with pytest.raises(sbx.SandboxTerminatedError):
        sb.wait_until_complete().result()
    assert sb.wait_until_complete(raise_on_termination=False).result() is sb
    with pytest.raises(sbx.SandboxTerminatedError):
        sb.wait()
    sb.stop().result()  # stopping an ended sandbox does nothing


def test_context_manager_stops(server: Any) -> None:
    with Sandbox.run(container_image="busybox") as sb:
        assert sb.exec(["echo", "hi"]).result().stdout == "hi\n"
    assert sb.status == SandboxStatus.TERMINATED
    assert sb.get_status() == SandboxStatus.TERMINATED


def test_list_from_id_delete(server: Any) -> None:
    tag = f"list-{time.monotonic_ns()}"
    a = Sandbox.run(container_image="busybox", tags=(tag, "a"))
    b = Sandbox.run(container_image="busybox", tags=(tag,))
    ids = {s.sandbox_id for s in Sandbox.list(tags=[tag]).result()}
    assert ids == {a.sandbox_id, b.sandbox_id}
    assert [s.sandbox_id for s in Sandbox.list(tags=[tag, "a"]).result()] == [a.sandbox_id]
    a.wait()
    running = Sandbox.list(tags=[tag], status="running").result()
    assert a.sandbox_id in {s.sandbox_id for s in running}
    got = Sandbox.from_id(a.sandbox_id or "").result()
    assert got.sandbox_id == a.sandbox_id and tag in got.tags
    assert got.exec(["echo", "via from_id"]).result().stdout == "via from_id\n"
    b.stop(graceful_shutdown_seconds=1).result()
    assert b.sandbox_id not in {s.sandbox_id for s in Sandbox.list(tags=[tag]).result()}
    assert b.sandbox_id in {s.sandbox_id for s in Sandbox.list(tags=[tag], show_terminated=True).result()}
    assert b.sandbox_id in {s.sandbox_id for s in Sandbox.list(tags=[tag], status=SandboxStatus.TERMINATED).result()}
    Sandbox.delete(a.sandbox_id or "").result()
    Sandbox.delete(b.sandbox_id or "").result()
    with pytest.raises(sbx.SandboxNotFoundError) as ei:
        Sandbox.from_id(a.sandbox_id or "").result()
    assert ei.value.reason == "SANDBOX_NOT_FOUND"
    with pytest.raises(sbx.SandboxNotFoundError):
        Sandbox.delete(a.sandbox_id or "").result()
    Sandbox.delete(a.sandbox_id or "", missing_ok=True).result()
    a.stop(missing_ok=True).result()


def test_session_lazy_defaults_close(server: Any) -> None:
    tag = f"sess-{time.monotonic_ns()}"
    defaults = SandboxDefaults(container_image="busybox", tags=(tag,), environment_variables={"A": "1", "B": "1"}, max_lifetime_seconds=300)
    with Session(defaults) as session:
        s1 = session.sandbox(environment_variables={"B": "2"}, tags=("one",))
        s2 = session.sandbox()
        s3 = session.sandbox()
        assert s1.sandbox_id is None and session.session_id is None  # nothing created yet
        assert Sandbox.list(tags=[tag]).result() == []
        r = s1.exec(["sh", "-c", "echo $A$B"]).result()  # first use creates it
        assert r.stdout == "12\n"
        assert s1.sandbox_id is not None and s2.sandbox_id is None
        assert set(s1.tags) >= {tag, "one"}
        s2.write_file("/tmp/f", b"x").result()
        assert s2.read_file("/tmp/f").result() == b"x"
        assert {s.sandbox_id for s in session.list().result()} == {s1.sandbox_id, s2.sandbox_id}
        outsider = Sandbox.run(container_image="busybox", tags=(tag, "adopted"))
        session.adopt(outsider)
        via_id = session.from_id(s1.sandbox_id or "").result()
        assert via_id.sandbox_id == s1.sandbox_id
    assert session.closed
    for sb in (s1, s2, outsider):
        assert sb.get_status() == SandboxStatus.TERMINATED, sb
    assert s3.sandbox_id is None
    with pytest.raises(sbx.SandboxError):
        s3.exec(["true"]).result()  # never started, never will be
    with pytest.raises(sbx.SessionClosedError):
        session.sandbox()
    session.close().result()  # twice is harmless


def test_sandbox_session_classmethod(server: Any) -> None:
    session = Sandbox.session(SandboxDefaults(container_image="busybox"))
    sb = session.sandbox()
    assert sb.wait(timeout=120).status == SandboxStatus.RUNNING
    session.close().result()
    assert sb.get_status() == SandboxStatus.TERMINATED


def test_bad_image_fails(server: Any) -> None:
    sb = Sandbox.run(container_image="no-such-image-sbx-test:1")
    with pytest.raises(sbx.SandboxFailedError) as ei:
        sb.wait(timeout=120)
    assert sb.sandbox_id in str(ei.value)


def test_bad_key_and_bad_lifetime(server: Any) -> None:
    c = sbx.Client(server.url, "sbx_wrong")
    with pytest.raises(sbx.SandboxAuthenticationError) as ei:
        Sandbox.list(client=c).result()
    assert ei.value.code == "unauthenticated"
    with pytest.raises(sbx.SandboxInvalidArgumentError) as ei2:
        Sandbox.run(container_image="busybox", max_lifetime_seconds=10 ** 9)
    assert ei2.value.reason == "LIFETIME_OUT_OF_RANGE"
