"""sbx: the Python client of sbx, a self-hostable sandbox server.

Source-compatible with the W&B / CoreWeave sandbox client: change
``from wandb.sandbox import ...`` (or ``from cwsandbox import ...``) to
``from sbx import ...``::

    from sbx import Sandbox

    with Sandbox.run(container_image="python:3.11") as sandbox:
        print(sandbox.exec(["python", "--version"]).result().stdout)

The server is found through arguments (``sbx.configure(url=..., api_key=...)``),
the environment (SBX_URL, SBX_API_KEY) or the credentials file a local
``sbx serve`` writes. Standard library only; Python 3.9+.
"""

import concurrent.futures
import time
from typing import Any, List, Optional, Sequence, Tuple, Union

from ._client import DEFAULT_URL, Client, configure, default_client, default_credentials_path
from ._network import (
    CidrBlock,
    EgressRule,
    ExposedPort,
    IngressRule,
    NetworkOptions,
    PortRange,
    Service,
    ServiceProtocol,
    ServiceVisibility,
)
from ._compat import AuthStrategy, ResourceOptions
from ._files import ByteStreamReader
from ._function import RemoteFunction
from ._process import Process, StdinWriter, StreamWriter, TerminalSession
from ._sandbox import Sandbox
from ._secrets import Secret, SecretInfo, Secrets
from ._session import Session
from ._stats import SandboxStats
from ._types import OperationRef, ProcessResult, SandboxDefaults, SandboxStatus, StreamReader, TerminalResult
from .exceptions import (
    AsyncFunctionError,
    CWSandboxAuthenticationError,
    CWSandboxValidationError,
    DiscoveryError,
    FieldViolation,
    FunctionError,
    RunnerNotFoundError,
    SandboxSnapshotError,
    SandboxStreamBackpressureError,
    SandboxStreamTruncatedError,
    SandboxTerminalStateUnavailableError,
    SandboxValidationError,
    CWSandboxError,
    SandboxAuthenticationError,
    SandboxCommandTimeoutError,
    SandboxConnectionError,
    SandboxError,
    SandboxExecutionError,
    SandboxFailedError,
    SandboxFileError,
    SandboxInvalidArgumentError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandboxRequestTimeoutError,
    SandboxResourceExhaustedError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    SandboxUnavailableError,
    SessionClosedError,
)

__version__ = "0.1.0"

__all__ = [
    "Client", "configure", "default_client", "default_credentials_path", "DEFAULT_URL",
    "Sandbox", "Session", "SandboxDefaults", "SandboxStatus", "SandboxStats", "Process", "ProcessResult",
    "OperationRef", "StreamReader", "StdinWriter", "StreamWriter", "ByteStreamReader",
    "ResourceOptions", "AuthStrategy", "Waitable", "RemoteFunction", "TerminalSession", "TerminalResult",
    "NetworkOptions", "EgressRule", "IngressRule", "CidrBlock", "PortRange",
    "Service", "ServiceVisibility", "ServiceProtocol", "ExposedPort",
    "Secret", "Secrets", "SecretInfo",
    "SandboxError", "CWSandboxError", "SandboxAuthenticationError", "CWSandboxAuthenticationError",
    "SandboxConnectionError", "SandboxNotFoundError", "SandboxNotRunningError", "SandboxUnavailableError",
    "SandboxTimeoutError", "SandboxRequestTimeoutError", "SandboxCommandTimeoutError", "SandboxFailedError",
    "SandboxTerminatedError", "SandboxExecutionError", "SandboxFileError", "SandboxResourceExhaustedError",
    "SandboxInvalidArgumentError", "SessionClosedError", "results", "wait",
    "CWSandboxValidationError", "SandboxValidationError", "FieldViolation", "SandboxStreamBackpressureError",
    "SandboxStreamTruncatedError", "SandboxTerminalStateUnavailableError", "SandboxSnapshotError",
    "FunctionError", "AsyncFunctionError", "DiscoveryError", "RunnerNotFoundError",
]


#: What sbx.wait takes: sandboxes (ready once RUNNING), operations and processes.
Waitable = Union[Sandbox, OperationRef]


def results(refs: "Union[OperationRef[Any], Sequence[OperationRef[Any]]]") -> Any:
    """Wait for one operation (or Process) and return its value, or for each of
    a sequence and return their values in order; the first error is raised."""
    if isinstance(refs, OperationRef):
        return refs.result()
    return [op.result() for op in refs]


def wait(
    waitables: "Sequence[Waitable]",
    num_returns: Optional[int] = None,
    timeout: Optional[float] = None,
) -> "Tuple[List[Waitable], List[Waitable]]":
    """Wait until num_returns (default: all) of waitables are done, or timeout
    seconds passed, and return ``(done, pending)`` holding the objects given.

    A Sandbox is done once it is RUNNING (or has ended); an operation or a
    Process once it finished. Errors are not raised: call ``result()`` on
    the done ones.

    Raises:
        ValueError: num_returns is less than 1.
    """
    if num_returns is not None and num_returns < 1:
        raise ValueError(f"num_returns must be at least 1, got {num_returns}")
    items = list(waitables)
    futs: List["concurrent.futures.Future[Any]"] = []
    for w in items:
        if isinstance(w, Sandbox):
            futs.append(OperationRef.spawn(w.wait, name="sbx-wait")._future)
        elif isinstance(w, OperationRef):
            futs.append(w._future)
        else:
            raise TypeError(f"sbx.wait takes sandboxes, operations and processes, not {type(w).__name__}")
    want = len(items) if num_returns is None else min(num_returns, len(items))
    pending = set(futs)
    done_f: "set[concurrent.futures.Future[Any]]" = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(done_f) < want and pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        d, pending = concurrent.futures.wait(pending, timeout=left, return_when=concurrent.futures.FIRST_COMPLETED)
        if not d:
            break
        done_f |= d
    done = [w for w, f in zip(items, futs) if f in done_f]
    extra, done = done[want:], done[:want]
    return done, extra + [w for w, f in zip(items, futs) if f not in done_f]
