"""Session: sandboxes that share defaults and end together.

The session lives on the server with a lease that a background thread
renews; if this process dies, the server closes the session when the lease
runs out and stops its sandboxes, so nothing leaks.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from . import exceptions as exc
from ._client import SESSION_SERVICE, Client, client_for_url, default_client
from ._function import RemoteFunction
from ._sandbox import Sandbox
from ._network import network_to_wire
from ._secrets import secrets_to_wire
from ._wire import ceil_seconds, resources_to_wire
from ._types import OperationRef, SandboxDefaults, SandboxStatus

__all__ = ["Session"]

#: Sessions still open; closed at interpreter exit so that a script that
#: forgot close() does not leave its sandboxes running for a whole lease.
_open_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()


@atexit.register
def _close_open_sessions() -> None:
    for s in list(_open_sessions):
        try:
            s._close_sync(timeout=15)  # no new threads at interpreter exit
        except Exception:  # noqa: BLE001 - best effort at exit; the lease covers the rest
            pass


class Session:
    """A group of sandboxes with shared defaults, closed together.

    ``session.sandbox()`` returns a sandbox that is created on first use.
    ``close()`` (or leaving the ``with`` / ``async with`` block) stops every
    sandbox of the session. The server-side session is opened lazily, at the
    first sandbox created.

    Args:
        defaults: Defaults of the session's sandboxes: SandboxDefaults, or a
            mapping of its fields (``SandboxDefaults.from_dict``).
        report_to: CoreWeave's metrics reporting (to W&B); accepted, sbx reports nothing.
        lease_seconds: How long the server keeps the session without a heartbeat
            (None: the server's default, 60 s). Heartbeats go out every third of it.
        client: The Client to use (default: ``defaults.base_url``'s, else the one
            configured from the environment).
    """

    def __init__(
        self,
        defaults: Optional[Union[SandboxDefaults, Mapping[str, Any]]] = None,
        report_to: Optional[Sequence[str]] = None,
        *,
        lease_seconds: Optional[int] = None,
        client: Optional[Client] = None,
    ) -> None:
        if defaults is None or isinstance(defaults, SandboxDefaults):
            self.defaults = defaults or SandboxDefaults()
        elif isinstance(defaults, Mapping):
            self.defaults = SandboxDefaults.from_dict(defaults)
        else:
            raise TypeError(f"defaults must be SandboxDefaults, a mapping or None, got {type(defaults).__name__}")
        self.report_to = list(report_to) if report_to is not None else None
        if client is None and self.defaults.base_url:
            client = client_for_url(self.defaults.base_url)
        self._lease_req = lease_seconds
        self._client_ = client
        self._lock = threading.RLock()
        self._id: Optional[str] = None
        self._lease = 60.0
        self._closed = False
        self._close_error: Optional[exc.SandboxError] = None
        self._stop = threading.Event()
        self._hb: Optional[threading.Thread] = None
        self._sandboxes: List[Sandbox] = []
        self._adopted: List[Sandbox] = []

    @property
    def _client(self) -> Client:
        if self._client_ is None:
            self._client_ = default_client()
        return self._client_

    @property
    def session_id(self) -> Optional[str]:
        """The server's session id ("ss-..."), or None before the first sandbox was created."""
        return self._id

    @property
    def closed(self) -> bool:
        """Whether the session is closed (by close(), or by the server when its lease ran out)."""
        return self._closed

    @property
    def sandbox_count(self) -> int:
        """How many sandboxes this session tracks (made by ``sandbox()``, or adopted)."""
        with self._lock:
            return len(self._sandboxes) + len(self._adopted)

    def log_metrics(self, step: Optional[int] = None, *, reset: bool = True) -> bool:
        """CoreWeave logs sandbox metrics to W&B here; sbx has no W&B run to log
        to, so this logs nothing and returns False."""
        return False

    def get_metrics(self) -> Dict[str, Any]:
        """CoreWeave's accumulated W&B metrics; sbx keeps none ({})."""
        return {}

    def __repr__(self) -> str:
        return f"<Session {self._id or '(not opened)'}{' closed' if self._closed else ''}>"

    # ---- server session and heartbeat --------------------------------------------

    def _ensure_open(self) -> str:
        with self._lock:
            if self._closed:
                raise self._close_error or exc.SessionClosedError("the session is closed: open a new one", reason="SESSION_CLOSED")
            if self._id is not None:
                return self._id
            d = self.defaults
            wd: Dict[str, Any] = {
                "image": d.container_image,
                "tags": list(d.tags),
                "env": dict(d.environment_variables),
            }
            if d.max_lifetime_seconds is not None:
                wd["maxLifetimeSeconds"] = str(ceil_seconds(d.max_lifetime_seconds))
            res = resources_to_wire(d.resources)
            if res:
                wd["resources"] = res
            net = network_to_wire(d.network, "defaults.network")
            if net is not None:
                wd["network"] = net
            if d.secrets:
                wd["secrets"] = secrets_to_wire(d.secrets)
            req: Dict[str, Any] = {"defaults": wd}
            if self._lease_req:
                req["leaseSeconds"] = str(int(self._lease_req))
            resp = self._client.call(SESSION_SERVICE, "Create", req)
            s = resp.get("session") or {}
            self._id = s.get("id")
            self._lease = float(s.get("leaseSeconds") or 60)
            _open_sessions.add(self)
            self._hb = threading.Thread(target=self._heartbeat, name="sbx-session-heartbeat", daemon=True)
            self._hb.start()
            return self._id or ""

    def _heartbeat(self) -> None:
        interval = max(self._lease / 3.0, 0.5)
        while not self._stop.wait(interval):
            try:
                self._client.call(SESSION_SERVICE, "Heartbeat", {"id": self._id}, timeout=max(interval, 5.0))
            except exc.SessionClosedError as e:
                # The server closed it (the lease ran out while we could not
                # reach it): it will not come back.
                with self._lock:
                    self._closed = True
                    self._close_error = e
                return
            except exc.SandboxError:
                continue  # transient: try again at the next tick

    def _track(self, sb: Sandbox) -> None:
        with self._lock:
            if not any(s is sb for s in self._sandboxes):
                self._sandboxes.append(sb)

    # ---- sandboxes ----------------------------------------------------------------

    def sandbox(self, *args: str, **overrides: Any) -> Sandbox:
        """Return a sandbox of this session, created on first use (exec, read_file,
        write_file, wait, start). Keyword arguments are those of ``Sandbox(...)``
        and override the session's defaults (tags and environment merge)."""
        if self._closed:
            raise self._close_error or exc.SessionClosedError("the session is closed: open a new one", reason="SESSION_CLOSED")
        d = overrides.pop("defaults", None) or self.defaults
        overrides.setdefault("client", self._client_)
        sb = Sandbox(*args, defaults=d, _session=self, **overrides)
        self._track(sb)
        return sb

    def list(
        self,
        tags: Optional[Sequence[str]] = None,
        status: Optional[Union[str, SandboxStatus, Sequence[Union[str, SandboxStatus]]]] = None,
        show_terminated: bool = False,
        *,
        adopt: bool = False,
        runner_ids: Optional[Sequence[str]] = None,
    ) -> OperationRef[List[Sandbox]]:
        """List sandboxes carrying the session defaults' tags plus tags (as
        CoreWeave's Session.list: sandboxes of this session, and of earlier runs
        with the same defaults; with no tags at all, every sandbox), in status.
        With adopt, ``close()`` stops the ones found too. runner_ids is ignored."""
        merged = self.defaults.merge_tags(tags)
        op = Sandbox.list(tags=merged, status=status, show_terminated=show_terminated, client=self._client)
        if not adopt:
            return op

        def run() -> List[Sandbox]:
            found = op.result()
            for sb in found:
                if self._id is None or sb.session_id != self._id:  # the server stops its own at close
                    self.adopt(sb)
            return found

        return OperationRef.spawn(run, name="sbx-list")

    def from_id(self, sandbox_id: str, *, adopt: bool = True) -> OperationRef[Sandbox]:
        """Look up a sandbox by id; with adopt (the default), close() stops it too."""
        op = Sandbox.from_id(sandbox_id, client=self._client)
        if not adopt:
            return op

        def run() -> Sandbox:
            sb = op.result()
            self.adopt(sb)
            return sb

        return OperationRef.spawn(run, name="sbx-get")

    def adopt(self, sandbox: Sandbox) -> Sandbox:
        """Make close() stop sandbox too (it keeps its own lifetime; the server lease does not cover it)."""
        with self._lock:
            if self._closed:
                raise exc.SessionClosedError("the session is closed: open a new one", reason="SESSION_CLOSED")
            if sandbox.sandbox_id is None and all(sandbox is not s for s in self._sandboxes):
                raise ValueError("cannot adopt a sandbox that was never started: start it, or make it with session.sandbox()")
            known = [s.sandbox_id for s in self._sandboxes + self._adopted if s.sandbox_id]
            if all(sandbox is not s for s in self._sandboxes + self._adopted) and sandbox.sandbox_id not in known:
                self._adopted.append(sandbox)
        return sandbox

    def function(self, **sandbox_kwargs: Any) -> Callable[[Callable[..., Any]], RemoteFunction[Any]]:
        """Decorator: run the function in a fresh sandbox of this session per call
        (``fn.remote(*args)`` -> operation, ``fn.map([...])``, ``fn.local(...)``).
        Keyword arguments are those of ``session.sandbox()`` (container_image,
        resources, mounted_files, environment_variables, ...). See RemoteFunction
        for what a function may use: JSON arguments, results and globals."""

        def wrap(fn: Callable[..., Any]) -> RemoteFunction[Any]:
            return RemoteFunction(fn, self, sandbox_kwargs)

        return wrap

    # ---- close ----------------------------------------------------------------------

    def close(self) -> OperationRef[None]:
        """Close the session: the server stops every sandbox of it; adopted sandboxes are
        stopped too; sandboxes never started never will be. Closing twice is harmless."""
        return OperationRef.spawn(self._close_sync, name="sbx-session-close")

    def _close_sync(self, timeout: float = 300) -> None:
        with self._lock:
            already = self._closed and self._close_error is None
            self._closed = True
            self._stop.set()
            pending = [s for s in self._sandboxes if s.sandbox_id is None]
            adopted = list(self._adopted)
        _open_sessions.discard(self)
        if already:
            return
        errors: List[BaseException] = []
        if self._id is not None:
            try:
                self._client.call(SESSION_SERVICE, "Close", {"id": self._id}, timeout=timeout)
            except exc.SandboxError as e:
                errors.append(e)
            for sb in list(self._sandboxes):
                if sb.sandbox_id is None:
                    continue
                try:
                    sb._refresh()
                except exc.SandboxError:
                    pass
        for sb in pending:
            sb._stopped_before_start = True
        for sb in adopted:
            try:
                sb._stop_sync(10, missing_ok=True)
            except exc.SandboxError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close().result()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
