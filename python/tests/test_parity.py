"""The W&B / CoreWeave API surface that sbx added for ported code: names,
parameters, return types, exceptions and behaviours. The first tests need no
server; the rest run against the real `sbx serve` (see conftest.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
import warnings
from typing import Any, Iterator

import pytest

import sbx
from sbx import Sandbox, SandboxDefaults, SandboxStatus, Session


# ---- no server ----------------------------------------------------------------


def test_exception_names_and_hierarchy() -> None:
    for name in ("CWSandboxError", "SandboxError", "CWSandboxAuthenticationError", "SandboxNotFoundError",
                 "SandboxNotRunningError", "SandboxTimeoutError", "SandboxRequestTimeoutError",
                 "SandboxCommandTimeoutError", "SandboxFailedError", "SandboxTerminatedError",
                 "SandboxExecutionError", "SandboxFileError", "SandboxResourceExhaustedError",
                 "SandboxUnavailableError", "CWSandboxValidationError", "SandboxValidationError",
                 "FieldViolation", "SandboxStreamBackpressureError", "SandboxStreamTruncatedError",
                 "SandboxTerminalStateUnavailableError", "SandboxSnapshotError", "FunctionError",
                 "AsyncFunctionError", "DiscoveryError", "RunnerNotFoundError"):
        assert hasattr(sbx, name), name
    assert issubclass(sbx.SandboxStreamTruncatedError, sbx.SandboxExecutionError)
    assert issubclass(sbx.SandboxStreamBackpressureError, sbx.SandboxExecutionError)
    assert issubclass(sbx.SandboxUnavailableError, sbx.SandboxNotRunningError)
    assert issubclass(sbx.SandboxCommandTimeoutError, sbx.SandboxTimeoutError)
    # A timeout is what CoreWeave code catches around .result(timeout=...).
    assert issubclass(sbx.SandboxTimeoutError, concurrent.futures.TimeoutError)
    # sbx's invalid-argument error is CoreWeave's validation error (and a ValueError).
    e = sbx.SandboxInvalidArgumentError("network.egress[0].tenant: tenants are not supported")
    assert isinstance(e, sbx.SandboxValidationError) and isinstance(e, sbx.CWSandboxValidationError)
    assert isinstance(e, ValueError)
    assert e.field_violations == [sbx.FieldViolation("network.egress[0].tenant", "tenants are not supported")]
    snap = sbx.SandboxSnapshotError("x")
    assert snap.file_system_snapshot_id is None and isinstance(snap, sbx.SandboxError)


def test_execution_error_names_the_python_exception() -> None:
    res = sbx.ProcessResult(stdout="", stderr="Traceback (most recent call last):\n  File \"t.py\", line 1, in <module>\n"
                            "    raise KeyError('k')\nKeyError: 'k'\n", returncode=1)
    e = sbx.SandboxExecutionError("failed", exec_result=res)
    assert (e.exception_type, e.exception_message) == ("KeyError", "'k'")
    plain = sbx.SandboxExecutionError("failed", exec_result=sbx.ProcessResult(stdout="", stderr="oops\n", returncode=2))
    assert (plain.exception_type, plain.exception_message) == (None, None)


def test_defaults_fields_and_helpers() -> None:
    d = SandboxDefaults(container_image="busybox", tags=("a",), environment_variables={"X": "1"},
                        annotations={"team": "ml"}, command="sleep", args=["infinity"],
                        request_timeout_seconds=60, runner_ids=[], temp_dir="/tmp")
    assert d.args == ("infinity",) and d.runner_ids == ()
    warnings.simplefilter("ignore", UserWarning)  # annotations are ignored with a warning (tested below)
    assert d.merge_tags(["b"]) == ["a", "b"] and d.merge_tags(None) == ["a"]
    assert d.merge_environment_variables({"X": "2", "Y": "3"}) == {"X": "2", "Y": "3"}
    assert d.merge_annotations({"k": "v"}) == {"team": "ml", "k": "v"}
    with pytest.raises(TypeError):
        SandboxDefaults(tags="abc")
    f = SandboxDefaults.from_dict({"container_image": "busybox", "tags": ["t"], "network": {"deny_egress": True},
                                   "max_lifetime_seconds": None, "not_a_field": 1})
    assert f.container_image == "busybox" and f.tags == ("t",) and f.network == sbx.NetworkOptions(deny_egress=True)
    assert SandboxDefaults.from_dict(None) == SandboxDefaults()
    # The defaults' command runs in sandboxes given none; their own wins.
    assert Sandbox(defaults=d)._create_req["command"] == ["sleep", "infinity"]
    assert Sandbox("echo", "hi", defaults=d)._create_req["command"] == ["echo", "hi"]
    assert Sandbox(command="true", defaults=d)._create_req["command"] == ["true"]


def test_cw_options_accepted_warned_or_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transport settings are accepted silently
        Sandbox(container_image="busybox", auth=sbx.AuthStrategy.WANDB, request_timeout_seconds=30,
                poll_retry_budget_seconds=5, poll_rpc_timeout_seconds=5)
    with pytest.warns(UserWarning, match="runner_ids"):
        Sandbox(container_image="busybox", runner_ids=["r1"])
    with pytest.warns(UserWarning, match="annotations"):
        Sandbox(defaults=SandboxDefaults(annotations={"a": "b"}))
    with pytest.raises(sbx.SandboxInvalidArgumentError, match="volumes"):
        Sandbox(container_image="busybox", volumes=[{"name": "w", "mount_path": "/w"}])
    with pytest.raises(sbx.SandboxInvalidArgumentError, match="file_system_snapshot"):
        Sandbox(defaults=SandboxDefaults(file_system_snapshot={"mount_path": "/workspace"}))
    # ResourceOptions: the limits (else the requests) become sbx's limits.
    sb = Sandbox(resources=sbx.ResourceOptions(requests={"cpu": "1"}, limits={"cpu": "2", "memory": "1Gi"}))
    assert sb._create_req["resources"] == {"cpuMillis": "2000", "memoryBytes": str(1 << 30)}
    with pytest.raises(sbx.SandboxInvalidArgumentError, match="gpu"):
        Sandbox(resources=sbx.ResourceOptions(gpu={"count": 1}))


def test_mounted_files_spellings() -> None:
    sb = Sandbox(mounted_files=[{"mount_path": "train.py", "file_content": b"print(1)"},
                                {"path": "/etc/app.conf", "content": "x=1", "mode": 0o600}])
    assert [(f["path"], f.get("mode")) for f in sb._create_req["mountedFiles"]] == [("train.py", None), ("/etc/app.conf", 0o600)]
    # A relative path goes as it is (normalized): the server takes it from the working dir.
    sb = Sandbox(working_dir="/app", mounted_files=[{"mount_path": "./sub/../req.txt", "file_content": b""}])
    assert sb._create_req["mountedFiles"][0]["path"] == "req.txt"
    with pytest.raises(sbx.SandboxInvalidArgumentError, match="mount_path"):
        Sandbox(mounted_files=[{"file_content": b"x"}])


def test_stream_reader_is_an_iterator_and_closes() -> None:
    r = sbx.StreamReader()
    r._feed(b"one\ntw")
    r._feed(b"o\nthree")
    r._close()
    assert next(r) == "one\n"
    assert list(r) == ["two\n", "three"]
    r = sbx.StreamReader()
    r._feed(b"a\nb\n")
    assert next(r) == "a\n"
    r.close()
    r.close()
    assert list(r) == []
    b = sbx.ByteStreamReader()
    b._feed(b"\x00\x01")
    b._feed(b"\x02")
    b._close()
    assert list(b) == [b"\x00\x01", b"\x02"]


def test_results_and_wait() -> None:
    ops = [sbx.OperationRef.spawn(time.sleep, t) for t in (0, 0, 30)]
    done, pending = sbx.wait(ops, num_returns=2, timeout=20)
    assert done == ops[:2] and pending == ops[2:]
    done, pending = sbx.wait(ops[:2])
    assert (done, pending) == (ops[:2], [])
    assert sbx.results(sbx.OperationRef.completed(7)) == 7
    assert sbx.results([sbx.OperationRef.completed(1), sbx.OperationRef.completed(2)]) == [1, 2]
    with pytest.raises(ValueError):
        sbx.wait(ops, num_returns=0)
    slow = sbx.OperationRef.spawn(time.sleep, 30)
    with pytest.raises(concurrent.futures.TimeoutError):
        slow.result(timeout=0.05)


def test_session_accepts_a_mapping_and_cw_arguments() -> None:
    s = Session({"container_image": "busybox", "tags": ["m"]}, report_to=[])
    assert s.defaults.container_image == "busybox" and s.defaults.tags == ("m",)
    assert s.sandbox_count == 0
    s.sandbox()
    assert s.sandbox_count == 1
    assert s.log_metrics(step=3) is False and s.get_metrics() == {}
    s.close().result()
    with pytest.raises(TypeError):
        Session(42)  # type: ignore[arg-type]


def test_stop_with_snapshot_is_refused() -> None:
    sb = Sandbox(container_image="busybox")
    with pytest.raises(sbx.SandboxSnapshotError):
        sb.stop(snapshot_on_stop=True).result()
    assert sb.sandbox_id is None  # nothing was created or stopped
    assert sb.file_system_snapshot_id is None and sb.runner_id is None and sb.resource_gpu is None


# ---- against the server ------------------------------------------------------------


def test_relative_paths_and_file_timeouts(server: Any, idle: Sandbox) -> None:
    idle.write_file("rel-dir/hello.txt", b"hi").result(timeout=60)
    assert idle.read_file("/rel-dir/hello.txt").result(timeout=60) == b"hi"
    idle.exec(["sh", "-c", "echo made > made.txt"], check=True).result()
    assert idle.read_file("made.txt").result(timeout=60) == b"made\n"
    # CoreWeave's keyword names, and the old sbx ones.
    idle.write_file(filepath="/tmp/kw", contents=b"1", timeout_seconds=60).result()
    idle.write_file(path="/tmp/kw2", data=b"2").result(timeout=60)
    assert idle.read_file(filepath="/tmp/kw", timeout_seconds=60).result() == b"1"
    assert idle.read_file(path="/tmp/kw2").result(timeout=60) == b"2"
    with pytest.raises(sbx.SandboxFileError) as ei:
        idle.read_file("no/such/file").result(timeout=60)
    assert ei.value.filepath == "no/such/file" and ei.value.reason == "FILE_NOT_FOUND"


def test_mounted_files_relative_to_the_working_dir(server: Any) -> None:
    files = [{"mount_path": "req.txt", "file_content": b"numpy\n"}, {"mount_path": "/abs/x.py", "file_content": b"print(4)"}]
    with Sandbox.run(container_image="python:3.11", working_dir="/app", mounted_files=files, max_lifetime_seconds=300) as sb:
        r = sb.exec(["sh", "-c", "cat req.txt && python /abs/x.py"], check=True).result()
        assert r.stdout == "numpy\n4\n"
        assert sb.read_file("req.txt").result(timeout=60) == b"numpy\n"


def _chunks() -> Iterator[bytes]:
    for i in range(5):
        yield bytes([i]) * (700 << 10)  # 700 KiB: re-cut into 1 MiB messages


def test_streaming_file_transfer(server: Any, idle: Sandbox) -> None:
    idle.write_file_streaming("/tmp/streamed.bin", _chunks()).result(timeout=120)
    want = b"".join(_chunks())
    got = b"".join(idle.read_file_streaming("/tmp/streamed.bin"))
    assert got == want
    assert all(len(c) <= 1 << 20 for c in idle.read_file_streaming("/tmp/streamed.bin"))
    idle.write_file_streaming("/tmp/small.bin", b"abc").result(timeout=60)
    assert idle.read_file_streaming("/tmp/small.bin").read() == b"abc"
    with pytest.raises(sbx.SandboxFileError):
        list(idle.read_file_streaming("/tmp/does-not-exist"))

    async def agen() -> Any:
        for part in (b"as", b"ync"):
            await asyncio.sleep(0)
            yield part

    async def main() -> bytes:
        await idle.write_file_streaming("/tmp/async.bin", agen())
        out = b""
        async for chunk in idle.read_file_streaming("/tmp/async.bin"):
            out += chunk
        return out

    assert asyncio.run(main()) == b"async"


def test_exec_stats_and_execution_error_details(server: Any, idle: Sandbox) -> None:
    before = idle.exec_stats
    idle.exec(["true"]).result()
    idle.exec(["false"]).result()
    with pytest.raises(sbx.SandboxExecutionError) as ei:
        idle.exec(["python", "-c", "raise ValueError('bad input')"], check=True).result()
    assert (ei.value.exception_type, ei.value.exception_message) == ("ValueError", "bad input")
    after = idle.exec_stats
    assert {k: after[k] - before[k] for k in after} == {
        "exec_count": 3, "exec_completed_ok": 1, "exec_completed_nonzero": 1, "exec_failures": 1}


def test_properties_await_and_status_time(server: Any) -> None:
    async def main() -> None:
        sb = Sandbox.run(container_image="busybox", resources={"cpu": "500m", "memory": "256Mi"}, max_lifetime_seconds=300)
        try:
            assert await sb is sb  # waits until RUNNING
            assert sb.status == SandboxStatus.RUNNING
            lim = sb.resource_limits or {}
            assert (lim.get("cpu"), lim.get("memory")) == ("500m", str(256 << 20)), lim
            assert sb.resource_requests == sb.resource_limits
            t1 = sb.status_updated_at
            assert t1 is not None
            sb.get_status()
            assert sb.status_updated_at is not None and sb.status_updated_at >= t1
            done, pending = sbx.wait([sb, sb.exec(["echo", "x"])], timeout=60)
            assert len(done) == 2 and not pending
        finally:
            await sb.stop(graceful_shutdown_seconds=1, missing_ok=True)

    asyncio.run(main())


def test_with_block_error_is_not_hidden_by_stop(server: Any) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with Sandbox.run(container_image="busybox", max_lifetime_seconds=300) as sb:
            sb.wait(timeout=120)
            Sandbox.delete(sb.sandbox_id or "").result(timeout=60)
            sb._id = "not a valid id"  # the stop on exit fails (invalid argument)
            raise Boom()
    # Without an exception in flight, the failed stop is raised.
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        with Sandbox.run(container_image="busybox", max_lifetime_seconds=300) as sb:
            Sandbox.delete(sb.sandbox_id or "").result(timeout=60)
            sb._id = "not a valid id"


def test_base_url_picks_the_server(server: Any) -> None:
    with Sandbox.run(container_image="busybox", base_url=server.url, max_lifetime_seconds=300) as sb:
        assert sb._client.url == server.url
        assert Sandbox.from_id(sb.sandbox_id or "", base_url=server.url, timeout_seconds=30).result().sandbox_id == sb.sandbox_id
        assert sb.sandbox_id in {s.sandbox_id for s in Sandbox.list(base_url=server.url, timeout_seconds=30).result()}


def test_stream_logs_options(server: Any) -> None:
    sb = Sandbox.run("sh", "-c", "echo one; echo two", container_image="busybox", max_lifetime_seconds=300)
    sb.wait_until_complete(timeout=120).result()
    assert list(sb.stream_logs(timeout_seconds=60)) == ["one\n", "two\n"]
    assert list(sb.stream_logs(tail_lines=1)) == ["two\n"]
    with pytest.raises(TypeError):
        sb.stream_logs(since_time="yesterday")


def test_session_list_adopt_and_from_id(server: Any) -> None:
    tag = "parity-" + uuid.uuid4().hex[:8]
    # A sandbox of an earlier run with the same defaults...
    orphan = Sandbox.run(container_image="busybox", tags=[tag], max_lifetime_seconds=300)
    other = Sandbox.run(container_image="busybox", max_lifetime_seconds=300)
    try:
        with Session(SandboxDefaults(container_image="busybox", tags=(tag,))) as session:
            mine = session.sandbox()
            mine.exec(["true"]).result()
            found = session.list(adopt=True).result()
            assert {s.sandbox_id for s in found} == {orphan.sandbox_id, mine.sandbox_id}
            assert session.sandbox_count == 2
            got = session.from_id(other.sandbox_id or "").result()
            assert got.sandbox_id == other.sandbox_id and session.sandbox_count == 3
            not_adopted = session.from_id(orphan.sandbox_id or "", adopt=False).result()
            assert not_adopted.sandbox_id == orphan.sandbox_id and session.sandbox_count == 3
        # Closing the session stopped what it adopted.
        for sb in (orphan, other, mine):
            assert sb.get_status() == SandboxStatus.TERMINATED, sb.info
    finally:
        for sb in (orphan, other):
            sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result(timeout=60)


def test_stdin_stream_writer(server: Any, idle: Sandbox) -> None:
    p = idle.exec(["cat"], stdin=True)
    w = p.stdin
    assert isinstance(w, sbx.StreamWriter) and not w.closed
    w.writeline("h\xe9", encoding="latin-1").result(timeout=60)
    w.close().result(timeout=60)
    assert w.closed
    with pytest.raises(sbx.SandboxExecutionError):
        w.write(b"late")
    assert p.result().stdout_bytes == b"h\xe9\n"


SCALE = 10


def test_remote_functions(server: Any) -> None:
    import math

    with Session(SandboxDefaults(container_image="python:3.11", tags=("parity-fn",), max_lifetime_seconds=300)) as session:
        @session.function()
        def hypot(x: float, y: float, *, scale: int = 1) -> dict:
            return {"h": math.hypot(x, y) * scale * SCALE}

        assert hypot.__name__ == "hypot"
        assert hypot.local(3, 4) == {"h": 50.0}
        assert hypot.remote(3, 4, scale=2).result(timeout=120) == {"h": 100.0}
        assert [op.result(timeout=120)["h"] for op in hypot.map([(6, 8), (0, 1)])] == [100.0, 10.0]

        @session.function(environment_variables={"GREETING": "hi"})
        def fails(name: str) -> None:
            import os

            raise KeyError(os.environ["GREETING"] + " " + name)

        with pytest.raises(sbx.SandboxExecutionError) as ei:
            fails.remote("bob").result(timeout=120)
        assert ei.value.exception_type == "KeyError" and ei.value.exception_message == "'hi bob'"
        with pytest.raises(TypeError):
            hypot.remote(object(), 1)

        async def coro() -> None:
            pass

        with pytest.raises(sbx.AsyncFunctionError):
            session.function()(coro)
    # Every call's sandbox was stopped.
    assert all(s.status.is_terminal for s in Sandbox.list(tags=["parity-fn"], show_terminated=True).result())


def test_shell_terminal(server: Any, idle: Sandbox) -> None:
    term = idle.shell(["sh", "-c", "stty size; read line; echo got:$line; exit 3"], width=100, height=30)
    assert isinstance(term, sbx.TerminalSession) and term.command[0] == "sh"
    seen, typed = b"", False
    for chunk in term.output:
        assert isinstance(chunk, bytes)
        seen += chunk
        if b"30 100" in seen and not typed:
            term.resize(120, 40)
            term.stdin.writeline("abc")
            typed = True
        if b"got:abc" in seen:
            break
    assert b"abc\r\n" in seen  # the terminal echoes what was typed
    assert term.wait(timeout=60) == 3 and term.returncode == 3
    assert term.result() == sbx.TerminalResult(returncode=3, command=term.command)
    with pytest.raises(sbx.SandboxExecutionError):
        term.resize(80, 24)
