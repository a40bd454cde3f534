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

from typing import Any, Iterable, List, Optional

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
from ._process import Process, StdinWriter
from ._sandbox import Sandbox
from ._secrets import Secret, SecretInfo, Secrets
from ._session import Session
from ._types import OperationRef, ProcessResult, SandboxDefaults, SandboxStatus, StreamReader
from .exceptions import (
    CWSandboxAuthenticationError,
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
    "Sandbox", "Session", "SandboxDefaults", "SandboxStatus", "Process", "ProcessResult",
    "OperationRef", "StreamReader", "StdinWriter",
    "NetworkOptions", "EgressRule", "IngressRule", "CidrBlock", "PortRange",
    "Service", "ServiceVisibility", "ServiceProtocol", "ExposedPort",
    "Secret", "Secrets", "SecretInfo",
    "SandboxError", "CWSandboxError", "SandboxAuthenticationError", "CWSandboxAuthenticationError",
    "SandboxConnectionError", "SandboxNotFoundError", "SandboxNotRunningError", "SandboxUnavailableError",
    "SandboxTimeoutError", "SandboxRequestTimeoutError", "SandboxCommandTimeoutError", "SandboxFailedError",
    "SandboxTerminatedError", "SandboxExecutionError", "SandboxFileError", "SandboxResourceExhaustedError",
    "SandboxInvalidArgumentError", "SessionClosedError", "results", "wait",
]


def results(ops: "Iterable[OperationRef[Any]]") -> "List[Any]":
    """Wait for every operation (or Process) in ops and return their values, in order."""
    return [op.result() for op in ops]


def wait(ops: "Iterable[OperationRef[Any]]", timeout: "Optional[float]" = None) -> None:
    """Wait until every operation in ops has finished (at most timeout seconds) without raising their errors."""
    import concurrent.futures

    concurrent.futures.wait([op._future for op in ops], timeout=timeout)
