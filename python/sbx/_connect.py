"""The Connect protocol (connectrpc.com) over HTTP/1.1 with JSON, standard library only.

Unary calls POST the JSON form of the request with ``Content-Type:
application/json``; errors come back as a JSON body ``{"code", "message",
"details"}`` with a non-200 status. Streaming calls use ``application/connect+json``
and enveloped messages: one flag byte, a 4-byte big-endian length, then the
JSON message; flag 0x02 marks the end-of-stream message, which carries the
error, if any, and the trailers.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import ssl
import stat
import struct
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from . import exceptions as exc

__all__ = ["Transport", "ConnectError", "envelope", "read_envelope", "decode_error_details", "UNIX_SCHEME", "parse_unix_url", "reachable_socket"]

#: A server URL of this form, ``unix:///var/lib/sbx/api.sock`` (Docker's),
#: names the API's Unix socket that ``sbx serve`` serves beside TCP for
#: clients on the same machine (the Go SDK's unixsock.go).
UNIX_SCHEME = "unix://"
#: Longest socket path a Unix address holds.
_MAX_SOCKET_PATH = 107

#: Flag of the end-of-stream envelope.
END_STREAM = 0x02
#: Flag of a compressed envelope (we never ask for compression).
COMPRESSED = 0x01
#: Largest message we accept from the server: a 1 MiB chunk as base64 JSON
#: is ~1.4 MiB; the server's own limit is 16 MiB.
MAX_MESSAGE_BYTES = 16 << 20
#: Largest unary response or error body we read.
MAX_UNARY_BYTES = 64 << 20

# HTTP status -> Connect code, for errors that did not come from a Connect
# handler (a proxy, a 404 from a wrong URL).
_HTTP_TO_CODE = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    408: "deadline_exceeded",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}

_ERROR_INFO = "google.rpc.ErrorInfo"
_RETRY_INFO = "google.rpc.RetryInfo"


class ConnectError(Exception):
    """A Connect error as it came off the wire, before it is mapped to a SandboxError."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        reason: Optional[str] = None,
        retry_after: Optional[float] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_after = retry_after
        self.metadata: Dict[str, str] = dict(metadata or {})


def envelope(msg: Mapping[str, Any], flags: int = 0) -> bytes:
    """Return msg as one enveloped Connect streaming message."""
    body = json.dumps(msg, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(body)) + body


def _read_exact(r: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = r.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def read_envelope(r: Any) -> Optional[Tuple[int, bytes]]:
    """Read one envelope from the file-like r: (flags, payload), or None at a clean EOF."""
    head = _read_exact(r, 5)
    if not head:
        return None
    if len(head) < 5:
        raise ConnectError("unavailable", "the server closed the stream in the middle of a message header")
    flags, n = struct.unpack(">BI", head)
    if n > MAX_MESSAGE_BYTES:
        raise ConnectError("resource_exhausted", f"the server sent a {n}-byte message; the client accepts at most {MAX_MESSAGE_BYTES}")
    body = _read_exact(r, n)
    if len(body) < n:
        raise ConnectError("unavailable", "the server closed the stream in the middle of a message")
    if flags & COMPRESSED:
        raise ConnectError("internal", "the server sent a compressed message although the client asked for none")
    return flags, body


def _read_bounded(resp: Any, limit: int) -> bytes:
    """Read a whole response body, failing beyond limit bytes. (read(limit) would
    allocate limit bytes up front on older Pythons.)"""
    buf = bytearray()
    while True:
        chunk = resp.read(min(1 << 20, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise ConnectError("resource_exhausted", f"response larger than {limit} bytes")


def _varint(b: bytes, i: int) -> Tuple[int, int]:
    v = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("bad varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def _proto_fields(b: bytes) -> Dict[int, List[Any]]:
    """Decode a protobuf message's top-level fields (varints and length-delimited only)."""
    out: Dict[int, List[Any]] = {}
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type")
        out.setdefault(num, []).append(v)
    return out


def _b64(s: str) -> bytes:
    s = s.replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4))


def decode_error_details(details: Any) -> Tuple[Optional[str], Optional[float], Dict[str, str]]:
    """Return (reason, retry delay in seconds, ErrorInfo metadata) from Connect error details.

    Each detail is {"type": "google.rpc.ErrorInfo", "value": base64 protobuf}; the
    two types we know are decoded by hand, the rest ignored.
    """
    reason: Optional[str] = None
    retry: Optional[float] = None
    meta: Dict[str, str] = {}
    if not isinstance(details, list):
        return reason, retry, meta
    for d in details:
        if not isinstance(d, dict):
            continue
        try:
            t = str(d.get("type", "")).rsplit("/", 1)[-1]
            fields = _proto_fields(_b64(str(d.get("value", ""))))
            if t == _ERROR_INFO:
                if 1 in fields and reason is None:
                    reason = fields[1][0].decode("utf-8", "replace")
                for entry in fields.get(3, []):  # map<string, string> metadata
                    kv = _proto_fields(entry)
                    meta[kv.get(1, [b""])[0].decode()] = kv.get(2, [b""])[0].decode()
            elif t == _RETRY_INFO and 1 in fields and retry is None:
                dur = _proto_fields(fields[1][0])
                retry = dur.get(1, [0])[0] + dur.get(2, [0])[0] / 1e9
        except (ValueError, IndexError, UnicodeDecodeError, AttributeError):
            continue  # a detail we cannot read is not worth failing the call over
    return reason, retry, meta


def _header_reason(headers: Any) -> Tuple[Optional[str], Optional[float]]:
    reason = headers.get("sbx-reason") if headers is not None else None
    retry: Optional[float] = None
    ra = headers.get("retry-after") if headers is not None else None
    if ra:
        try:
            retry = float(ra)
        except ValueError:
            retry = None
    return reason or None, retry


def error_from_json(obj: Any, headers: Any = None, http_status: int = 0) -> ConnectError:
    """Build a ConnectError from a Connect error JSON object and the response headers/trailers."""
    if not isinstance(obj, dict):
        obj = {}
    code = str(obj.get("code") or _HTTP_TO_CODE.get(http_status, "unknown"))
    message = str(obj.get("message") or "")
    reason, retry, meta = decode_error_details(obj.get("details"))
    h_reason, h_retry = _header_reason(headers)
    return ConnectError(code, message, reason=h_reason or reason, retry_after=retry if retry is not None else h_retry, metadata=meta)


class _Trailers:
    """Case-insensitive view of the end-of-stream message's metadata."""

    def __init__(self, meta: Any) -> None:
        self._m: Dict[str, str] = {}
        if isinstance(meta, dict):
            for k, v in meta.items():
                if isinstance(v, list) and v:
                    self._m[str(k).lower()] = str(v[0])

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self._m.get(key.lower(), default)


#: How many kept-alive connections a Transport holds, and for how long.
_MAX_IDLE = 8
_IDLE_FOR = 30.0


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (or has data it
    should not have): its socket is readable, or it has none."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        r, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(r)


class ServerStream:
    """An open server-streaming call: iterate it for the response messages (dicts)."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        release: Optional[Callable[[http.client.HTTPConnection], None]] = None,
    ) -> None:
        self._conn = conn
        self._resp = resp
        self._done = False
        # release takes the connection back for another call once the
        # stream ended cleanly (see _end).
        self._release = release

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._done:
            raise StopIteration
        try:
            env = read_envelope(self._resp)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ConnectError("unavailable", f"the stream broke: {e}") from e
        except ConnectError:
            self.close()
            raise
        if env is None:
            self.close()
            raise ConnectError("unavailable", "the server ended the stream without an end-of-stream message")
        flags, body = env
        try:
            obj = json.loads(body) if body else {}
        except ValueError as e:
            self.close()
            raise ConnectError("internal", f"the server sent a message that is not JSON: {e}") from e
        if flags & END_STREAM:
            self._end()
            if isinstance(obj, dict) and obj.get("error"):
                raise error_from_json(obj["error"], _Trailers(obj.get("metadata")))
            raise StopIteration
        if not isinstance(obj, dict):
            self.close()
            raise ConnectError("internal", "the server sent a message that is not a JSON object")
        return obj

    def _end(self) -> None:
        """The end-of-stream message arrived: read the (empty) rest of the
        response, and hand the connection back for another call if the
        server keeps it open; else close it."""
        if self._done:
            return
        if self._release is not None:
            try:
                rest = self._resp.read(1)
            except (OSError, http.client.HTTPException):
                rest = b"?"
            if not rest and self._resp.isclosed() and not self._resp.will_close:
                self._done = True
                self._release(self._conn)
                return
        self.close()

    def drain(self, timeout: float) -> None:
        """Read what is left of a stream whose last message of interest came
        (an exec's exit: its end-of-stream follows at once), for at most
        timeout seconds, so that its connection serves the next call; a
        stream that does not end by then, or sends more, is closed."""
        if self._done:
            return
        sock = self._conn.sock
        try:
            if sock is not None:
                sock.settimeout(timeout)
            while not self._done:
                next(self)
        except StopIteration:
            return
        except (ConnectError, OSError):
            pass
        self.close()

    def close(self) -> None:
        """Close the connection; the call ends for the server too."""
        if self._done:
            return
        self._done = True
        try:
            # Shut the socket down first: closing a response mid-body would
            # otherwise try to drain the rest of a never-ending stream.
            if self._conn.sock is not None:
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()


def reachable_socket(path: str) -> bool:
    """Whether path is a socket this process may connect to (write permission
    on it, search on its directories), without connecting."""
    if not path or not path.startswith("/") or len(path.encode()) > _MAX_SOCKET_PATH:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and os.access(path, os.W_OK)


def parse_unix_url(url: str) -> Optional[str]:
    """The socket path of a ``unix://`` URL, None for other URLs; ValueError
    for a ``unix://`` URL without a usable absolute path."""
    if not url.startswith(UNIX_SCHEME):
        return None
    path = url[len(UNIX_SCHEME):]
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError(f"server URL {url!r}: a Unix-socket URL is unix:// and an absolute path, e.g. unix:///var/lib/sbx/api.sock")
    path = os.path.normpath(path)
    if len(path.encode()) > _MAX_SOCKET_PATH:
        raise ValueError(f"server URL {url!r}: the socket path is longer than {_MAX_SOCKET_PATH} bytes, which a Unix address cannot hold")
    return path


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to the API's Unix socket. Requests name the
    host "localhost", which routes to the API, never to a published port."""

    def __init__(self, path: str, timeout: Any) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                s.settimeout(self.timeout)
            s.connect(self._path)
            # A Unix socket's send buffer is all a write has in flight
            # (208 KiB by default): a larger one moves an upload in fewer
            # steps (the kernel caps it at net.core.wmem_max).
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            except OSError:
                pass
        except (FileNotFoundError, PermissionError) as e:
            # No server there (or not ours to reach): as a refused TCP
            # connection, the server is unreachable.
            s.close()
            raise ConnectionRefusedError(e.errno, f"{e.strerror}: {self._path}") from e
        except BaseException:
            s.close()
            raise
        self.sock = s


class Transport:
    """Makes Connect calls to one server. Safe for concurrent use: every call has its own connection."""

    def __init__(self, url: str, api_key: Optional[str] = None, *, unary_timeout: float = 120.0, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self._unix = parse_unix_url(url)
        if self._unix is not None:
            self.url = UNIX_SCHEME + self._unix
            self._https = False
            self._host, self._port, self._prefix = "localhost", 80, ""
        else:
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError(f"server URL {url!r} must look like http://host:port or unix:///path/to/api.sock")
            self.url = url.rstrip("/")
            self._https = u.scheme == "https"
            self._host = u.hostname
            self._port = u.port or (443 if self._https else 80)
            self._prefix = u.path.rstrip("/")
        self.api_key = api_key or None
        self.unary_timeout = unary_timeout
        self._ssl = ssl_context
        self._idle: List[Tuple[http.client.HTTPConnection, float]] = []
        self._idle_lock = threading.Lock()

    def _new_conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixHTTPConnection(self._unix, timeout)
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        """A kept-alive connection from an earlier call, or a new one.

        Reusing connections spares each call a TCP handshake and leaves no
        socket in TIME_WAIT per call (thousands of calls a second would
        otherwise run a host out of ephemeral ports). A kept connection
        that the server closed meanwhile (its socket is readable while
        idle) is dropped before use, so a request is never sent on it.
        """
        now = time.monotonic()
        while True:
            with self._idle_lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since < _IDLE_FOR and not _dropped(conn):
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn
            conn.close()
        return self._new_conn(timeout)

    def _keep(self, conn: http.client.HTTPConnection) -> None:
        """Keep conn, whose last response was read to its end, for a later call."""
        with self._idle_lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        """Close the kept-alive connections; calls in flight go on."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _headers(self, content_type: str) -> Dict[str, str]:
        h = {
            "Content-Type": content_type,
            "Connect-Protocol-Version": "1",
            "Accept-Encoding": "identity",
            "User-Agent": "sbx-python/0.1",
        }
        if self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        return h

    def _unreachable(self, e: BaseException) -> ConnectError:
        return ConnectError("unavailable", f"cannot reach the sbx server at {self.url} ({e})", reason=exc.REASON_SERVER_UNREACHABLE)

    def _error_response(self, resp: http.client.HTTPResponse) -> ConnectError:
        try:
            body = _read_bounded(resp, MAX_UNARY_BYTES)
        except ConnectError:
            body = b""
        try:
            obj = json.loads(body) if body else {}
        except ValueError:
            obj = {"message": f"HTTP {resp.status}: {body[:200].decode('utf-8', 'replace')}"}
        return error_from_json(obj, resp.headers, resp.status)

    def unary(self, service: str, method: str, req: Mapping[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Call a unary method and return the response message as a dict."""
        conn = self._conn(timeout if timeout is not None else self.unary_timeout)
        try:
            try:
                conn.request("POST", f"{self._prefix}/{service}/{method}", body=json.dumps(req).encode(), headers=self._headers("application/json"))
                resp = conn.getresponse()
            except (ConnectionError, socket.gaierror) as e:
                raise self._unreachable(e) from e
            except socket.timeout as e:
                raise ConnectError("deadline_exceeded", f"the server did not answer {method} in time") from e
            except (OSError, http.client.HTTPException) as e:
                raise ConnectError("unavailable", f"{method}: {e}") from e
            if resp.status != 200:
                raise self._error_response(resp)
            body = _read_bounded(resp, MAX_UNARY_BYTES)
            if resp.isclosed() and not resp.will_close:
                self._keep(conn)
                conn = None
            try:
                obj = json.loads(body) if body else {}
            except ValueError as e:
                raise ConnectError("internal", f"{method}: the response is not JSON: {e}") from e
            return obj if isinstance(obj, dict) else {}
        finally:
            if conn is not None:
                conn.close()

    def server_stream(self, service: str, method: str, req: Mapping[str, Any], timeout: Optional[float] = None) -> ServerStream:
        """Open a server-streaming call; the caller iterates (and closes) the result."""
        conn = self._conn(timeout)
        try:
            conn.request("POST", f"{self._prefix}/{service}/{method}", body=envelope(req), headers=self._headers("application/connect+json"))
            resp = conn.getresponse()
        except (ConnectionError, socket.gaierror) as e:
            conn.close()
            raise self._unreachable(e) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ConnectError("unavailable", f"{method}: {e}") from e
        if resp.status != 200:
            try:
                raise self._error_response(resp)
            finally:
                conn.close()
        return ServerStream(conn, resp, self._keep)

    def client_stream(self, service: str, method: str, messages: Iterable[Mapping[str, Any]], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send messages as a client stream (chunked) and return the single response message."""
        conn = self._conn(timeout)
        try:
            body = (envelope(m) for m in messages)
            send_err: Optional[BaseException] = None
            try:
                conn.request("POST", f"{self._prefix}/{service}/{method}", body=body, headers=self._headers("application/connect+json"))
            except (ConnectionError, socket.gaierror) as e:
                if isinstance(e, ConnectionRefusedError) or isinstance(e, socket.gaierror):
                    raise self._unreachable(e) from e
                # The server may have answered (an error) and closed early:
                # its answer says more than the broken pipe.
                send_err = e
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise ConnectError("unavailable", f"{method}: {send_err or e}") from e
            if resp.status != 200:
                raise self._error_response(resp)
            out: Optional[Dict[str, Any]] = None
            for msg in ServerStream(conn, resp):
                out = msg
            if out is None:
                raise ConnectError("internal", f"{method}: the server sent no response message")
            return out
        finally:
            conn.close()
