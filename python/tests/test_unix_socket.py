"""The API's Unix socket (unix:// URLs, sbx/_connect.py) against the real
`sbx serve`, which serves it at <data-dir>/api.sock: RPCs, exec streams and
bulk transfers over it, the credentials file's socket picked for the
default client, and the errors of a bad or dead socket URL."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

import sbx
from sbx import Sandbox
from sbx._client import Client, resolve_config

MiB = 1 << 20


def sock(server: Any) -> str:
    return str(server.data_dir / "api.sock")


def test_default_client_picks_the_socket(server: Any) -> None:
    # The fixture points the SDK at the credentials file only (as a local
    # user's environment): its socket is reachable, so it is used.
    assert sbx.default_client().url == "unix://" + sock(server)
    # An explicit http:// URL keeps to TCP (and still gets the file's key).
    url, key = resolve_config(server.url)
    assert url == server.url and key == server.api_key
    # The file's socket named as the URL gets the file's key; another socket does not.
    assert resolve_config("unix://" + sock(server)) == ("unix://" + sock(server), server.api_key)
    assert resolve_config("unix:///elsewhere.sock")[1] == ""


def test_rpcs_streams_and_bulk_over_unix_url(server: Any) -> None:
    c = Client("unix://" + sock(server), server.api_key)
    assert c._bulk.usable()
    sb = Sandbox.run(container_image="python:3.11", tags=("pytest-unix",), max_lifetime_seconds=300, client=c)
    try:
        sb.wait(timeout=120)
        assert sb.sandbox_id in [s.sandbox_id for s in Sandbox.list(tags=["pytest-unix"], client=c).result(timeout=60)]
        r = sb.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]).result(timeout=60)
        assert (r.stdout, r.stderr, r.returncode) == ("out\n", "err\n", 3)
        data = os.urandom(8 * MiB + 5)
        sb.write_file("/tmp/u.bin", data).result(timeout=120)
        got = sb.exec(["sha256sum", "/tmp/u.bin"]).result(timeout=60).stdout.split()[0]
        assert got == hashlib.sha256(data).hexdigest()
        assert sb.read_file("/tmp/u.bin").result(timeout=120) == data
        # Both went over the bulk endpoint: the server has it on the socket.
        assert c._bulk.usable()
        with pytest.raises(sbx.SandboxFileError):
            sb.read_file("/tmp/missing.bin").result(timeout=60)
    finally:
        sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result(timeout=60)


def test_bad_key_over_unix_url_is_refused(server: Any) -> None:
    c = Client("unix://" + sock(server), "not-a-key")
    with pytest.raises(sbx.SandboxAuthenticationError):
        Sandbox.list(client=c).result(timeout=60)


def test_unix_url_errors(tmp_path: Any) -> None:
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        Client("unix://relative/api.sock", "k")
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        Client("unix:///" + "d" * 120, "k")
    dead = Client("unix://" + str(tmp_path / "nothing.sock"), "k")
    with pytest.raises(sbx.SandboxConnectionError) as e:
        Sandbox.list(client=dead).result(timeout=60)
    assert e.value.reason == "SERVER_UNREACHABLE"
    assert "nothing.sock" in str(e.value)
