"""Value types of sbx: statuses, results, defaults, operations and output streams."""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import dataclasses
import enum
import queue
from typing import Any, AsyncIterator, Callable, Generator, Generic, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

from . import _workers
from .exceptions import SandboxTimeoutError

__all__ = ["SandboxStatus", "ProcessResult", "SandboxDefaults", "OperationRef", "StreamReader"]

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
class SandboxDefaults:
    """Settings shared by many sandboxes (e.g. a Session's). Per-sandbox values win;
    tags and environment variables merge (explicit ones win on conflicts).

    Attributes:
        container_image: Image reference, e.g. "python:3.11".
        max_lifetime_seconds: Lifetime after which the server stops the sandbox; None means the server's default.
        tags: Tags for ``list(tags=...)``.
        environment_variables: Environment added to the image's.
        resources: Limits, e.g. ``{"cpu": "500m", "memory": "512Mi", "pids": 256, "disk": "10Gi"}``.
        network: NetworkOptions (or a dict of its fields) of sandboxes that set none;
            the whole policy replaces the server's default, it is not merged.
        secrets: Secrets (``[Secret(name="HF_TOKEN")]``) injected into every sandbox as
            environment variables; a sandbox's own win for the same variable.
    """

    container_image: str = "python:3.11"
    max_lifetime_seconds: Optional[float] = None
    tags: Tuple[str, ...] = ()
    environment_variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resources: Optional[Mapping[str, Any]] = None
    network: Optional[Any] = None
    secrets: Optional[Sequence[Any]] = None

    def __post_init__(self) -> None:
        if isinstance(self.tags, str):
            raise TypeError("tags must be a sequence of strings, not a string")
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "environment_variables", dict(self.environment_variables or {}))
        if self.max_lifetime_seconds is not None and not self.max_lifetime_seconds > 0:
            raise ValueError(f"max_lifetime_seconds must be positive, got {self.max_lifetime_seconds!r}")
        # Fail at construction, naming the field, rather than at the first sandbox.
        from ._network import network_to_wire

        network_to_wire(self.network, "defaults.network")
        from ._secrets import normalize_secrets

        object.__setattr__(self, "secrets", normalize_secrets(self.secrets, "defaults.secrets") or None)

    def with_overrides(self, **kw: Any) -> "SandboxDefaults":
        """Return a copy with kw replacing fields; ``tags``, ``environment_variables`` and ``secrets`` merge."""
        unknown = set(kw) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown SandboxDefaults fields: {sorted(unknown)}")
        if "tags" in kw and kw["tags"] is not None:
            kw["tags"] = merge_tags(self.tags, kw["tags"])
        if "environment_variables" in kw and kw["environment_variables"] is not None:
            kw["environment_variables"] = {**self.environment_variables, **kw["environment_variables"]}
        if kw.get("secrets") is not None:
            from ._secrets import merge_secrets, normalize_secrets

            kw["secrets"] = merge_secrets(self.secrets or (), normalize_secrets(kw["secrets"]))
        kw = {k: v for k, v in kw.items() if v is not None}
        return dataclasses.replace(self, **kw)


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
        item = self._q.get(timeout=timeout)
        if item is self._EOF:
            self._q.put(self._EOF)  # every later read sees the end too
            if self._error is not None:
                raise self._error
            return None
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        while True:
            nl = self._buf.find("\n")
            if nl >= 0:
                line, self._buf = self._buf[: nl + 1], self._buf[nl + 1:]
                yield line
                continue
            chunk = self.read_chunk()
            if chunk is None:
                self._buf += self._dec.decode(b"", final=True)
                if self._buf:
                    line, self._buf = self._buf, ""
                    yield line
                return
            self._buf += self._dec.decode(chunk)

    def read(self) -> str:
        """Read to the end and return everything not yet iterated."""
        return "".join(self)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[str]:
        it = iter(self)
        loop = asyncio.get_running_loop()
        end = object()
        while True:
            line = await loop.run_in_executor(None, next, it, end)
            if line is end:
                return
            yield line  # type: ignore[misc]

