"""The SDK over https: a CA file (ca_file= or SBX_CA_FILE) makes it trust a
server whose certificate a private CA signed, and without it the server is
refused. The server is a tiny Connect stub over TLS (http.server + ssl); the
Go e2e test TestTLS covers the real `sbx serve --tls-cert`."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Tuple

import pytest

import sbx
from sbx._client import Client


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        ok = self.path == "/sbx.v1.SandboxService/List" and self.headers.get("Authorization") == "Bearer k"
        body = json.dumps({} if ok else {"code": "unauthenticated", "message": "bad request"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[Tuple[str, str]]:
    """An https Connect stub on 127.0.0.1 with a self-signed certificate; yields (url, ca_file)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate (apt-get install openssl)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"https://127.0.0.1:{srv.server_address[1]}", str(cert)
    finally:
        srv.shutdown()
        srv.server_close()


def test_ca_file(tls_server: Tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = tls_server
    monkeypatch.delenv("SBX_CA_FILE", raising=False)
    c = Client(url, "k", ca_file=ca)
    assert c.call("sbx.v1.SandboxService", "List", {}) == {}
    c.close()
    # From the environment.
    monkeypatch.setenv("SBX_CA_FILE", ca)
    c = Client(url, "k")
    assert c.call("sbx.v1.SandboxService", "List", {}) == {}
    c.close()


def test_untrusted_server_is_refused(tls_server: Tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = tls_server
    monkeypatch.delenv("SBX_CA_FILE", raising=False)
    c = Client(url, "k")
    with pytest.raises(sbx.SandboxError) as e:
        c.call("sbx.v1.SandboxService", "List", {})
    assert "certificate" in str(e.value).lower()
    c.close()


def test_bad_ca_file(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    for path in (str(bad), str(tmp_path / "missing.pem")):
        with pytest.raises(sbx.SandboxInvalidArgumentError) as e:
            Client("https://127.0.0.1:1", "k", ca_file=path)
        assert e.value.reason == "INVALID_CA_FILE"
