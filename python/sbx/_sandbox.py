"""Sandbox: one sandbox on the server, with exec, files and logs."""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from . import exceptions as exc
from ._client import SANDBOX_SERVICE, Client, client_for_url, default_client
from ._sandbox_compat import CompatMixin, _check_cw_options
from ._sandbox_query import QueryMixin
from ._files import FilesMixin
from ._network import network_to_wire, ports_to_wire
from ._ports import PortsMixin
from ._secrets import Secret, merge_secrets, normalize_secrets, secrets_from_wire, secrets_to_wire
from ._stats import StatsMixin
from ._process import Process
from ._types import OperationRef, SandboxDefaults, SandboxStatus, merge_tags
from ._wire import ceil_seconds, mounted_files_to_wire, parse_timestamp, resources_to_wire

if TYPE_CHECKING:  # pragma: no cover
    from ._session import Session

__all__ = ["Sandbox"]

_log = logging.getLogger("sbx")


def _no_snapshots() -> None:
    raise exc.SandboxSnapshotError(
        "sbx has no file-system snapshots: stop without snapshot_on_stop (copy files out with read_file first)",
        reason="SNAPSHOTS_NOT_SUPPORTED")

#: Longest single server-side wait; longer waits loop, so a lost connection is noticed.
_WAIT_ROUND = 60

#: Stops still in flight. A script that calls ``sandbox.stop()`` without
#: ``.result()`` and then exits would otherwise end the (daemon) thread that
#: sends the Stop, and leave the sandbox running for its whole lifetime: at
#: interpreter exit these are waited for (at most _STOP_AT_EXIT seconds).
_pending_stops: "set[concurrent.futures.Future[Any]]" = set()
_pending_lock = threading.Lock()
_STOP_AT_EXIT = 15.0


def _track_stop(fut: "concurrent.futures.Future[Any]") -> None:
    with _pending_lock:
        _pending_stops.add(fut)

    def done(f: "concurrent.futures.Future[Any]") -> None:
        with _pending_lock:
            _pending_stops.discard(f)

    fut.add_done_callback(done)


@atexit.register
def _finish_pending_stops(timeout: float = _STOP_AT_EXIT) -> None:
    with _pending_lock:
        pending = list(_pending_stops)
    if pending:
        concurrent.futures.wait(pending, timeout=timeout)


class Sandbox(FilesMixin, PortsMixin, StatsMixin, CompatMixin, QueryMixin):
    """A sandbox: an isolated container on an sbx server.

    ``Sandbox.run(...)`` creates one and returns once the server accepted it;
    ``Sandbox(...)`` + ``start()`` does the same in two steps. Calls that need
    a running sandbox (exec, files) wait until it runs. As a context manager
    (``with`` or ``async with``) it is stopped on exit.

    Args:
        *args: The main command and its arguments; none keeps the sandbox idle until stopped.
        container_image: Image, e.g. "python:3.11" (default from ``defaults``).
        defaults: SandboxDefaults to fill what is not given here.
        tags: Tags, merged with the defaults' tags.
        max_lifetime_seconds: Lifetime after which the server stops it.
        resources: Limits, e.g. ``{"cpu": "500m", "memory": "512Mi", "pids": 256, "disk": "10Gi"}``.
        mounted_files: Files written before the command starts: ``[{"path": ..., "content": ...}]``.
        network: NetworkOptions (or a dict of its fields): egress and ingress policy;
            default from ``defaults``, else the server's (internet only).
        ports: Ports to publish through the server's proxy: ``[8080, {"port": 9000,
            "public": True}, Service(port=3000, visibility="public")]`` (needs
            ``sbx serve --network bridge``); see ``service_urls``.
        services: The same as ports, in the CoreWeave spelling (``[Service(...)]``).
        environment_variables: Environment, merged over the defaults'.
        secrets: Stored secrets to inject as environment variables, by name:
            ``[Secret(name="HF_TOKEN"), Secret(name="OPENAI_API_KEY", env_var="OPENAI_KEY")]``;
            merged with the defaults' (these win for the same variable). Values never
            travel in the request; an unknown name raises SandboxNotFoundError.
        command: The main command, as an alternative to positional args.
        args: Its arguments, with ``command`` (keyword only: ``args=[...]``).
        working_dir: Working directory (absolute).
        user: User to run as ("uid", "uid:gid" or a name).
        client: The Client to use (default: configured from the environment).
    """

    def __init__(
        self,
        *args: str,
        container_image: Optional[str] = None,
        defaults: Optional[SandboxDefaults] = None,
        tags: Optional[Sequence[str]] = None,
        max_lifetime_seconds: Optional[float] = None,
        resources: Optional[Mapping[str, Any]] = None,
        mounted_files: Optional[Any] = None,
        network: Optional[Any] = None,
        ports: Optional[Sequence[Any]] = None,
        services: Optional[Sequence[Any]] = None,
        environment_variables: Optional[Mapping[str, str]] = None,
        secrets: Optional[Sequence[Any]] = None,
        command: Optional[str] = None,
        working_dir: Optional[str] = None,
        user: Optional[str] = None,
        client: Optional[Client] = None,
        _session: Optional["Session"] = None,
        **kwargs: Any,
    ) -> None:
        args_: Sequence[str] = kwargs.pop("args", None) or ()
        d = defaults or SandboxDefaults()
        base_url = kwargs.pop("base_url", None) or d.base_url
        kwargs.pop("api_key", None)
        _check_cw_options(kwargs, d)
        if client is None and base_url:
            client = client_for_url(base_url)
        argv: List[str] = [str(a) for a in args]
        if command is not None:
            argv = [command] + [str(a) for a in args_] if not argv else argv
        elif not argv and d.command is not None:
            argv = [d.command] + list(d.args or ())
        if isinstance(tags, str):
            raise TypeError("tags must be a sequence of strings, not a string")
        if ports is None and services is None:
            services = d.services
        lifetime = max_lifetime_seconds if max_lifetime_seconds is not None else d.max_lifetime_seconds
        req: Dict[str, Any] = {
            "image": container_image or d.container_image,
            "command": argv,
            "env": {**d.environment_variables, **(environment_variables or {})},
            "tags": list(merge_tags(d.tags, tags)),
            "mountedFiles": mounted_files_to_wire(mounted_files, working_dir),
            "requestId": uuid.uuid4().hex,
        }
        if lifetime is not None:
            if not lifetime > 0:
                raise exc.SandboxInvalidArgumentError(f"max_lifetime_seconds must be positive, got {lifetime!r}", reason="LIFETIME_OUT_OF_RANGE")
            req["maxLifetimeSeconds"] = str(ceil_seconds(lifetime))
        res = resources_to_wire(resources if resources is not None else d.resources)
        if res:
            req["resources"] = res
        net = network_to_wire(network if network is not None else d.network)
        if net is not None:
            req["network"] = net
        published = ports_to_wire(ports, "ports") + ports_to_wire(services, "services")
        if published:
            req["ports"] = published
        merged_secrets = merge_secrets(d.secrets or (), normalize_secrets(secrets))
        if merged_secrets:
            req["secrets"] = secrets_to_wire(merged_secrets)
        if working_dir:
            req["workingDir"] = working_dir
        if user:
            req["user"] = user
        self._session = _session
        self._client_ = client
        self._working_dir = working_dir
        self._exec_counts = [0, 0, 0, 0]  # exec_count, ok, nonzero, failures
        self._status_at: Optional[datetime] = None
        self._create_req: Optional[Dict[str, Any]] = req
        self._lock = threading.RLock()
        self._id: Optional[str] = None
        self._info: Dict[str, Any] = {}
        self._running = False
        self._stopped_before_start = False

    # ---- construction ---------------------------------------------------

    @property
    def _client(self) -> Client:
        if self._client_ is None:
            self._client_ = self._session._client if self._session is not None else default_client()
        return self._client_

    @classmethod
    def run(cls, *args: str, **kwargs: Any) -> "Sandbox":
        """Create a sandbox and return once the server accepted it (PENDING or CREATING).

        Takes the same arguments as ``Sandbox(...)``.
        """
        sb = cls(*args, **kwargs)
        sb.start().result()
        return sb

    @classmethod
    def _from_wire(cls, client: Client, info: Mapping[str, Any], session: Optional["Session"] = None) -> "Sandbox":
        sb = cls.__new__(cls)
        sb._session = session
        sb._client_ = client
        sb._create_req = None
        sb._lock = threading.RLock()
        sb._id = info.get("id")
        sb._info = dict(info)
        sb._running = False
        sb._stopped_before_start = False
        sb._working_dir = info.get("workingDir") or None
        sb._exec_counts = [0, 0, 0, 0]
        sb._status_at = datetime.now(timezone.utc)
        return sb

    def start(self) -> OperationRef[None]:
        """Create the sandbox on the server (once); the operation finishes when the create is accepted."""
        return OperationRef.spawn(self._start, name="sbx-start")

    def _start(self) -> None:
        with self._lock:
            if self._id is not None:
                return
            if self._stopped_before_start:
                raise exc.SandboxNotRunningError("this sandbox was stopped before it started: create a new one", reason="SANDBOX_NOT_RUNNING")
            req = dict(self._create_req or {})
            if self._session is not None:
                req["sessionId"] = self._session._ensure_open()
            resp = self._client.create(SANDBOX_SERVICE, req)
            self._set_info(resp.get("sandbox") or {})
            self._create_req = None
            if self._session is not None:
                self._session._track(self)

    def _set_info(self, info: Mapping[str, Any]) -> None:
        with self._lock:
            self._info = dict(info)
            self._status_at = datetime.now(timezone.utc)
            self._id = info.get("id") or self._id
            if self.status == SandboxStatus.RUNNING:
                self._running = True

    # ---- state ------------------------------------------------------------

    @property
    def sandbox_id(self) -> Optional[str]:
        """The sandbox id ("sb-..."), or None until it was created."""
        return self._id

    @property
    def status(self) -> SandboxStatus:
        """The status the last call saw (get_status() asks the server)."""
        if self._id is None:
            return SandboxStatus.PENDING if not self._stopped_before_start else SandboxStatus.TERMINATED
        return SandboxStatus.from_wire(self._info.get("state"))

    @property
    def secrets(self) -> List[Secret]:
        """The secrets injected as environment variables (names and variables; values are never returned)."""
        return secrets_from_wire(self._info.get("secrets"))

    @property
    def returncode(self) -> Optional[int]:
        """The main command's exit code once it exited, else None."""
        v = self._info.get("exitCode")
        if v is None:
            v = (self._info.get("exit") or {}).get("code") if self._info.get("exit") else None
        return int(v) if v is not None else None

    @property
    def status_reason(self) -> Optional[str]:
        """Why the sandbox is in its status ("stopped by user", "lifetime", ...)."""
        return self._info.get("reason") or None

    @property
    def tags(self) -> List[str]:
        """The sandbox's tags."""
        if self._create_req is not None:
            return list(self._create_req.get("tags") or [])
        return list(self._info.get("tags") or [])

    @property
    def container_image(self) -> Optional[str]:
        """The image the sandbox runs."""
        if self._create_req is not None:
            return self._create_req.get("image")
        return self._info.get("image")

    @property
    def session_id(self) -> Optional[str]:
        """The session the sandbox belongs to, if any."""
        return self._info.get("sessionId") or None

    @property
    def started_at(self) -> Optional[datetime]:
        """When the sandbox started running."""
        return parse_timestamp(self._info.get("startedAt"))

    @property
    def created_at(self) -> Optional[datetime]:
        """When the server accepted the sandbox."""
        return parse_timestamp(self._info.get("createdAt"))

    @property
    def info(self) -> Dict[str, Any]:
        """The server's last record of the sandbox (the JSON form of sbx.v1.Sandbox)."""
        return dict(self._info)

    def __repr__(self) -> str:
        return f"<Sandbox {self._id or '(not started)'} {self.status.value}>"

    def get_status(self) -> SandboxStatus:
        """Ask the server for the current status."""
        if self._id is None:
            return self.status
        self._refresh()
        return self.status

    def _refresh(self) -> None:
        resp = self._client.call(SANDBOX_SERVICE, "Get", {"id": self._id}, sandbox_id=self._id)
        self._set_info(resp.get("sandbox") or {})

    # ---- waiting -----------------------------------------------------------

    def _wait_server(self, until: str, timeout: Optional[float]) -> bool:
        """Wait on the server in rounds; return False if timeout ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rnd = _WAIT_ROUND
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                rnd = max(1, min(rnd, int(-(-left // 1))))
            resp = self._client.call(SANDBOX_SERVICE, "Wait", {"id": self._id, "until": until, "timeoutSeconds": rnd},
                                     timeout=rnd + 30, sandbox_id=self._id)
            self._set_info(resp.get("sandbox") or {})
            if not resp.get("timedOut"):
                return True

    def _raise_if_not_running(self) -> None:
        st = self.status
        why = self.status_reason or ""
        if st == SandboxStatus.FAILED and self.returncode is None:
            raise exc.SandboxFailedError(f"sandbox {self._id} failed: {why}", reason="SANDBOX_FAILED")
        if st == SandboxStatus.TERMINATED:
            raise exc.SandboxTerminatedError(f"sandbox {self._id} was terminated ({why})", reason="SANDBOX_TERMINATED")
        if st.is_terminal:
            raise exc.SandboxNotRunningError(f"sandbox {self._id} has ended ({st.value}: {why}): start a new one", reason="SANDBOX_NOT_RUNNING")

    def _ensure_running(self, timeout: Optional[float] = None) -> None:
        self._start()
        if self._running and not self.status.is_terminal:
            return
        if not self._wait_server("WAIT_CONDITION_RUNNING", timeout):
            raise exc.SandboxTimeoutError(f"sandbox {self._id} is still {self.status.value} after {timeout}s")
        if self.status != SandboxStatus.RUNNING:
            self._raise_if_not_running()

    def wait(self, timeout: Optional[float] = None) -> "Sandbox":
        """Block until the sandbox is RUNNING (starting it first if needed) and return it.

        A sandbox that already COMPLETED returns normally too.

        Raises:
            SandboxFailedError: it failed to start.
            SandboxTerminatedError: it was stopped.
            SandboxTimeoutError: it was not running after timeout seconds.
        """
        self._start()
        if not (self._running and not self.status.is_terminal):
            if not self._wait_server("WAIT_CONDITION_RUNNING", timeout):
                raise exc.SandboxTimeoutError(f"sandbox {self._id} is still {self.status.value} after {timeout}s")
            if self.status not in (SandboxStatus.RUNNING, SandboxStatus.COMPLETED):
                self._raise_if_not_running()
        return self

    def wait_until_complete(self, timeout: Optional[float] = None, raise_on_termination: bool = True) -> OperationRef["Sandbox"]:
        """Wait until the sandbox has ended; the operation returns the sandbox (see ``returncode``).

        A main command that exits non-zero is not an error (the sandbox is FAILED
        with its returncode set).

        Raises (through the operation):
            SandboxTerminatedError: it was stopped, if raise_on_termination.
            SandboxFailedError: it failed without its command exiting (e.g. could not start).
            SandboxTimeoutError: it had not ended after timeout seconds.
        """

        def run() -> "Sandbox":
            self._start()
            if not self.status.is_terminal and not self._wait_server("WAIT_CONDITION_TERMINAL", timeout):
                raise exc.SandboxTimeoutError(f"sandbox {self._id} is still {self.status.value} after {timeout}s")
            st = self.status
            if st == SandboxStatus.TERMINATED and raise_on_termination:
                raise exc.SandboxTerminatedError(f"sandbox {self._id} was terminated ({self.status_reason})", reason="SANDBOX_TERMINATED")
            if st == SandboxStatus.FAILED and self.returncode is None:
                raise exc.SandboxFailedError(f"sandbox {self._id} failed: {self.status_reason}", reason="SANDBOX_FAILED")
            return self

        return OperationRef.spawn(run, name="sbx-wait")

    # ---- stop / delete -------------------------------------------------------

    def stop(
        self,
        graceful_shutdown_seconds: float = 10,
        missing_ok: bool = False,
        *,
        snapshot_on_stop: bool = False,
        wait_for_ready: bool = True,
        request_id: Optional[str] = None,
    ) -> OperationRef[None]:
        """Stop the sandbox: SIGTERM, then SIGKILL after graceful_shutdown_seconds. It ends TERMINATED.

        Stopping an ended sandbox does nothing; a sandbox not yet started never will be.
        With missing_ok, a sandbox the server no longer knows is not an error.
        sbx has no file-system snapshots: snapshot_on_stop=True fails the
        operation with SandboxSnapshotError and stops nothing (wait_for_ready
        and request_id only matter with it).
        """
        if snapshot_on_stop:
            return OperationRef.spawn(_no_snapshots, name="sbx-stop")
        op = OperationRef.spawn(self._stop_sync, graceful_shutdown_seconds, missing_ok, name="sbx-stop")
        _track_stop(op._future)
        return op

    def _stop_sync(self, graceful_shutdown_seconds: Optional[float], missing_ok: bool) -> None:
        with self._lock:
            if self._id is None:
                self._stopped_before_start = True
                self._create_req = None
                return
        req: Dict[str, Any] = {"id": self._id}
        if graceful_shutdown_seconds is not None:
            req["gracePeriodSeconds"] = ceil_seconds(graceful_shutdown_seconds)
        try:
            resp = self._client.call(SANDBOX_SERVICE, "Stop", req, timeout=float(req.get("gracePeriodSeconds", 10)) + 60, sandbox_id=self._id)
        except exc.SandboxNotFoundError:
            if missing_ok:
                return
            raise
        self._set_info(resp.get("sandbox") or {})

    # ---- exec ----------------------------------------------------------------

    def exec(
        self,
        command: Sequence[str],
        *,
        cwd: Optional[str] = None,
        check: bool = False,
        timeout_seconds: Optional[float] = None,
        stdin: bool = False,
        env: Optional[Mapping[str, str]] = None,
        user: Optional[str] = None,
    ) -> Process:
        """Run command (an argv list) in the sandbox, starting and waiting for the sandbox first.

        Returns at once with a Process: ``.result()`` / ``await`` give the ProcessResult;
        ``process.stdout`` streams output; with stdin=True, ``process.stdin`` writes to it.
        With check=True, a non-zero exit raises SandboxExecutionError from result().
        timeout_seconds kills the command (SandboxCommandTimeoutError).
        """
        if isinstance(command, (str, bytes)):
            raise TypeError("exec takes an argv list, e.g. ['sh', '-c', 'echo hi'], not a string")
        argv = [str(c) for c in command]
        if not argv:
            raise exc.SandboxInvalidArgumentError("exec needs a command: give at least one argument")
        req: Dict[str, Any] = {"command": argv, "stdin": bool(stdin)}
        if cwd:
            req["workingDir"] = cwd
        if env:
            req["env"] = dict(env)
        if user:
            req["user"] = user
        if timeout_seconds:
            req["timeoutSeconds"] = max(1, ceil_seconds(timeout_seconds))
        return Process(self, argv, req, check, stdin)

    @classmethod
    def session(cls, defaults: Optional[SandboxDefaults] = None, **kwargs: Any) -> "Session":
        """Open a Session with these defaults (see Session)."""
        from ._session import Session

        return Session(defaults, **kwargs)

    # ---- context managers -----------------------------------------------------------

    def __enter__(self) -> "Sandbox":
        self.start().result()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            self.stop(missing_ok=True).result()
        except Exception as e:  # noqa: BLE001 - never hide the block's own exception
            if exc_val is None:
                raise
            _log.warning("stopping sandbox %s after an exception in its with block failed: %s", self._id, e)

    async def __aenter__(self) -> "Sandbox":
        await self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            await self.stop(missing_ok=True)
        except Exception as e:  # noqa: BLE001 - never hide the block's own exception
            if exc_val is None:
                raise
            _log.warning("stopping sandbox %s after an exception in its async with block failed: %s", self._id, e)
