"""Integration tests of file transfers over the server's bulk endpoint
(sbx/_bulk.py) against the real `sbx serve`: round trips, modes, errors
equal to those of the RPCs, tenancy, and proof that the bulk path is taken."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
import urllib.request
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import sbx
from sbx import Sandbox
from sbx._client import SANDBOX_SERVICE, Client

MiB = 1 << 20


def rpc_only(server: Any) -> Client:
    """A client of the test server that keeps to the file RPCs."""
    c = Client(server.url, server.api_key)
    c._bulk._absent.set()
    return c


def on(c: Client, sb: Sandbox) -> Sandbox:
    return Sandbox.from_id(sb.sandbox_id or "", client=c).result(timeout=60)


def sha(idle: Sandbox, path: str) -> str:
    return idle.exec(["sha256sum", path]).result(timeout=120).stdout.split()[0]


@pytest.mark.parametrize("size", [0, 1000, MiB - 1, MiB, 8 * MiB, 64 * MiB])
def test_round_trip(server: Any, idle: Sandbox, size: int) -> None:
    data = os.urandom(size)
    path = f"/tmp/rt/{size}.bin"
    idle.write_file(path, data).result(timeout=600)
    assert sha(idle, path) == hashlib.sha256(data).hexdigest()
    back = idle.read_file(path).result(timeout=600)
    assert type(back) is bytes and len(back) == size and back == data


def test_write_replaces_and_accepts_buffers(server: Any, idle: Sandbox) -> None:
    idle.write_file("/tmp/rep.bin", os.urandom(3 * MiB)).result(timeout=120)
    data = bytearray(os.urandom(2 * MiB + 3))
    idle.write_file("/tmp/rep.bin", data).result(timeout=120)
    assert idle.read_file("/tmp/rep.bin").result(timeout=120) == data
    # A memoryview of 4-byte items, and one that is not contiguous.
    words = memoryview(bytes(range(256)) * (MiB // 64)).cast("I")
    idle.write_file("/tmp/words.bin", words).result(timeout=120)
    assert idle.read_file("/tmp/words.bin").result(timeout=120) == words.tobytes()
    strided = memoryview(os.urandom(4 * MiB))[::2]
    idle.write_file("/tmp/strided.bin", strided).result(timeout=120)
    assert idle.read_file("/tmp/strided.bin").result(timeout=120) == strided.tobytes()


@pytest.mark.parametrize("mode,want", [(0, "644"), (0o600, "600"), (0o755, "755"), (0o4750, None)])
def test_mode(server: Any, idle: Sandbox, mode: int, want: Any) -> None:
    got = {}
    for size, kind in ((2 * MiB, "bulk"), (10, "rpc")):
        path = f"/tmp/mode-{kind}-{mode:o}"
        idle.write_file(path, os.urandom(size), mode=mode).result(timeout=120)
        got[kind] = idle.exec(["stat", "-c", "%a", path]).result().stdout.strip()
    # Whatever the server makes of special bits, both paths make the same.
    assert got["bulk"] == got["rpc"] and (want is None or got["bulk"] == want), got


def _same_error(bulk: Callable[[], Any], rpc: Callable[[], Any]) -> BaseException:
    """Run both; they must fail with the same class, code, reason and message."""
    errs: List[BaseException] = []
    for f in (bulk, rpc):
        with pytest.raises(sbx.SandboxError) as ei:
            f()
        errs.append(ei.value)
    b, r = errs
    got = lambda e: (type(e), e.code, e.reason, str(e), getattr(e, "filepath", None))  # noqa: E731
    assert got(b) == got(r)
    return b


def test_errors_equal_the_rpcs(server: Any, idle: Sandbox) -> None:
    rpc = on(rpc_only(server), idle)
    idle.exec(["sh", "-c", "mkdir -p /tmp/adir && echo x > /tmp/afile"], check=True).result()
    big = os.urandom(2 * MiB)
    cases: List[Tuple[str, Any, Any]] = []
    for path in ("/does/not/exist", "/tmp/adir", "relative/path", "/tmp/a\x00b", "/tmp/afile/below", "/" + "x" * 5000):
        e = _same_error(lambda: idle.read_file(path).result(timeout=60), lambda: rpc.read_file(path).result(timeout=60))
        cases.append(("read", path, e))
    for path in ("/tmp/adir", "/tmp/afile/below", "/proc/version", "/tmp/a\x00b"):
        e = _same_error(lambda: idle.write_file(path, big).result(timeout=60), lambda: rpc.write_file(path, big).result(timeout=60))
        cases.append(("write", path, e))
    reasons = {(op, p[:20]): (type(e).__name__, e.reason) for op, p, e in cases}
    assert reasons[("read", "/does/not/exist")] == ("SandboxFileError", "FILE_NOT_FOUND")
    assert reasons[("read", "/tmp/adir")] == ("SandboxFileError", "IS_A_DIRECTORY")
    assert reasons[("write", "/tmp/adir")] == ("SandboxFileError", "IS_A_DIRECTORY")
    assert reasons[("write", "/tmp/afile/below")] == ("SandboxFileError", "NOT_A_DIRECTORY")
    # A relative path is taken from the working dir (/), as W&B's client does.
    assert reasons[("read", "relative/path")] == ("SandboxFileError", "FILE_NOT_FOUND")
    # A refused write left the old file alone.
    assert idle.read_file("/tmp/afile").result() == b"x\n"


def _other_tenant(server: Any) -> Client:
    """A client with a key of a new tenant, made in the server's store as
    internal/auth.NewTenant does (there is no admin API yet)."""
    key = "sbx_" + secrets.token_hex(32)
    tid = "tn-" + secrets.token_hex(8)
    db = sqlite3.connect(str(server.data_dir / "sbx.db"), timeout=30)
    try:
        with db:
            db.execute("INSERT INTO tenants (id, name, max_sandboxes) VALUES (?, ?, 0)", (tid, "pytest-" + tid))
            db.execute("INSERT INTO api_keys (id, tenant_id, hash, created_at) VALUES (?, ?, ?, ?)",
                       ("key-" + secrets.token_hex(6), tid, hashlib.sha256(key.encode()).hexdigest(), time.time_ns()))
    finally:
        db.close()
    return Client(server.url, key)


def test_other_tenant_is_not_found(server: Any, idle: Sandbox) -> None:
    idle.write_file("/tmp/secret", b"s" * (2 * MiB)).result(timeout=60)
    other = _other_tenant(server)
    sid = idle.sandbox_id or ""
    with pytest.raises(sbx.SandboxNotFoundError):
        Sandbox.from_id(sid, client=other).result(timeout=60)
    # The endpoint itself, past the SDK's own checks: as the RPCs answer.
    other_rpc = _other_tenant(server)
    other_rpc._bulk._absent.set()

    def rpc_read() -> None:
        s = other_rpc.stream(SANDBOX_SERVICE, "ReadFile", {"sandboxId": sid, "path": "/tmp/secret"}, filepath="/tmp/secret", sandbox_id=sid)
        try:
            list(s)
        finally:
            s.close()

    def rpc_write() -> None:
        msgs = iter([{"header": {"sandboxId": sid, "path": "/tmp/secret"}}, {"data": "eHg="}])
        other_rpc.upload(SANDBOX_SERVICE, "WriteFile", msgs, filepath="/tmp/secret", sandbox_id=sid)

    e = _same_error(lambda: other.bulk_read(sid, "/tmp/secret"), rpc_read)
    assert isinstance(e, sbx.SandboxNotFoundError) and e.reason == "SANDBOX_NOT_FOUND"
    e = _same_error(lambda: other.bulk_write(sid, "/tmp/secret", memoryview(b"xx" * MiB), 0), rpc_write)
    assert isinstance(e, sbx.SandboxNotFoundError) and e.reason == "SANDBOX_NOT_FOUND"
    assert idle.read_file("/tmp/secret").result() == b"s" * (2 * MiB)
    # A wrong key is refused the same way too.
    bad = Client(server.url, "sbx_" + "0" * 64)
    with pytest.raises(sbx.SandboxAuthenticationError):
        bad.bulk_read(sid, "/tmp/secret")


class RecordingProxy:
    """A TCP forwarder to the server that records the request line of every
    request, including those that follow others on a kept-alive connection
    (found in the byte stream: random request bodies do not spell one)."""

    _REQUEST = re.compile(rb"(?:GET|PUT|POST) /[^\s]* HTTP/1\.1\r\n")

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.lines: List[str] = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.url = "http://127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        up = socket.create_connection(self.target)
        threading.Thread(target=_pump, args=(up, c), daemon=True).start()
        _pump(c, up, self._record)

    def _record(self, data: bytes) -> None:
        for m in self._REQUEST.finditer(data):
            self.lines.append(m.group(0)[:-2].decode("latin-1"))

    def close(self) -> None:
        self.ls.close()


def _pump(src: socket.socket, dst: socket.socket, record: Callable[[bytes], None] = lambda b: None) -> None:
    # record sees the stream with a tail of the previous chunk, so that a
    # request line cut between two reads is found once.
    tail = b""
    try:
        while True:
            b = src.recv(1 << 20)
            if not b:
                break
            window = tail + b
            record(window if not tail else window[_first_new_match_start(tail):])
            tail = window[-512:]
            dst.sendall(b)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _first_new_match_start(tail: bytes) -> int:
    # Matches wholly inside the tail were recorded already: skip past the
    # last complete request line in it.
    last = tail.rfind(b"HTTP/1.1\r\n")
    return last + len(b"HTTP/1.1\r\n") if last >= 0 else 0


@pytest.fixture()
def proxy(server: Any) -> Iterator[RecordingProxy]:
    p = RecordingProxy(server.url[len("http://"):])
    yield p
    p.close()


def _file_rpcs(server: Any) -> int:
    """How many ReadFile and WriteFile calls the server counted (its /metrics)."""
    req = urllib.request.Request(server.url + "/metrics", headers={"Authorization": "Bearer " + server.api_key})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    n = 0
    for m in re.finditer(r'^sbx_api_requests_total\{([^}]*)\} (\S+)$', text, re.M):
        if re.search(r'procedure="SandboxService/(ReadFile|WriteFile)"', m.group(1)):
            n += int(float(m.group(2)))
    return n


def test_bulk_path_is_taken(server: Any, idle: Sandbox, proxy: RecordingProxy) -> None:
    sb = on(Client(proxy.url, server.api_key), idle)
    data = os.urandom(3 * MiB)
    before = _file_rpcs(server)
    sb.write_file("/tmp/proof.bin", data).result(timeout=120)
    assert sb.read_file("/tmp/proof.bin").result(timeout=120) == data
    # The server counted no file RPC (writes of >= 1 MiB and all reads are bulk) ...
    assert _file_rpcs(server) == before
    sid = idle.sandbox_id
    puts = [l for l in proxy.lines if l.startswith(f"PUT /v1/sandboxes/{sid}/file?")]
    gets = [l for l in proxy.lines if l.startswith(f"GET /v1/sandboxes/{sid}/file?")]
    # ... and the proxy saw one PUT and one GET of the bulk endpoint.
    assert len(puts) == 1 and "path=%2Ftmp%2Fproof.bin" in puts[0] and len(gets) == 1, proxy.lines
    assert not any("/WriteFile" in l or "/ReadFile" in l for l in proxy.lines)
    # A small write takes the RPC, counted by the server.
    sb.write_file("/tmp/small", b"tiny").result(timeout=60)
    assert _file_rpcs(server) == before + 1
    assert any(l.startswith("POST /sbx.v1.SandboxService/WriteFile ") for l in proxy.lines)


def test_disk_full_midway(server: Any, idle: Sandbox) -> None:
    # /dev/shm is a 64 MiB tmpfs in the sandbox: the agent fails while the
    # body is still coming. The server's answer must reach the caller.
    rpc = on(rpc_only(server), idle)
    big = os.urandom(80 * MiB)
    got = []
    for sb in (idle, rpc):
        with pytest.raises(sbx.SandboxFileError) as ei:
            sb.write_file("/dev/shm/full.bin", big).result(timeout=300)
        e = ei.value
        # The messages go on differently (the plain path names the agent's
        # temporary file, the descriptor path the errno): compare up to there.
        msg = str(e)
        assert "the sandbox's disk is full" in msg and "agent-file" not in msg, msg
        got.append((type(e), e.code, e.reason, e.filepath, msg.split("the sandbox's disk is full")[0]))
    assert got[0] == got[1] and got[0][2] == "FILE_TOO_LARGE", got
    assert idle.exec(["ls", "-A", "/dev/shm"]).result().stdout == ""
