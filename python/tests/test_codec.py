"""Unit tests of the Connect codec, the error mapping and the configuration,
against a tiny fake Connect server built on http.server."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Tuple

import pytest

import sbx
from sbx import _connect, _workers
from sbx._client import Client, resolve_config


def _pb_str(field: int, s: str) -> bytes:
    b = s.encode()
    return bytes([field << 3 | 2, len(b)]) + b


def error_info(reason: str) -> Dict[str, str]:
    value = _pb_str(1, reason) + _pb_str(2, "sbx.run")
    return {"type": "google.rpc.ErrorInfo", "value": base64.b64encode(value).decode().rstrip("=")}


def retry_info(seconds: int) -> Dict[str, str]:
    dur = bytes([0x08, seconds])
    value = bytes([0x0A, len(dur)]) + dur
    return {"type": "google.rpc.RetryInfo", "value": base64.b64encode(value).decode()}


Handler = Callable[[BaseHTTPRequestHandler, bytes], None]


class Fake:
    """A Connect server whose routes are plain functions (handler, body)."""

    def __init__(self) -> None:
        self.routes: Dict[str, Handler] = {}
        self.requests: List[Tuple[str, Dict[str, str], bytes]] = []
        self.peers: List[Any] = []  # the client address of each POST
        self.auto_continue = True
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def handle_expect_100(self) -> bool:
                # With auto_continue off, a route answers before the body
                # comes, as the sbx server does for a refused bulk write.
                return super().handle_expect_100() if fake.auto_continue else True

            def do_GET(self) -> None:  # noqa: N802
                self._bulk("GET")

            def do_PUT(self) -> None:  # noqa: N802
                self._bulk("PUT")

            def _bulk(self, method: str) -> None:
                # Bulk endpoint routes are "METHOD /path" (no query); the
                # handler reads the body itself, if it wants it. Without a
                # route the answer is a plain 404: a server from before the
                # bulk endpoint.
                fake.requests.append((method + " " + self.path, dict(self.headers), b""))
                route = fake.routes.get(method + " " + self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                route(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        n = int(self.rfile.readline().strip(), 16)
                        if n == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(n)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append((self.path, dict(self.headers), body))
                fake.peers.append(self.client_address)
                route = fake.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply_json(status: int, obj: Any, headers: Dict[str, str] = {}) -> Handler:  # noqa: B006
    def h(w: BaseHTTPRequestHandler, body: bytes) -> None:
        b = json.dumps(obj).encode()
        w.send_response(status)
        w.send_header("Content-Type", "application/json")
        for k, v in headers.items():
            w.send_header(k, v)
        w.send_header("Content-Length", str(len(b)))
        w.end_headers()
        w.wfile.write(b)
    return h


def reply_stream(msgs: List[Any], end: Dict[str, Any]) -> Handler:
    def h(w: BaseHTTPRequestHandler, body: bytes) -> None:
        out = b"".join(_connect.envelope(m) for m in msgs) + _connect.envelope(end, _connect.END_STREAM)
        w.send_response(200)
        w.send_header("Content-Type", "application/connect+json")
        w.send_header("Content-Length", str(len(out)))
        w.end_headers()
        w.wfile.write(out)
    return h


@pytest.fixture()
def fake() -> Any:
    f = Fake()
    yield f
    f.close()


def test_envelope_roundtrip() -> None:
    b = _connect.envelope({"a": 1}) + _connect.envelope({"error": {"code": "x"}}, _connect.END_STREAM)
    assert b[:5] == struct.pack(">BI", 0, len(b'{"a":1}'))
    r = io.BytesIO(b)
    assert _connect.read_envelope(r) == (0, b'{"a":1}')
    flags, body = _connect.read_envelope(r)  # type: ignore[misc]
    assert flags == _connect.END_STREAM and json.loads(body) == {"error": {"code": "x"}}
    assert _connect.read_envelope(r) is None


def test_envelope_truncated_and_oversized() -> None:
    with pytest.raises(_connect.ConnectError):
        _connect.read_envelope(io.BytesIO(b"\x00\x00\x00"))
    with pytest.raises(_connect.ConnectError):
        _connect.read_envelope(io.BytesIO(struct.pack(">BI", 0, 10) + b"abc"))
    with pytest.raises(_connect.ConnectError, match="at most"):
        _connect.read_envelope(io.BytesIO(struct.pack(">BI", 0, _connect.MAX_MESSAGE_BYTES + 1)))
    with pytest.raises(_connect.ConnectError, match="compressed"):
        _connect.read_envelope(io.BytesIO(struct.pack(">BI", 1, 2) + b"{}"))


def test_decode_error_details() -> None:
    reason, retry, _ = _connect.decode_error_details([error_info("QUOTA_EXCEEDED"), retry_info(7), {"type": "x.Unknown", "value": "!!"}])
    assert reason == "QUOTA_EXCEEDED" and retry == 7.0


def test_unary_request_json_mapping_and_auth(fake: Fake) -> None:
    sb = {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING", "maxLifetimeSeconds": "300", "exitCode": 3, "tags": ["a"]}
    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(200, {"sandbox": sb})
    c = Client(fake.url, "key123")
    got = sbx.Sandbox.from_id("sb-1", client=c).result()
    assert got.sandbox_id == "sb-1" and got.status == sbx.SandboxStatus.RUNNING and got.returncode == 3
    path, headers, body = fake.requests[-1]
    assert path == "/sbx.v1.SandboxService/Get"
    assert headers["Authorization"] == "Bearer key123"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connect-Protocol-Version"] == "1"
    assert json.loads(body) == {"id": "sb-1"}


def test_create_request_json_mapping(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Create"] = reply_json(200, {"sandbox": {"id": "sb-2", "state": "SANDBOX_STATE_PENDING"}})
    c = Client(fake.url, "k")
    d = sbx.SandboxDefaults(container_image="busybox", tags=("d",), environment_variables={"A": "1", "B": "1"}, max_lifetime_seconds=30)
    sb = sbx.Sandbox.run("sleep", "5", defaults=d, tags=("x", "d"), environment_variables={"B": "2"},
                         resources={"cpu": "500m", "memory": "1Gi"}, mounted_files=[{"path": "/f", "content": "hi"}], client=c)
    assert sb.sandbox_id == "sb-2" and sb.status == sbx.SandboxStatus.PENDING
    req = json.loads(fake.requests[-1][2])
    assert req["image"] == "busybox" and req["command"] == ["sleep", "5"]
    assert req["tags"] == ["d", "x"] and req["env"] == {"A": "1", "B": "2"}
    assert req["maxLifetimeSeconds"] == "30"  # int64 as a string
    assert req["resources"] == {"cpuMillis": "500", "memoryBytes": str(1 << 30)}
    assert req["mountedFiles"] == [{"path": "/f", "content": base64.b64encode(b"hi").decode()}]
    assert req["requestId"]


@pytest.mark.parametrize("status,body,headers,cls,reason", [
    (404, {"code": "not_found", "message": "sandbox sb-x not found", "details": [error_info("SANDBOX_NOT_FOUND")]}, {"Sbx-Reason": "SANDBOX_NOT_FOUND"}, sbx.SandboxNotFoundError, "SANDBOX_NOT_FOUND"),
    (404, {"code": "not_found", "message": "no file", "details": [error_info("FILE_NOT_FOUND")]}, {}, sbx.SandboxFileError, "FILE_NOT_FOUND"),
    (401, {"code": "unauthenticated", "message": "bad key"}, {"Sbx-Reason": "UNAUTHENTICATED"}, sbx.SandboxAuthenticationError, "UNAUTHENTICATED"),
    (429, {"code": "resource_exhausted", "message": "quota", "details": [error_info("QUOTA_EXCEEDED"), retry_info(5)]}, {}, sbx.SandboxResourceExhaustedError, "QUOTA_EXCEEDED"),
    (400, {"code": "failed_precondition", "message": "not running"}, {"Sbx-Reason": "SANDBOX_NOT_RUNNING"}, sbx.SandboxNotRunningError, "SANDBOX_NOT_RUNNING"),
    (400, {"code": "invalid_argument", "message": "bad"}, {"Sbx-Reason": "LIFETIME_OUT_OF_RANGE"}, sbx.SandboxInvalidArgumentError, "LIFETIME_OUT_OF_RANGE"),
    (500, {"code": "internal", "message": "boom"}, {}, sbx.SandboxError, None),
    (502, "<html>bad gateway</html>", {}, sbx.SandboxUnavailableError, None),
])
def test_unary_error_mapping(fake: Fake, status: int, body: Any, headers: Dict[str, str], cls: type, reason: Any) -> None:
    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(status, body, headers)
    with pytest.raises(cls) as ei:
        sbx.Sandbox.from_id("sb-x", client=Client(fake.url, "k")).result()
    assert isinstance(ei.value, sbx.SandboxError)
    assert ei.value.reason == reason
    if reason == "QUOTA_EXCEEDED":
        assert ei.value.retry_delay is not None and ei.value.retry_delay.total_seconds() == 5


def test_retry_after_header_wins(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Delete"] = reply_json(429, {"code": "resource_exhausted", "message": "slow down"}, {"Retry-After": "3"})
    with pytest.raises(sbx.SandboxResourceExhaustedError) as ei:
        sbx.Sandbox.delete("sb-1", client=Client(fake.url, "k")).result()
    assert ei.value.retry_delay is not None and ei.value.retry_delay.total_seconds() == 3


def test_delete_missing_ok(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Delete"] = reply_json(404, {"code": "not_found", "message": "gone"}, {"Sbx-Reason": "SANDBOX_NOT_FOUND"})
    sbx.Sandbox.delete("sb-1", missing_ok=True, client=Client(fake.url, "k")).result()


def _running(fake: Fake) -> sbx.Sandbox:
    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING"}})
    fake.routes["/sbx.v1.SandboxService/Wait"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING"}})
    return sbx.Sandbox.from_id("sb-1", client=Client(fake.url, "k")).result()


def test_server_stream_exec(fake: Fake) -> None:
    sb = _running(fake)
    b64 = lambda s: base64.b64encode(s).decode()  # noqa: E731
    fake.routes["/sbx.v1.SandboxService/Exec"] = reply_stream([
        {"started": {"execId": "ex-1", "pid": 7}},
        {"stdout": b64(b"hello\nwor")}, {"stderr": b64(b"oops\n")}, {"stdout": b64(b"ld\n\xff")},
        {"exit": {"code": 2, "at": "2026-01-01T00:00:00Z"}},
    ], {})
    p = sb.exec(["x"], cwd="/tmp", timeout_seconds=1.5)
    assert list(p.stdout) == ["hello\n", "world\n", "\ufffd"]
    r = p.result()
    assert (r.stdout_bytes, r.stderr, r.returncode, r.command) == (b"hello\nworld\n\xff", "oops\n", 2, ["x"])
    assert p.returncode == 2 and p.poll() == 2 and p.exec_id == "ex-1" and p.pid == 7
    path, headers, body = fake.requests[-1]
    assert headers["Content-Type"] == "application/connect+json"
    flags, msg = _connect.read_envelope(io.BytesIO(body))  # type: ignore[misc]
    assert flags == 0 and json.loads(msg) == {"command": ["x"], "stdin": False, "workingDir": "/tmp", "timeoutSeconds": 2, "sandboxId": "sb-1"}
    with pytest.raises(sbx.SandboxExecutionError) as ei:
        sb.exec(["x"], check=True).result()
    assert ei.value.exec_result is not None and ei.value.exec_result.returncode == 2
    assert asyncio.run(_await(sb.exec(["x"]))).returncode == 2


async def _await(op: Any) -> Any:
    return await op


def test_server_stream_end_error(fake: Fake) -> None:
    sb = _running(fake)
    fake.routes["/sbx.v1.SandboxService/ReadFile"] = reply_stream(
        [], {"error": {"code": "not_found", "message": "read /x: no such file", "details": [error_info("FILE_NOT_FOUND")]},
             "metadata": {"sbx-reason": ["FILE_NOT_FOUND"]}})
    with pytest.raises(sbx.SandboxFileError) as ei:
        sb.read_file("/x").result()
    assert ei.value.reason == "FILE_NOT_FOUND" and ei.value.filepath == "/x"


def test_stream_without_end_message(fake: Fake) -> None:
    sb = _running(fake)

    def h(w: BaseHTTPRequestHandler, body: bytes) -> None:
        out = _connect.envelope({"data": base64.b64encode(b"abc").decode()})
        w.send_response(200)
        w.send_header("Content-Length", str(len(out)))
        w.end_headers()
        w.wfile.write(out)

    fake.routes["/sbx.v1.SandboxService/ReadFile"] = h
    with pytest.raises(sbx.SandboxUnavailableError, match="end-of-stream"):
        sb.read_file("/x").result()


def test_client_stream_write_file(fake: Fake) -> None:
    sb = _running(fake)
    fake.routes["/sbx.v1.SandboxService/WriteFile"] = reply_stream([{"size": "3000000"}], {})
    data = os.urandom(3_000_000)
    sb.write_file("/data/f.bin", data, mode=0o600).result()
    path, headers, body = fake.requests[-1]
    assert headers["Transfer-Encoding"] == "chunked"
    r = io.BytesIO(body)
    msgs = []
    while (env := _connect.read_envelope(r)) is not None:
        msgs.append(json.loads(env[1]))
    assert msgs[0] == {"header": {"sandboxId": "sb-1", "path": "/data/f.bin", "mode": 0o600}}
    chunks = [base64.b64decode(m["data"]) for m in msgs[1:]]
    assert [len(c) for c in chunks] == [1 << 20, 1 << 20, 3_000_000 - (2 << 20)]
    assert b"".join(chunks) == data


def test_connection_refused_is_clear() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(sbx.SandboxConnectionError) as ei:
        sbx.Sandbox.from_id("sb-1", client=Client(f"http://127.0.0.1:{port}", "k")).result()
    assert "cannot reach the sbx server" in str(ei.value) and "sbx serve" in str(ei.value)
    assert ei.value.reason == "SERVER_UNREACHABLE"


def test_config_resolution(tmp_path: Any, monkeypatch: Any) -> None:
    for k in ("SBX_URL", "SBX_API_KEY", "SBX_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sbx.default_credentials_path() == str(tmp_path / ".config" / "sbx" / "credentials")
    assert resolve_config() == ("http://127.0.0.1:7420", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert sbx.default_credentials_path() == str(tmp_path / "xdg" / "sbx" / "credentials")
    monkeypatch.setenv("SBX_CONFIG_DIR", str(tmp_path / "cfg"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "credentials").write_text(json.dumps({"url": "http://127.0.0.1:9999", "api_key": "filekey"}))
    assert resolve_config() == ("http://127.0.0.1:9999", "filekey")
    # A key from the file is only sent to the file's server.
    assert resolve_config(url="http://other:1") == ("http://other:1", "")
    monkeypatch.setenv("SBX_URL", "http://env:2/")
    monkeypatch.setenv("SBX_API_KEY", "envkey")
    assert resolve_config() == ("http://env:2", "envkey")
    assert resolve_config("http://arg:3", "argkey") == ("http://arg:3", "argkey")
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        resolve_config("ftp://x")
    (tmp_path / "cfg" / "credentials").write_text("{not json")
    monkeypatch.delenv("SBX_API_KEY")
    with pytest.raises(sbx.SandboxError, match="not valid JSON"):
        resolve_config()


def test_defaults_with_overrides() -> None:
    d = sbx.SandboxDefaults(tags=("a",), environment_variables={"X": "1"})
    e = d.with_overrides(container_image="busybox", tags=("b",), environment_variables={"Y": "2"})
    assert e.container_image == "busybox" and e.tags == ("a", "b") and e.environment_variables == {"X": "1", "Y": "2"}
    assert d.container_image == "python:3.11" and d.tags == ("a",)
    with pytest.raises(Exception):
        d.container_image = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.with_overrides(nope=1)
    with pytest.raises(ValueError):
        sbx.SandboxDefaults(max_lifetime_seconds=0)


def test_status_values() -> None:
    assert [s.value for s in sbx.SandboxStatus] == ["unspecified", "pending", "creating", "running", "terminating", "completed", "failed", "terminated", "paused"]
    assert sbx.SandboxStatus.from_wire("SANDBOX_STATE_TERMINATED") is sbx.SandboxStatus.TERMINATED
    assert sbx.SandboxStatus.RUNNING == "running"


def test_exception_hierarchy() -> None:
    for cls in (sbx.SandboxNotFoundError, sbx.SandboxNotRunningError, sbx.SandboxTimeoutError, sbx.SandboxFailedError,
                sbx.SandboxTerminatedError, sbx.SandboxExecutionError, sbx.SandboxFileError,
                sbx.SandboxResourceExhaustedError, sbx.SandboxAuthenticationError):
        assert issubclass(cls, sbx.SandboxError)
    assert issubclass(sbx.SandboxTimeoutError, TimeoutError)


def test_operation_result_timeout() -> None:
    import threading as th

    ev = th.Event()
    op = sbx.OperationRef.spawn(ev.wait)
    with pytest.raises(sbx.SandboxTimeoutError):
        op.result(timeout=0.01)
    ev.set()
    assert op.result() is True


def test_connections_are_kept_alive(fake: Fake) -> None:
    svc = "sbx.v1.SandboxService"
    fake.routes[f"/{svc}/Get"] = reply_json(200, {"sandbox": {"id": "sb-1"}})
    fake.routes[f"/{svc}/Exec"] = reply_stream([{"started": {"execId": "e"}}, {"exit": {"code": 0}}], {})
    t = _connect.Transport(fake.url)
    try:
        for _ in range(3):
            assert t.unary(svc, "Get", {"id": "sb-1"})["sandbox"]["id"] == "sb-1"
        assert len(list(t.server_stream(svc, "Exec", {}))) == 2
        t.unary(svc, "Get", {"id": "sb-1"})
        # Five calls, one after the other: one connection.
        assert len(fake.peers) == 5 and len(set(fake.peers)) == 1
        # A stream closed before its end takes its connection with it.
        st = t.server_stream(svc, "Exec", {})
        next(st)
        st.close()
        t.unary(svc, "Get", {"id": "sb-1"})
        assert len(set(fake.peers)) == 2
        # An error answer is not kept alive: the next call dials again.
        fake.routes[f"/{svc}/Delete"] = reply_json(404, {"code": "not_found", "message": "gone"})
        with pytest.raises(_connect.ConnectError):
            t.unary(svc, "Delete", {"id": "x"})
        t.unary(svc, "Get", {"id": "sb-1"})
        assert len(set(fake.peers)) == 3
    finally:
        t.close()


def test_dropped_connection_is_not_reused() -> None:
    a, b = socket.socketpair()
    conn = http.client.HTTPConnection("127.0.0.1", 1)
    conn.sock = a
    try:
        assert not _connect._dropped(conn)
        b.close()  # the server side went away
        assert _connect._dropped(conn)
    finally:
        a.close()


def test_workers_are_reused() -> None:
    done = threading.Event()
    _workers.go(done.set)
    assert done.wait(10)
    deadline = time.monotonic() + 10
    while _workers.idle_workers() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _workers.idle_workers() > 0
    before = threading.active_count()
    again = threading.Event()
    _workers.go(again.set)
    assert again.wait(10)
    assert threading.active_count() == before, "a new thread started although a worker was idle"


def test_exec_on_starting_sandbox_needs_no_wait(fake: Fake) -> None:
    svc = "/sbx.v1.SandboxService/"
    fake.routes[svc + "Get"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_CREATING"}})
    sb = sbx.Sandbox.from_id("sb-1", client=Client(fake.url, "k")).result()
    ok = reply_stream([{"started": {"execId": "e"}}, {"exit": {"code": 0}}], {})
    not_running = reply_stream([], {"error": {"code": "failed_precondition", "message": "sandbox sb-1 is not running",
                                              "details": [error_info("SANDBOX_NOT_RUNNING")]}})
    # A server that holds the exec until the sandbox runs: one call, no Wait.
    fake.routes[svc + "Exec"] = ok
    assert sb.exec(["true"]).result().returncode == 0
    assert [p for p, _, _ in fake.requests if p.endswith(("/Exec", "/Wait"))] == [svc + "Exec"]
    # One that answers SANDBOX_NOT_RUNNING: wait, then the exec once more.
    fake.requests.clear()
    answers = [not_running, ok]
    fake.routes[svc + "Exec"] = lambda w, body: answers.pop(0)(w, body)
    fake.routes[svc + "Wait"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING"}})
    sb2 = sbx.Sandbox.from_id("sb-1", client=Client(fake.url, "k")).result()
    assert sb2.exec(["true"]).result().returncode == 0
    assert [p for p, _, _ in fake.requests if p.endswith(("/Exec", "/Wait"))] == [svc + "Exec", svc + "Wait", svc + "Exec"]
    # A sandbox that failed: the error says so.
    fake.routes[svc + "Exec"] = not_running
    fake.routes[svc + "Wait"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_FAILED", "statusReason": "image pull failed"}})
    sb3 = sbx.Sandbox.from_id("sb-1", client=Client(fake.url, "k")).result()
    with pytest.raises(sbx.SandboxFailedError):
        sb3.exec(["true"]).result()


def test_stop_without_result_finishes_at_exit(fake: Fake) -> None:
    # A script that calls stop() and exits at once: the Stop still goes out.
    import subprocess
    import sys
    import time as _time

    def slow_stop(w: BaseHTTPRequestHandler, body: bytes) -> None:
        _time.sleep(0.5)
        reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_TERMINATED"}})(w, body)

    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(200, {"sandbox": {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING"}})
    fake.routes["/sbx.v1.SandboxService/Stop"] = slow_stop
    script = (
        "import sbx\n"
        "from sbx._client import Client\n"
        f"sb = sbx.Sandbox.from_id('sb-1', client=Client({fake.url!r}, 'k')).result()\n"
        "sb.stop()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert any(p == "/sbx.v1.SandboxService/Stop" for p, _, _ in fake.requests)


def test_resources_disk():
    from sbx._wire import resources_to_wire
    assert resources_to_wire({"disk": "10Gi", "memory": "1Gi"}) == {"diskBytes": str(10 << 30), "memoryBytes": str(1 << 30)}
    assert resources_to_wire({"disk_bytes": 1 << 30}) == {"diskBytes": str(1 << 30)}
