"""Value types of sbx: statuses, results, defaults, operations and output streams."""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import dataclasses
import enum
import queue
from typing import Any, AsyncIterator, Callable, Dict, Generator, Generic, List, Mapping, Optional, Sequence, Tuple, TypeVar

from . import _workers
from .exceptions import SandboxTimeoutError

__all__ = ["SandboxStatus", "ProcessResult", "SandboxDefaults", "OperationRef", "StreamReader", "ByteStreamReader", "TerminalResult"]

T = TypeVar("T")


class SandboxStatus(str, enum.Enum):
    """A sandbox's state, as the server reports it: PENDING → CREATING → RUNNING →
    TERMINATING → COMPLETED | FAILED | TERMINATED."""

    UNSPECIFIED = "unspecified"
    PENDING = "pending"
    CREATING = "creating"
    RUNNING = "running"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"
    #: CoreWeave's paused state; sbx sandboxes are never paused.
    PAUSED = "paused"

    @property
    def is_terminal(self) -> bool:
        """Whether the sandbox has ended (COMPLETED, FAILED or TERMINATED)."""
        return self in (SandboxStatus.COMPLETED, SandboxStatus.FAILED, SandboxStatus.TERMINATED)

    @classmethod
    def from_wire(cls, name: Optional[str]) -> "SandboxStatus":
        """Map a wire enum name ("SANDBOX_STATE_RUNNING") to a status."""
        short = (name or "").replace("SANDBOX_STATE_", "").lower()
        try:
            return cls(short)
        except ValueError:
            return cls.UNSPECIFIED

    def to_wire(self) -> str:
        """The wire enum name of this status."""
        return "SANDBOX_STATE_" + self.value.upper()

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    """How a command ended, with all its output.

    Attributes:
        stdout: Standard output decoded as UTF-8 (undecodable bytes replaced).
        stderr: Standard error decoded as UTF-8.
        returncode: Exit code, or 128+signal when a signal killed it.
        stdout_bytes: Standard output as received.
        stderr_bytes: Standard error as received.
        command: The argv that ran.
        signal: Name of the signal that killed it ("SIGKILL"), if any.
        timed_out: Whether ``timeout_seconds`` ended it.
        oom_killed: Whether the OOM killer ended it.
        truncated: Whether output beyond the server's limit was dropped.
    """

    stdout: str
    stderr: str
    returncode: int
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    command: List[str] = dataclasses.field(default_factory=list)
    signal: Optional[str] = None
    timed_out: bool = False
    oom_killed: bool = False
    truncated: bool = False


@dataclasses.dataclass(frozen=True)
class TerminalResult:
    """How a terminal session (``Sandbox.shell()``) ended: its exit code and
    command; a TTY's output is not kept."""

    returncode: int
    command: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SandboxDefaults:
    """Settings shared by many sandboxes (e.g. a Session's). Per-sandbox values win;
    tags and environment variables merge (explicit ones win on conflicts).

    The fields are CoreWeave's ``SandboxDefaults`` fields, so
    ``SandboxDefaults(**config)`` and ``SandboxDefaults.from_dict(config)`` of
    ported code keep working; those marked "accepted" have no sbx meaning
    and are ignored (with a warning when a sandbox is made from them).

    Attributes:
        container_image: Image reference, e.g. "python:3.11".
        max_lifetime_seconds: Lifetime after which the server stops the sandbox; None means the server's default.
        tags: Tags for ``list(tags=...)``.
        environment_variables: Environment added to the image's.
        resources: Limits, e.g. ``{"cpu": "500m", "memory": "512Mi", "pids": 256, "disk": "10Gi"}``
            or a ``ResourceOptions`` (its limits, else its requests).
        network: NetworkOptions (or a dict of its fields) of sandboxes that set none;
            the whole policy replaces the server's default, it is not merged.
        secrets: Secrets (``[Secret(name="HF_TOKEN")]``) injected into every sandbox as
            environment variables; a sandbox's own win for the same variable.
        command: Main command of sandboxes given none (None: they idle until stopped;
            CoreWeave's default is a shell that sleeps, which behaves the same).
        args: Arguments of ``command``.
        base_url: The sbx server's URL for sandboxes given no ``client`` (None: the
            configured default, see ``sbx.configure``).
        services: Ports to publish (``Service``) for sandboxes that name none.
        annotations: Accepted (sbx has no pod annotations); kept, not sent.
        temp_dir: Temp directory inside the sandbox ("/tmp").
        auth, request_timeout_seconds, poll_retry_budget_seconds,
        poll_rpc_timeout_seconds, runner_ids, placement_mode,
        placement_spillover, data_plane_mode: Accepted and ignored (CoreWeave
            transport and placement settings).
        volumes, file_system_snapshot: CoreWeave scratch volumes and snapshots;
            sbx has none, so a sandbox made from non-empty ones is refused.
    """

    container_image: str = "python:3.11"
    max_lifetime_seconds: Optional[float] = None
    tags: Tuple[str, ...] = ()
    environment_variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resources: Optional[Any] = None
    network: Optional[Any] = None
    secrets: Optional[Sequence[Any]] = None
    command: Optional[str] = None
    args: Optional[Tuple[str, ...]] = None
    base_url: Optional[str] = None
    services: Optional[Tuple[Any, ...]] = None
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    temp_dir: str = "/tmp"
    auth: Optional[Any] = None
    request_timeout_seconds: Optional[float] = None
    poll_retry_budget_seconds: Optional[float] = None
    poll_rpc_timeout_seconds: Optional[float] = None
    runner_ids: Optional[Tuple[str, ...]] = None
    placement_mode: Optional[Any] = None
    placement_spillover: Optional[Any] = None
    data_plane_mode: Optional[Any] = None
    volumes: Optional[Tuple[Any, ...]] = None
    file_system_snapshot: Optional[Any] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _str_tuple(self.tags, "tags") or ())
        object.__setattr__(self, "args", _str_tuple(self.args, "args"))
        object.__setattr__(self, "runner_ids", _str_tuple(self.runner_ids, "runner_ids"))
        object.__setattr__(self, "environment_variables", dict(self.environment_variables or {}))
        object.__setattr__(self, "annotations", dict(self.annotations or {}))
        if self.services is not None:
            object.__setattr__(self, "services", tuple(self.services))
        if self.max_lifetime_seconds is not None and not self.max_lifetime_seconds > 0:
            raise ValueError(f"max_lifetime_seconds must be positive, got {self.max_lifetime_seconds!r}")
        if self.command is not None and not isinstance(self.command, str):
            raise TypeError("command must be a string (the program); put its arguments in args")
        # Fail at construction, naming the field, rather than at the first sandbox.
        from ._network import network_to_wire, ports_to_wire

        network_to_wire(self.network, "defaults.network")
        ports_to_wire(self.services, "defaults.services")
        from ._secrets import normalize_secrets

        object.__setattr__(self, "secrets", normalize_secrets(self.secrets, "defaults.secrets") or None)

    def with_overrides(self, **kw: Any) -> "SandboxDefaults":
        """Return a copy with kw replacing fields; ``tags``, ``environment_variables``,
        ``annotations`` and ``secrets`` merge (CoreWeave's replaces them; pass
        the whole value to ``dataclasses.replace`` for that)."""
        unknown = set(kw) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown SandboxDefaults fields: {sorted(unknown)}")
        if "tags" in kw and kw["tags"] is not None:
            kw["tags"] = merge_tags(self.tags, _str_tuple(kw["tags"], "tags"))
        if "environment_variables" in kw and kw["environment_variables"] is not None:
            kw["environment_variables"] = {**self.environment_variables, **kw["environment_variables"]}
        if "annotations" in kw and kw["annotations"] is not None:
            kw["annotations"] = {**self.annotations, **kw["annotations"]}
        if kw.get("secrets") is not None:
            from ._secrets import merge_secrets, normalize_secrets

            kw["secrets"] = merge_secrets(self.secrets or (), normalize_secrets(kw["secrets"]))
        kw = {k: v for k, v in kw.items() if v is not None}
        return dataclasses.replace(self, **kw)

    def merge_tags(self, additional: Optional[Sequence[str]]) -> List[str]:
        """These defaults' tags, then additional's (CoreWeave's helper)."""
        return list(self.tags) + list(_str_tuple(additional, "tags") or ())

    def merge_environment_variables(self, additional: Optional[Mapping[str, str]]) -> Dict[str, str]:
        """These defaults' environment with additional's values winning."""
        return {**self.environment_variables, **(additional or {})}

    def merge_annotations(self, additional: Optional[Mapping[str, str]]) -> Dict[str, str]:
        """These defaults' annotations with additional's values winning."""
        return {**self.annotations, **(additional or {})}

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "SandboxDefaults":
        """Build defaults from a mapping (e.g. a config file's section): unknown
        keys are ignored, None values fall back to the defaults, a ``network``
        dict becomes NetworkOptions, ``secrets`` dicts become Secrets."""
        if d is None:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        if isinstance(kw.get("network"), Mapping):
            from ._network import NetworkOptions

            kw["network"] = NetworkOptions(**kw["network"])
        return cls(**kw)


def _str_tuple(v: Any, field: str) -> Optional[Tuple[str, ...]]:
    """v as a tuple of strings; None stays None. A bare string is refused:
    it would otherwise split into characters."""
    if v is None:
        return None
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{field} must be a sequence of strings, not a string")
    out = tuple(v)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"{field} must contain only strings, got {t!r}")
    return out


def merge_tags(base: Any, extra: Any) -> Tuple[str, ...]:
    """Tags of base then extra, without duplicates, in order."""
    out: List[str] = []
    for t in list(base or ()) + list(extra or ()):
        if t not in out:
            out.append(t)
    return tuple(out)


class OperationRef(Generic[T]):
    """A call running in the background. ``.result(timeout)`` blocks for its value
    (raising its exception); ``await op`` does the same in asyncio code."""

    def __init__(self, future: "concurrent.futures.Future[T]") -> None:
        self._future = future

    @classmethod
    def spawn(cls, fn: Callable[..., T], *args: Any, name: str = "sbx-op") -> "OperationRef[T]":
        """Run fn(*args) on a background (daemon) worker and return its operation."""
        fut: "concurrent.futures.Future[T]" = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(e)

        _workers.go(run, name)
        return cls(fut)

    @classmethod
    def completed(cls, value: T) -> "OperationRef[T]":
        """An operation that is already done with value."""
        fut: "concurrent.futures.Future[T]" = concurrent.futures.Future()
        fut.set_result(value)
        return cls(fut)

    def result(self, timeout: Optional[float] = None) -> T:
        """Wait at most timeout seconds (None: forever) and return the value.

        Raises:
            SandboxTimeoutError: the operation did not finish within timeout (it keeps running).
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if self._future.done():
                raise
            raise SandboxTimeoutError(f"the operation did not finish within {timeout}s") from None

    def done(self) -> bool:
        """Whether the operation has finished."""
        return self._future.done()

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """Wait like result() and return the exception, or None."""
        return self._future.exception(timeout)

    def add_done_callback(self, fn: Callable[["OperationRef[T]"], Any]) -> None:
        """Call fn(self) once the operation finishes (in the thread that finished it)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self._future).__await__()


class StreamReader:
    """Live output: iterate it (``for line in r`` or ``async for line in r``) for text
    lines as they arrive, newline included; the last line may lack one. Iteration
    ends when the stream does, raising the stream's error if it failed."""

    _EOF = object()

    def __init__(self) -> None:
        self._q: "queue.Queue[Any]" = queue.Queue()
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._error: Optional[BaseException] = None
        self._closed = False
        self._exhausted = False
        self._consumer_closed = False
        self._on_close: Optional[Callable[[], None]] = None

    # Producer side (the receiving thread).
    def _feed(self, data: bytes) -> None:
        self._q.put(data)

    def _close(self, error: Optional[BaseException] = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._q.put(self._EOF)

    # Consumer side.
    def read_chunk(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """Return the next chunk of raw bytes, or None at the end."""
        if self._consumer_closed:
            return None
        item = self._q.get(timeout=timeout)
        if item is self._EOF:
            self._q.put(self._EOF)  # every later read sees the end too
            if self._error is not None and not self._consumer_closed:
                raise self._error
            return None
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> "StreamReader":
        return self

    def __next__(self) -> str:
        """The next text line (blocking); StopIteration at the end."""
        while True:
            nl = self._buf.find("\n")
            if nl >= 0:
                line, self._buf = self._buf[: nl + 1], self._buf[nl + 1:]
                return line
            if self._exhausted or self._consumer_closed:
                raise StopIteration
            chunk = self.read_chunk()
            if chunk is None:
                self._exhausted = True
                self._buf += self._dec.decode(b"", final=True)
                if self._buf:
                    line, self._buf = self._buf, ""
                    return line
                raise StopIteration
            self._buf += self._dec.decode(chunk)

    def close(self) -> None:
        """Stop reading: later iteration ends at once (what was not read is
        dropped). The producer keeps running; closing twice is harmless."""
        self._consumer_closed = True
        self._buf = ""
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb()
        self._q.put(self._EOF)

    def read(self) -> str:
        """Read to the end and return everything not yet iterated."""
        return "".join(self)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        end = object()
        while True:
            line = await loop.run_in_executor(None, next, self, end)
            if line is end:
                return
            yield line  # type: ignore[misc]


class ByteStreamReader(StreamReader):
    """A StreamReader of raw byte chunks (``read_file_streaming``): iterating
    it (sync or async) yields bytes as they arrive."""

    def __next__(self) -> bytes:  # type: ignore[override]
        chunk = self.read_chunk()
        if chunk is None:
            raise StopIteration
        return chunk

    def read(self) -> bytes:  # type: ignore[override]
        """Read to the end and return everything not yet iterated."""
        return b"".join(self)
