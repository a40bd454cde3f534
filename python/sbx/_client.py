"""Configuration and the Client: where the server is, which key to send, and
the mapping of wire errors to exceptions.

Like the Go SDK: explicit arguments, then SBX_URL / SBX_API_KEY, then the
credentials file that a local ``sbx serve`` writes ($SBX_CONFIG_DIR/credentials,
else $XDG_CONFIG_HOME/sbx/credentials, else ~/.config/sbx/credentials), then
http://127.0.0.1:7420 with no key.
"""

from __future__ import annotations

import json
import os
import random
import ssl
import threading
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from . import exceptions as exc
from ._bulk import Bulk
from ._connect import UNIX_SCHEME, ConnectError, ServerStream, Transport, parse_unix_url, reachable_socket

__all__ = ["Client", "configure", "default_client", "client_for_url", "default_credentials_path", "DEFAULT_URL"]

#: Where the server is looked for when nothing else names it; `sbx serve` listens here by default.
DEFAULT_URL = "http://127.0.0.1:7420"
ENV_URL = "SBX_URL"
ENV_API_KEY = "SBX_API_KEY"
ENV_CONFIG_DIR = "SBX_CONFIG_DIR"
#: A PEM file of the CAs to trust for an https:// server instead of the system's.
ENV_CA_FILE = "SBX_CA_FILE"
_MAX_CREDENTIALS_BYTES = 64 << 10

SANDBOX_SERVICE = "sbx.v1.SandboxService"
SESSION_SERVICE = "sbx.v1.SessionService"


def default_credentials_path() -> str:
    """The file where a local ``sbx serve`` writes its URL and API key."""
    d = os.environ.get(ENV_CONFIG_DIR)
    if d:
        return os.path.join(d, "credentials")
    d = os.environ.get("XDG_CONFIG_HOME")
    if d:
        return os.path.join(d, "sbx", "credentials")
    home = os.path.expanduser("~")
    if not home or home == "~":
        home = "/root"
    return os.path.join(home, ".config", "sbx", "credentials")


def _read_credentials(path: str) -> Optional[Dict[str, str]]:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CREDENTIALS_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise exc.SandboxInvalidArgumentError(f"cannot read the credentials file {path}: {e}", reason="INVALID_CREDENTIALS") from e
    try:
        if len(raw) > _MAX_CREDENTIALS_BYTES:
            raise ValueError("file too large")
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise exc.SandboxInvalidArgumentError(
            f"credentials file {path} is not valid JSON ({e}): remove it and restart `sbx serve`, or set {ENV_API_KEY}",
            reason="INVALID_CREDENTIALS") from e
    return {"url": str(obj.get("url") or ""), "api_key": str(obj.get("api_key") or ""), "unix_socket": str(obj.get("unix_socket") or "")}


def resolve_config(url: Optional[str] = None, api_key: Optional[str] = None, credentials_path: Optional[str] = None) -> Tuple[str, str]:
    """Return (url, api_key) from the arguments, the environment and the credentials file."""
    url = url or os.environ.get(ENV_URL) or ""
    api_key = api_key or os.environ.get(ENV_API_KEY) or ""
    if not url or not api_key:
        creds = _read_credentials(credentials_path or default_credentials_path())
        if creds:
            from_file = not url
            if from_file:
                url = creds["url"]
            # A key from the file belongs to the file's server: use it only there.
            if not api_key and (not creds["url"] or creds["url"].rstrip("/") == url.rstrip("/") or _is_socket_url(url, creds["unix_socket"])):
                api_key = creds["api_key"]
            # The file's server on its Unix socket, when this process can
            # reach it (the Go SDK's unixsock.go); an explicit URL is kept.
            if from_file and url.startswith("http://") and reachable_socket(creds["unix_socket"]):
                url = UNIX_SCHEME + os.path.normpath(creds["unix_socket"])
    url = url or DEFAULT_URL
    if not (url.startswith("http://") or url.startswith("https://") or url.startswith(UNIX_SCHEME)):
        raise exc.SandboxInvalidArgumentError(f"server URL {url!r} must start with http://, https:// or unix://", reason="INVALID_URL")
    try:
        parse_unix_url(url)
    except ValueError as e:
        raise exc.SandboxInvalidArgumentError(str(e), reason="INVALID_URL") from None
    return url.rstrip("/"), api_key


def _ssl_context(ca_file: Optional[str]) -> Optional[ssl.SSLContext]:
    """A TLS context trusting the CAs of ca_file, or None for the system's."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise exc.SandboxInvalidArgumentError(f"CA file {ca_file} (ca_file= or {ENV_CA_FILE}): {e}", reason="INVALID_CA_FILE") from e


def _is_socket_url(url: str, path: str) -> bool:
    """Whether url is the unix:// URL of the socket at path (the credentials file's server)."""
    try:
        p = parse_unix_url(url)
    except ValueError:
        return False
    return p is not None and bool(path) and p == os.path.normpath(path)


# CREATE_RETRIES is how many times a Create refused with CREATE_QUEUE_FULL is
# retried (as the Go SDK's DefaultCreateRetries).
CREATE_RETRIES = 20


class Client:
    """A connection to one sbx server. Sandboxes and sessions use the default
    client unless given one; it is safe to share between threads.

    Args:
        url: Server base URL, e.g. "http://127.0.0.1:7420".
        api_key: API key, sent as a Bearer token.
        credentials_path: Credentials file to read instead of the default one.
        ca_file: PEM file of the certificate authorities to trust for an
            https:// server (default $SBX_CA_FILE, then the system's).
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *, credentials_path: Optional[str] = None,
                 ca_file: Optional[str] = None) -> None:
        self.url, key = resolve_config(url, api_key, credentials_path)
        self._t = Transport(self.url, key, ssl_context=_ssl_context(ca_file or os.environ.get(ENV_CA_FILE) or None))
        self._bulk = Bulk(self._t)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        """Close the connections kept alive between calls; calls in flight
        go on, and later calls open new ones."""
        self._t.close()

    def _map(self, e: ConnectError, **kw: Any) -> exc.SandboxError:
        return exc.from_wire(e.code, e.message, e.reason, e.retry_after, e.metadata, **kw)

    def call(self, service: str, method: str, req: Mapping[str, Any], *, timeout: Optional[float] = None, **errkw: Any) -> Dict[str, Any]:
        """Make a unary call; errors are raised as SandboxError subclasses."""
        try:
            return self._t.unary(service, method, req, timeout)
        except ConnectError as e:
            raise self._map(e, **errkw) from None

    def create(self, service: str, req: Mapping[str, Any]) -> Dict[str, Any]:
        """Call ``service``'s Create, retrying a refusal by the server's
        admission control (CREATE_QUEUE_FULL) after the delay it gives, at
        most CREATE_RETRIES times: such a Create stored nothing, so trying
        again is safe."""
        for attempt in range(CREATE_RETRIES + 1):
            try:
                return self._t.unary(service, "Create", req, None)
            except ConnectError as e:
                if e.reason != "CREATE_QUEUE_FULL" or attempt == CREATE_RETRIES:
                    raise self._map(e) from None
                delay = max(e.retry_after or 0.0, 0.05)
                time.sleep(delay * (1 + random.random() / 5))
        raise AssertionError("unreachable")

    def stream(self, service: str, method: str, req: Mapping[str, Any], **errkw: Any) -> "MappedStream":
        """Open a server stream whose errors are raised as SandboxError subclasses."""
        try:
            return MappedStream(self, self._t.server_stream(service, method, req), errkw)
        except ConnectError as e:
            raise self._map(e, **errkw) from None

    def upload(self, service: str, method: str, messages: Iterable[Mapping[str, Any]], **errkw: Any) -> Dict[str, Any]:
        """Make a client-streaming call."""
        try:
            return self._t.client_stream(service, method, messages)
        except ConnectError as e:
            raise self._map(e, **errkw) from None


    def bulk_usable(self) -> bool:
        """Whether file transfers should try the server's bulk endpoint."""
        return self._bulk.usable()

    def bulk_write(self, sandbox_id: str, path: str, data: memoryview, mode: int) -> None:
        """PUT a file over the bulk endpoint; NoBulk means nothing was
        written and the WriteFile RPC is to be used."""
        try:
            self._bulk.write(sandbox_id, path, data, mode)
        except ConnectError as e:
            raise self._map(e, filepath=path, sandbox_id=sandbox_id) from None

    def bulk_read(self, sandbox_id: str, path: str) -> bytes:
        """GET a file over the bulk endpoint; NoBulk means the ReadFile RPC
        is to be used."""
        try:
            return self._bulk.read(sandbox_id, path)
        except ConnectError as e:
            raise self._map(e, filepath=path, sandbox_id=sandbox_id) from None


class MappedStream:
    """A ServerStream whose errors are SandboxErrors."""

    def __init__(self, client: Client, s: ServerStream, errkw: Dict[str, Any]) -> None:
        self._c, self._s, self._kw = client, s, errkw

    def __iter__(self) -> "MappedStream":
        return self

    def __next__(self) -> Dict[str, Any]:
        try:
            return next(self._s)
        except ConnectError as e:
            raise self._c._map(e, **self._kw) from None

    def close(self) -> None:
        """Close the stream."""
        self._s.close()

    def drain(self, timeout: float) -> None:
        """Read the rest of the stream (see ServerStream.drain)."""
        self._s.drain(timeout)


_default_lock = threading.Lock()
_default: Optional[Client] = None


def configure(url: Optional[str] = None, api_key: Optional[str] = None, *, credentials_path: Optional[str] = None,
              ca_file: Optional[str] = None) -> Client:
    """Set (and return) the default client that Sandbox and Session use."""
    global _default
    c = Client(url, api_key, credentials_path=credentials_path, ca_file=ca_file)
    with _default_lock:
        old, _default = _default, c
    if old is not None:
        old.close()
    return c


_by_url: Dict[str, Client] = {}


def client_for_url(url: str) -> Client:
    """A shared Client for url (CoreWeave's ``base_url=``): one per URL, so
    that sandboxes naming the same server share its connections."""
    with _default_lock:
        c = _by_url.get(url)
        if c is None:
            c = _by_url[url] = Client(url)
        return c


def default_client() -> Client:
    """The default client, configured from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
