"""The class methods of Sandbox that find sandboxes on the server (a mixin,
to keep _sandbox.py small): list, from_id and delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

from . import exceptions as exc
from ._client import SANDBOX_SERVICE, Client, client_for_url, default_client
from ._sandbox_compat import _check_cw_options
from ._types import OperationRef, SandboxStatus

if TYPE_CHECKING:  # pragma: no cover
    from ._sandbox import Sandbox

__all__ = ["QueryMixin"]


class QueryMixin:
    """Sandbox.list, Sandbox.from_id and Sandbox.delete."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        @classmethod
        def _from_wire(cls, client: Client, info: Mapping[str, Any]) -> "Sandbox": ...

    @classmethod
    def list(
        cls,
        tags: Optional[Sequence[str]] = None,
        status: Optional[Union[str, SandboxStatus, Sequence[Union[str, SandboxStatus]]]] = None,
        show_terminated: bool = False,
        *,
        client: Optional[Client] = None,
        base_url: Optional[str] = None,
        _session_id: Optional[str] = None,
        **cw_options: Any,
    ) -> OperationRef[List["Sandbox"]]:
        """List your sandboxes, newest first: those carrying every tag in tags, in status
        (one or several), including ended ones with show_terminated.

        base_url picks the server (as ``client=Client(base_url)``); CoreWeave's
        timeout_seconds, poll_* and runner_ids are accepted and ignored."""
        _check_cw_options(cw_options, None, "Sandbox.list")
        c = client or (client_for_url(base_url) if base_url else default_client())
        states: List[str] = []
        if status is not None:
            for s in ([status] if isinstance(status, (str, SandboxStatus)) else status):
                states.append(SandboxStatus(str(s).lower()).to_wire())
        if any(SandboxStatus.from_wire(s).is_terminal for s in states):
            show_terminated = True

        def run() -> List["Sandbox"]:
            out: List[Sandbox] = []
            token = ""
            for _ in range(10000):
                req: Dict[str, Any] = {"tags": list(tags or []), "states": states, "includeTerminal": bool(show_terminated),
                                       "pageSize": 1000, "pageToken": token}
                if _session_id:
                    req["sessionId"] = _session_id
                resp = c.call(SANDBOX_SERVICE, "List", req)
                out += [cls._from_wire(c, s) for s in resp.get("sandboxes") or []]
                token = resp.get("nextPageToken") or ""
                if not token:
                    break
            return out

        return OperationRef.spawn(run, name="sbx-list")

    @classmethod
    def from_id(cls, sandbox_id: str, *, client: Optional[Client] = None, base_url: Optional[str] = None,
                **cw_options: Any) -> OperationRef["Sandbox"]:
        """Look up an existing sandbox by id; the operation returns it (SandboxNotFoundError if none)."""
        _check_cw_options(cw_options, None, "Sandbox.from_id")
        c = client or (client_for_url(base_url) if base_url else default_client())
        if not sandbox_id:
            raise exc.SandboxInvalidArgumentError("no sandbox id given")

        def run() -> "Sandbox":
            resp = c.call(SANDBOX_SERVICE, "Get", {"id": sandbox_id}, sandbox_id=sandbox_id)
            return cls._from_wire(c, resp.get("sandbox") or {})

        return OperationRef.spawn(run, name="sbx-get")

    @classmethod
    def delete(cls, sandbox_id: str, missing_ok: bool = False, *, client: Optional[Client] = None,
               base_url: Optional[str] = None, timeout_seconds: Optional[float] = None) -> OperationRef[None]:
        """Stop a sandbox if needed and remove it and its record (timeout_seconds is accepted and ignored)."""
        c = client or (client_for_url(base_url) if base_url else default_client())

        def run() -> None:
            try:
                c.call(SANDBOX_SERVICE, "Delete", {"id": sandbox_id}, sandbox_id=sandbox_id)
            except exc.SandboxNotFoundError:
                if not missing_ok:
                    raise

        return OperationRef.spawn(run, name="sbx-delete")

