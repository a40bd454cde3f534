"""The server's bulk file endpoint: a file's bytes as one raw HTTP/1.1 body.

``PUT /v1/sandboxes/{id}/file?path=&mode=`` (Content-Length required) and
``GET /v1/sandboxes/{id}/file?path=`` (docs/API.md, internal/server/bulk.go)
have the same auth, tenancy, validation and error reasons as the WriteFile
and ReadFile RPCs, without their 1 MiB chunks, protobuf framing and (in
JSON) base64: the body goes from the caller's buffer to the socket and back
into the result with no copy in between.

The rules are the Go SDK's (files_bulk.go): writes of at least MIN_BYTES and
all reads go here over plain ``http://`` and ``unix://`` URLs; a server that answers a
non-Connect 404 or 405 predates the endpoint, is remembered, and the caller
falls back to the RPCs (NoBulk).
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import threading
import time
import urllib.parse
from typing import Any, Optional

from ._connect import ConnectError, Transport, _read_bounded, error_from_json

__all__ = ["Bulk", "NoBulk", "MIN_BYTES"]

#: The smallest write sent over the bulk endpoint; below it the WriteFile
#: RPC costs no more (the Go SDK's bulkMinBytes).
MIN_BYTES = 1 << 20
#: How long a PUT waits for the server's ``100 Continue`` before it sends
#: the body anyway (a proxy may not pass the interim answer on).
CONTINUE_TIMEOUT = 5.0
#: Largest error body read from the endpoint.
_MAX_ERROR_BYTES = 1 << 20
_PREFIX = "/v1/sandboxes/"
_CODES = frozenset((
    "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
    "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
    "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
    "unauthenticated",
))
_CONTINUE = re.compile(rb"HTTP/1\.[01] 100[ \r]")


class NoBulk(Exception):
    """The server has no bulk file endpoint (or it is not to be used): use the RPCs."""


class Bulk:
    """The bulk endpoint of one Transport's server. Safe for concurrent use:
    every transfer has a connection of its own while it runs (one the
    Transport kept alive, which a finished transfer gives back)."""

    def __init__(self, t: Transport) -> None:
        self._t = t
        # Set once the server showed that it predates the endpoint.
        self._absent = threading.Event()
        # Over https the 100-continue handshake below cannot peek at the
        # TLS stream; the Go SDK keeps https on the RPCs too.
        self._usable = t.url.startswith("http://") or t._unix is not None

    def usable(self) -> bool:
        """Whether transfers should try the endpoint at all."""
        return self._usable and not self._absent.is_set()

    def _target(self, sandbox_id: str, path: str, mode: Optional[int]) -> str:
        try:
            q = {"path": path.encode("utf-8")}
        except UnicodeEncodeError:
            # Not UTF-8: the RPC path gives the server's own INVALID_PATH answer.
            raise NoBulk("the path is not valid UTF-8") from None
        if mode is not None:
            q["mode"] = format(mode, "o").encode()
        return f"{self._t._prefix}{_PREFIX}{urllib.parse.quote(sandbox_id, safe='')}/file?{urllib.parse.urlencode(q)}"

    def _headers(self) -> "dict[str, str]":
        h = {"Accept-Encoding": "identity", "User-Agent": "sbx-python/0.1"}
        if self._t.api_key:
            h["Authorization"] = "Bearer " + self._t.api_key
        return h

    def _open(self, method: str) -> http.client.HTTPConnection:
        if not self.usable():
            raise NoBulk(method)
        # No timeout, as for the streaming RPCs: a transfer takes as long as
        # its size needs (a socket timeout would bound sendall's total time).
        return self._t._conn(None)

    def _fail(self, what: str, e: BaseException) -> ConnectError:
        if isinstance(e, (ConnectionRefusedError, socket.gaierror)):
            return self._t._unreachable(e)
        return ConnectError("unavailable", f"{what}: {e}")

    def _error(self, resp: http.client.HTTPResponse) -> BaseException:
        """The exception for a non-200 answer: the server's Connect error, or
        NoBulk for a server from before the endpoint."""
        try:
            body = _read_bounded(resp, _MAX_ERROR_BYTES)
        except (ConnectError, OSError, http.client.HTTPException):
            body = b""
        try:
            obj: Any = json.loads(body)
            ok = isinstance(obj, dict) and obj.get("code") in _CODES
        except ValueError:
            ok = False
        if not ok:
            if resp.status in (404, 405):
                # Not our endpoint's answer: a server (or proxy) without it.
                self._absent.set()
                return NoBulk(f"HTTP {resp.status}")
            return ConnectError("internal", f"the server answered {resp.status} {resp.reason} to a file transfer", reason="INTERNAL")
        return error_from_json(obj, resp.headers, resp.status)

    def write(self, sandbox_id: str, path: str, data: memoryview, mode: int) -> None:
        """PUT data as the file at path. Raises ConnectError, or NoBulk (nothing
        was written) when the RPCs are to be used instead."""
        target = self._target(sandbox_id, path, mode)
        conn = self._open("PUT")
        try:
            try:
                conn.putrequest("PUT", target, skip_accept_encoding=True)
                for k, v in self._headers().items():
                    conn.putheader(k, v)
                conn.putheader("Content-Type", "application/octet-stream")
                conn.putheader("Content-Length", str(data.nbytes))
                # The server checks the request (auth, sandbox, path) before
                # it takes the body: a refused write sends none of it.
                conn.putheader("Expect", "100-continue")
                conn.endheaders()
            except (OSError, http.client.HTTPException) as e:
                raise self._fail("WriteFile", e) from e
            send_err: Optional[BaseException] = None
            if _await_continue(conn.sock):
                try:
                    conn.send(data)  # sendall from the caller's buffer
                except OSError as e:
                    # The server may have answered (an error) and closed
                    # early: its answer says more than the broken pipe.
                    send_err = e
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise self._fail("WriteFile", send_err or e) from e
            if resp.status != 200:
                raise self._error(resp)
            _read_bounded(resp, _MAX_ERROR_BYTES)
            if send_err is None and resp.isclosed() and not resp.will_close:
                self._t._keep(conn)
                conn = None
        finally:
            if conn is not None:
                conn.close()

    def read(self, sandbox_id: str, path: str) -> bytes:
        """GET the file at path. Raises ConnectError, or NoBulk when the RPCs
        are to be used instead. A body cut short is an error, never a shorter file."""
        target = self._target(sandbox_id, path, None)
        conn = self._open("GET")
        try:
            try:
                conn.request("GET", target, headers=self._headers())
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise self._fail("ReadFile", e) from e
            if resp.status != 200:
                raise self._error(resp)
            try:
                # With a Content-Length, http.client reads straight into one
                # bytes object of that size (IncompleteRead if cut short);
                # a chunked body fails the same way without its last chunk.
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise ConnectError("unavailable", f"the file transfer was cut: {e!r}") from e
            if resp.isclosed() and not resp.will_close:
                self._t._keep(conn)
                conn = None
            return data
        finally:
            if conn is not None:
                conn.close()


def _await_continue(sock: Optional[socket.socket]) -> bool:
    """Wait for the server's interim ``100 Continue`` to a request with
    ``Expect: 100-continue`` and consume it. True: send the body (it came, or
    none came in time); False: the server gave its final answer already,
    which http.client then reads.

    The interim answer is read from the socket with MSG_PEEK, so that not a
    byte of the final answer is taken from http.client's reader.
    """
    if sock is None:
        return True
    deadline = time.monotonic() + CONTINUE_TIMEOUT
    head = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        if not select.select([sock], [], [], left)[0]:
            return True
        prev = head
        try:
            head = sock.recv(1024, socket.MSG_PEEK)
        except OSError:
            return False  # getresponse reports it
        if not head:
            return False
        if len(head) >= 13 and not _CONTINUE.match(head):
            return False
        end = head.find(b"\r\n\r\n")
        if end >= 0 and _CONTINUE.match(head):
            _discard(sock, end + 4)
            return True
        if head == prev:
            # Part of the answer is here, the rest in flight: select would
            # not wait, so wait a little before peeking again.
            time.sleep(0.001)


def _discard(sock: socket.socket, n: int) -> None:
    """Read and drop exactly n bytes (already known to be there) from sock."""
    while n > 0:
        got = sock.recv(n)
        if not got:
            return
        n -= len(got)
