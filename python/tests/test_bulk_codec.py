"""Unit tests of the bulk file endpoint's client (sbx/_bulk.py) against the
fake server of test_codec: the request it sends, the 100-continue
handshake, error mapping, a body cut short, and the fallback to the RPCs."""

from __future__ import annotations

import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List

import pytest

import sbx
from sbx._client import Client
from test_codec import Fake, _running, reply_json, reply_stream

MiB = 1 << 20


@pytest.fixture()
def fake() -> Any:
    f = Fake()
    yield f
    f.close()


def _query(fake: Fake, method: str) -> List[Dict[str, List[str]]]:
    return [urllib.parse.parse_qs(p.split("?", 1)[1]) for p, _, _ in fake.requests if p.startswith(method + " ")]


def test_bulk_write_sends_raw_body(fake: Fake) -> None:
    sb = _running(fake)
    got: Dict[str, Any] = {}

    def put(w: BaseHTTPRequestHandler, _: bytes) -> None:
        got["body"] = w.rfile.read(int(w.headers["Content-Length"]))
        reply_json(200, {"size": len(got["body"])})(w, b"")

    fake.routes["PUT /v1/sandboxes/sb-1/file"] = put
    data = os.urandom(3 << 20)
    sb.write_file("/data/f b.bin", bytearray(data), mode=0o600).result(timeout=60)
    assert got["body"] == data
    path, headers, _ = [r for r in fake.requests if r[0].startswith("PUT ")][0]
    assert _query(fake, "PUT") == [{"path": ["/data/f b.bin"], "mode": ["600"]}]
    assert headers["Expect"] == "100-continue" and headers["Authorization"] == "Bearer k"
    assert headers["Content-Length"] == str(len(data))
    assert not any(p.endswith("/WriteFile") for p, _, _ in fake.requests)
    # Below 1 MiB the RPC is used.
    fake.routes["/sbx.v1.SandboxService/WriteFile"] = reply_stream([{"size": "5"}], {})
    sb.write_file("/small", b"hello").result(timeout=60)
    assert fake.requests[-1][0] == "/sbx.v1.SandboxService/WriteFile"


def test_bulk_read(fake: Fake) -> None:
    sb = _running(fake)
    data = os.urandom((2 << 20) + 5)

    def get(w: BaseHTTPRequestHandler, _: bytes) -> None:
        w.send_response(200)
        w.send_header("Content-Length", str(len(data)))
        w.end_headers()
        w.wfile.write(data)

    fake.routes["GET /v1/sandboxes/sb-1/file"] = get
    assert sb.read_file("/x").result(timeout=60) == data
    assert _query(fake, "GET") == [{"path": ["/x"]}]
    assert not any(p.endswith("/ReadFile") for p, _, _ in fake.requests)


def test_refused_write_sends_no_body(fake: Fake) -> None:
    sb = _running(fake)
    fake.auto_continue = False
    received: Dict[str, int] = {}
    done = threading.Event()

    def put(w: BaseHTTPRequestHandler, _: bytes) -> None:
        w.close_connection = True
        reply_json(404, {"code": "not_found", "message": "sandbox sb-1 not found"}, {"Sbx-Reason": "SANDBOX_NOT_FOUND", "Connection": "close"})(w, b"")
        w.wfile.flush()
        received["n"] = len(w.rfile.read())  # until the client closes
        done.set()

    fake.routes["PUT /v1/sandboxes/sb-1/file"] = put
    with pytest.raises(sbx.SandboxNotFoundError) as ei:
        sb.write_file("/f", os.urandom(2 << 20)).result(timeout=60)
    assert ei.value.reason == "SANDBOX_NOT_FOUND" and ei.value.sandbox_id == "sb-1"
    assert done.wait(30) and received["n"] == 0


def test_bulk_errors_map_like_rpc(fake: Fake) -> None:
    sb = _running(fake)
    fake.routes["GET /v1/sandboxes/sb-1/file"] = reply_json(
        404, {"code": "not_found", "message": "read /x: no such file"}, {"Sbx-Reason": "FILE_NOT_FOUND"})
    with pytest.raises(sbx.SandboxFileError) as ei:
        sb.read_file("/x").result(timeout=60)
    assert (ei.value.reason, ei.value.filepath, ei.value.message) == ("FILE_NOT_FOUND", "/x", "read /x: no such file")
    fake.routes["GET /v1/sandboxes/sb-1/file"] = reply_json(429, {"code": "resource_exhausted", "message": "busy"}, {"Retry-After": "2"})
    with pytest.raises(sbx.SandboxResourceExhaustedError) as ei2:
        sb.read_file("/x").result(timeout=60)
    assert ei2.value.retry_delay is not None and ei2.value.retry_delay.total_seconds() == 2
    # Not a Connect answer, and not a 404/405: an error, not a fallback.
    fake.routes["GET /v1/sandboxes/sb-1/file"] = reply_json(502, "bad gateway")
    with pytest.raises(sbx.SandboxError) as ei3:
        sb.read_file("/x").result(timeout=60)
    assert ei3.value.reason == "INTERNAL" and "502" in str(ei3.value)


def test_cut_read_is_an_error(fake: Fake) -> None:
    sb = _running(fake)

    def get(w: BaseHTTPRequestHandler, _: bytes) -> None:
        w.close_connection = True
        w.send_response(200)
        w.send_header("Content-Length", "100000")
        w.end_headers()
        w.wfile.write(b"x" * 50000)

    fake.routes["GET /v1/sandboxes/sb-1/file"] = get
    with pytest.raises(sbx.SandboxUnavailableError, match="cut"):
        sb.read_file("/x").result(timeout=60)


def test_fallback_is_remembered(fake: Fake) -> None:
    sb = _running(fake)
    fake.routes["/sbx.v1.SandboxService/WriteFile"] = reply_stream([{"size": "1"}], {})
    fake.routes["/sbx.v1.SandboxService/ReadFile"] = reply_stream([{"data": "YWJj"}], {})
    for _ in range(2):
        sb.write_file("/f", os.urandom(1 << 20)).result(timeout=60)
        assert sb.read_file("/f").result(timeout=60) == b"abc"
    bulk = [p for p, _, _ in fake.requests if p.startswith(("GET ", "PUT "))]
    assert len(bulk) == 1 and bulk[0].startswith("PUT ")  # asked once, then remembered
    assert sum(p.endswith("/WriteFile") for p, _, _ in fake.requests) == 2
    # An https server keeps the RPCs (as the Go SDK does).
    assert not Client("https://127.0.0.1:1", "k").bulk_usable()


def test_no_continue_sends_body_anyway(fake: Fake, monkeypatch: Any) -> None:
    # A server (or proxy) that never answers 100 Continue still gets the body.
    from sbx import _bulk
    monkeypatch.setattr(_bulk, "CONTINUE_TIMEOUT", 0.2)
    sb = _running(fake)
    fake.auto_continue = False
    got: Dict[str, bytes] = {}

    def put(w: BaseHTTPRequestHandler, _: bytes) -> None:
        got["body"] = w.rfile.read(int(w.headers["Content-Length"]))
        reply_json(200, {"size": len(got["body"])})(w, b"")

    fake.routes["PUT /v1/sandboxes/sb-1/file"] = put
    data = os.urandom(MiB)
    sb.write_file("/f", data).result(timeout=60)
    assert got["body"] == data
