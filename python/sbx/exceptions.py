"""The exceptions of sbx: every error raised by the package is a SandboxError.

Each carries the server's machine-readable ``reason`` (``"SANDBOX_NOT_FOUND"``,
``"QUOTA_EXCEEDED"``, ...), the Connect ``code`` and, when the server
suggested one, a ``retry_delay``. The names match the W&B / CoreWeave
sandbox client, so ``except SandboxNotFoundError:`` keeps working.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from ._types import ProcessResult

__all__ = [
    "SandboxError",
    "CWSandboxError",
    "SandboxAuthenticationError",
    "CWSandboxAuthenticationError",
    "SandboxConnectionError",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "SandboxUnavailableError",
    "SandboxTimeoutError",
    "SandboxRequestTimeoutError",
    "SandboxCommandTimeoutError",
    "SandboxFailedError",
    "SandboxTerminatedError",
    "SandboxExecutionError",
    "SandboxFileError",
    "SandboxResourceExhaustedError",
    "SandboxInvalidArgumentError",
    "SessionClosedError",
    "CWSandboxValidationError",
    "SandboxValidationError",
    "FieldViolation",
    "SandboxStreamBackpressureError",
    "SandboxStreamTruncatedError",
    "SandboxTerminalStateUnavailableError",
    "SandboxSnapshotError",
    "FunctionError",
    "AsyncFunctionError",
    "DiscoveryError",
    "RunnerNotFoundError",
    "REASON_SERVER_UNREACHABLE",
]

#: Reason of a SandboxConnectionError: no sbx server answered at all.
REASON_SERVER_UNREACHABLE = "SERVER_UNREACHABLE"


class SandboxError(Exception):
    """Base of every sbx exception.

    Attributes:
        reason: The server's machine-readable reason (e.g. ``"SANDBOX_NOT_FOUND"``), or None.
        code: The Connect error code (e.g. ``"not_found"``), or None for client-side errors.
        metadata: The ErrorInfo metadata the server attached (usually empty).
        retry_delay: How long to wait before trying again, when the server said.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Optional[str] = None,
        code: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        retry_delay: Optional[timedelta] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        s = self.message
        if self.reason:
            s += f" [{self.reason}]"
        if self.retry_delay:
            s += f" (retry after {self.retry_delay.total_seconds():g}s)"
        return s


#: The CoreWeave client's name for the base class.
CWSandboxError = SandboxError


class SandboxAuthenticationError(SandboxError):
    """The server refused the API key (or none was given), or the key may not do this."""


#: The CoreWeave client's name for SandboxAuthenticationError.
CWSandboxAuthenticationError = SandboxAuthenticationError


class SandboxConnectionError(SandboxError, ConnectionError):
    """No sbx server answered at the configured URL."""


class SandboxNotFoundError(SandboxError):
    """The sandbox (or session, process, image) does not exist, or belongs to another tenant.

    Attributes:
        sandbox_id: The id that was not found, when known.
    """

    def __init__(self, message: str, *, sandbox_id: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.sandbox_id = sandbox_id


class SandboxNotRunningError(SandboxError):
    """The call needs a running sandbox and this one is not (any more)."""


class SandboxUnavailableError(SandboxNotRunningError):
    """The server or the sandbox's agent is transiently unavailable; retrying may help."""


# concurrent.futures.TimeoutError is the builtin TimeoutError from Python
# 3.11 on; before, it is its own class, which CoreWeave code catches around
# ``.result(timeout)``. SandboxTimeoutError is both, on every version.
_TIMEOUT_BASES: Tuple[type, ...] = (SandboxError, TimeoutError)
if concurrent.futures.TimeoutError is not TimeoutError:  # pragma: no cover - Python < 3.11
    _TIMEOUT_BASES += (concurrent.futures.TimeoutError,)


class SandboxTimeoutError(*_TIMEOUT_BASES):  # type: ignore[misc]
    """A wait, a call or a command ran out of time (also a TimeoutError and a
    concurrent.futures.TimeoutError)."""


class SandboxRequestTimeoutError(SandboxTimeoutError):
    """A request to the server exceeded its deadline."""


class SandboxCommandTimeoutError(SandboxTimeoutError):
    """A command's ``timeout_seconds`` ran out and the server killed it.

    Attributes:
        exec_result: The ProcessResult with the output until then.
    """

    def __init__(self, message: str, *, exec_result: Optional["ProcessResult"] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.exec_result = exec_result


class SandboxFailedError(SandboxError):
    """The sandbox failed: it could not start, or was lost."""


class SandboxTerminatedError(SandboxError):
    """The sandbox was stopped: by its user, its session or its lifetime."""


class SandboxExecutionError(SandboxError):
    """A command exited non-zero under ``check=True`` (or its stdin could not be written).

    Attributes:
        exec_result: The ProcessResult of the command.
        exception_type: The Python exception class named by the last line of a
            traceback on the command's stderr (``"ValueError"``), else None.
        exception_message: That exception's message, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        exec_result: Optional["ProcessResult"] = None,
        exception_type: Optional[str] = None,
        exception_message: Optional[str] = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.exec_result = exec_result
        if exception_type is None and exec_result is not None:
            exception_type, exception_message = python_exception_from_stderr(exec_result.stderr)
        self.exception_type = exception_type
        self.exception_message = exception_message


#: The last line of a Python traceback: "ValueError: bad input" (a dotted
#: name is allowed: "json.decoder.JSONDecodeError: ...").
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)):?\s?(.*)$")


def python_exception_from_stderr(stderr: str) -> Tuple[Optional[str], Optional[str]]:
    """The exception class and message of a Python traceback at the end of
    stderr, or (None, None). Only the last 64 KiB are looked at."""
    tail = stderr[-65536:]
    if "Traceback (most recent call last):" not in tail:
        return None, None
    for line in reversed(tail.strip().splitlines()):
        if not line.strip() or line.startswith((" ", "\t")):
            continue
        m = _EXC_LINE.match(line.strip())
        if m:
            return m.group(1), m.group(2)
        return None, None
    return None, None


class SandboxStreamBackpressureError(SandboxExecutionError):
    """An output stream ended because it was not read fast enough (CoreWeave).

    sbx never raises it (its server buffers per its output limit and reports
    ``ProcessResult.truncated`` instead); it exists so that ``except`` clauses
    of ported code keep importing.

    Attributes:
        stream_code: The stream's code (``"STREAM_BACKPRESSURE"``).
    """

    def __init__(self, message: str, *, stream_code: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stream_code = stream_code


class SandboxStreamTruncatedError(SandboxExecutionError):
    """Streamed output was cut short (CoreWeave). sbx reports cut output with
    ``ProcessResult.truncated`` and never raises this.

    Attributes:
        stream_code: The stream's code (``"STREAM_TRUNCATED"``).
    """

    def __init__(self, message: str, *, stream_code: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stream_code = stream_code


class SandboxTerminalStateUnavailableError(SandboxError):
    """The final state after a stop could not be learned (CoreWeave); sbx's
    server keeps every record, so sbx never raises it."""


class SandboxSnapshotError(SandboxError):
    """A file-system snapshot operation failed. sbx has no snapshots: asking
    for one (``stop(snapshot_on_stop=True)``) raises this with reason
    ``SNAPSHOTS_NOT_SUPPORTED``.

    Attributes:
        file_system_snapshot_id: Always None in sbx.
    """

    def __init__(self, message: str, *, file_system_snapshot_id: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.file_system_snapshot_id = file_system_snapshot_id


class FunctionError(SandboxError):
    """A ``@session.function()`` call failed (CoreWeave remote functions)."""


class AsyncFunctionError(FunctionError):
    """An ``async def`` was given to ``@session.function()``; only plain functions run remotely."""


class DiscoveryError(SandboxError):
    """Runner or profile discovery failed (CoreWeave); sbx has no runners."""


class RunnerNotFoundError(DiscoveryError):
    """A runner id was not found (CoreWeave); sbx has no runners."""


class SandboxFileError(SandboxError):
    """A file operation failed (no such file, a directory, permission denied, too large).

    Attributes:
        filepath: The path inside the sandbox, when known.
    """

    def __init__(self, message: str, *, filepath: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.filepath = filepath


class SandboxResourceExhaustedError(SandboxError):
    """A quota was reached (e.g. too many sandboxes); see ``retry_delay``."""


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request: its path (``"network.egress[0].cidr"``) and what was wrong."""

    field: str
    description: str


class CWSandboxValidationError(SandboxError, ValueError):
    """A request was refused as invalid (the CoreWeave name of the class).

    Attributes:
        field_violations: The fields at fault, when known (sbx names the field
            in the message; the list holds it when the message starts with it).
    """

    def __init__(self, message: str, *, field_violations: Optional[Sequence[FieldViolation]] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if field_violations is None:
            field_violations = _violations_from_message(message)
        self.field_violations: List[FieldViolation] = list(field_violations)


def _violations_from_message(message: str) -> List[FieldViolation]:
    m = re.match(r"^([a-z_][\w.\[\]]*): (.+)$", message, re.S)
    return [FieldViolation(m.group(1), m.group(2))] if m else []


class SandboxValidationError(CWSandboxValidationError):
    """A sandbox request was refused as invalid (CoreWeave's name)."""


class SandboxInvalidArgumentError(SandboxValidationError):
    """A request field was malformed or out of range (also a ValueError, and
    caught by ``except SandboxValidationError`` / ``CWSandboxValidationError``)."""


class SessionClosedError(SandboxError):
    """The session was closed (by ``close()``, or by the server when its lease ran out)."""


_FILE_REASONS = {
    "FILE_NOT_FOUND", "INVALID_PATH", "IS_A_DIRECTORY", "NOT_A_DIRECTORY",
    "FILE_EXISTS", "FILE_PERMISSION_DENIED", "FILE_TOO_LARGE",
}


def from_wire(
    code: str,
    message: str,
    reason: Optional[str] = None,
    retry_after: Optional[float] = None,
    metadata: Optional[Mapping[str, str]] = None,
    *,
    sandbox_id: Optional[str] = None,
    filepath: Optional[str] = None,
) -> SandboxError:
    """Map a Connect error (code, message, reason) to the SandboxError subclass that fits."""
    kw: Dict[str, Any] = {"reason": reason, "code": code, "metadata": metadata}
    if retry_after:
        kw["retry_delay"] = timedelta(seconds=retry_after)
    msg = message or code.replace("_", " ")
    if reason in _FILE_REASONS or (filepath is not None and code == "not_found" and reason in (None, "", "NOT_FOUND")):
        return SandboxFileError(msg, filepath=filepath, **kw)
    if reason == REASON_SERVER_UNREACHABLE:
        return SandboxConnectionError(msg + ": start it with `sbx serve`, or set SBX_URL to its address", **kw)
    if reason in ("SESSION_CLOSED", "SESSION_NOT_FOUND"):
        return SessionClosedError(msg, **kw)
    if reason == "SANDBOX_NOT_RUNNING":
        return SandboxNotRunningError(msg, **kw)
    if code == "not_found":
        return SandboxNotFoundError(msg, sandbox_id=sandbox_id, **kw)
    if code in ("unauthenticated", "permission_denied"):
        if code == "unauthenticated":
            msg += " (set SBX_API_KEY, or pass api_key=)"
        return SandboxAuthenticationError(msg, **kw)
    if code == "resource_exhausted":
        return SandboxResourceExhaustedError(msg, **kw)
    if code == "deadline_exceeded":
        return SandboxRequestTimeoutError(msg, **kw)
    if code in ("invalid_argument", "out_of_range"):
        return SandboxInvalidArgumentError(msg, **kw)
    if code == "unavailable":
        return SandboxUnavailableError(msg, **kw)
    if code in ("failed_precondition", "aborted"):
        return SandboxNotRunningError(msg, **kw)
    return SandboxError(msg, **kw)
