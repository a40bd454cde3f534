"""The parts of Sandbox that exist for CoreWeave / W&B compatibility (a
mixin, to keep _sandbox.py small): the option check of Sandbox(...),
read-only properties sbx has no use for (runner ids, resource echoes,
snapshot ids), exec statistics and ``await sandbox``."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Mapping, Optional, Sequence

from . import exceptions as exc
from ._types import OperationRef

if TYPE_CHECKING:  # pragma: no cover
    from ._process import TerminalSession
    from ._sandbox import Sandbox
    from ._types import SandboxDefaults

__all__ = ["CompatMixin", "_check_cw_options"]

#: CoreWeave transport and retry settings: sbx has its own, so these are
#: accepted without a word.
_SILENT = {"auth", "request_timeout_seconds", "poll_retry_budget_seconds", "poll_rpc_timeout_seconds",
           "timeout_seconds", "data_plane_mode", "max_timeout_seconds"}
#: Placement and metadata options with no sbx meaning: ignored with a warning
#: when set.
_IGNORED = {"runner_ids", "placement_mode", "placement_spillover", "annotations", "profile_ids",
            "profile_names", "image_pull_credentials"}
#: Options that change what the sandbox is: refused, since running without
#: them would silently be something else.
_REFUSED = {
    "volumes": "sbx has no scratch volumes; use a directory of the sandbox (e.g. /tmp) or mounted_files",
    "file_system_snapshot": "sbx has no file-system snapshots",
    "template_id": "sbx has no sandbox templates; pass the image and options to Sandbox.run",
    "s3_mount": "sbx has no S3 mounts; copy data in with write_file",
}


def _set(v: Any) -> bool:
    return v is not None and v != () and v != [] and v != {} and v != ""


def _check_cw_options(kwargs: Dict[str, Any], d: "Optional[SandboxDefaults]", where: str = "Sandbox") -> None:
    """Check the CoreWeave-only options in kwargs (and the defaults d): refuse
    those sbx cannot honour, warn about the ignored ones that are set."""
    given = dict(kwargs)
    if d is not None:
        for k in list(_IGNORED) + list(_REFUSED):
            if k not in given and _set(getattr(d, k, None)):
                given[k] = getattr(d, k)
    for k, why in _REFUSED.items():
        if _set(given.get(k)):
            raise exc.SandboxInvalidArgumentError(f"{k}: {why}", reason="INVALID_ARGUMENT")
    ignored = sorted(k for k in given if k in _IGNORED and _set(given[k]))
    unknown = sorted(k for k in kwargs if k not in _SILENT and k not in _IGNORED and k not in _REFUSED)
    if ignored or unknown:
        warnings.warn(f"sbx ignores these {where} options it does not support: {ignored + unknown}", stacklevel=4)


class CompatMixin:
    """CoreWeave's read-only Sandbox properties, exec statistics and ``await``."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        _info: Dict[str, Any]
        _exec_counts: List[int]
        _status_at: Optional[datetime]

        def wait(self, timeout: Optional[float] = None) -> "Sandbox": ...

    @property
    def status_updated_at(self) -> Optional[datetime]:
        """When ``status`` was last learned from the server (None before)."""
        return self._status_at

    @property
    def runner_id(self) -> Optional[str]:
        """CoreWeave's runner; sbx has none (None)."""
        return None

    @property
    def runner_group_id(self) -> Optional[str]:
        """CoreWeave's runner group; sbx has none (None)."""
        return None

    @property
    def resource_limits(self) -> Optional[Dict[str, str]]:
        """The limits the server applies: ``{"cpu": "500m", "memory": "536870912"}``
        (memory in bytes; also ``pids`` and ``disk`` when set), None if none."""
        r: Mapping[str, Any] = self._info.get("resources") or {}
        out: Dict[str, str] = {}
        if r.get("cpuMillis"):
            out["cpu"] = f"{int(r['cpuMillis'])}m"
        if r.get("memoryBytes"):
            out["memory"] = str(int(r["memoryBytes"]))
        if r.get("pids"):
            out["pids"] = str(int(r["pids"]))
        if r.get("diskBytes"):
            out["disk"] = str(int(r["diskBytes"]))
        return out or None

    @property
    def resource_requests(self) -> Optional[Dict[str, str]]:
        """sbx reserves nothing, so requests equal the limits."""
        return self.resource_limits

    @property
    def resource_gpu(self) -> Optional[Dict[str, Any]]:
        """sbx has no GPUs (None)."""
        return None

    @property
    def file_system_snapshot_id(self) -> Optional[str]:
        """sbx has no file-system snapshots (None)."""
        return None

    @property
    def exec_stats(self) -> Dict[str, int]:
        """Counts of this object's execs: ``exec_count``, ``exec_completed_ok``
        (exit 0), ``exec_completed_nonzero`` and ``exec_failures`` (an error,
        including SandboxExecutionError under check=True)."""
        n, ok, nonzero, failed = self._exec_counts
        return {"exec_count": n, "exec_completed_ok": ok, "exec_completed_nonzero": nonzero, "exec_failures": failed}

    def _record_exec(self, outcome: Optional[str]) -> None:
        """Count an exec: outcome None when it started, else "ok", "nonzero" or "failure"."""
        i = {None: 0, "ok": 1, "nonzero": 2, "failure": 3}[outcome]
        self._exec_counts[i] += 1

    def shell(
        self,
        command: Optional[Sequence[str]] = None,
        *,
        width: Optional[int] = None,
        height: Optional[int] = None,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "TerminalSession":
        """Run command (default ``/bin/sh``) on a pseudo-terminal of width x height
        (default 80x24) and return its TerminalSession at once: iterate
        ``.output`` for raw bytes, write keys with ``.stdin.write(...)``."""
        from ._process import Process, TerminalSession

        argv = [str(c) for c in (command or ["/bin/sh"])]
        if isinstance(command, (str, bytes)):
            raise TypeError("shell takes an argv list, e.g. ['bash', '-l'], not a string")
        w, h = width or 80, height or 24
        for v in (w, h):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 0xFFFF:
                raise exc.SandboxInvalidArgumentError(f"terminal size {w}x{h}: each must be 1..65535", reason="INVALID_ARGUMENT")
        req: Dict[str, Any] = {"command": argv, "stdin": True, "tty": True, "rows": h, "cols": w}
        if cwd:
            req["workingDir"] = cwd
        if env:
            req["env"] = dict(env)
        return TerminalSession(Process(self, argv, req, False, True, raw=True))  # type: ignore[arg-type]

    def __await__(self) -> Generator[Any, None, "Sandbox"]:
        """``await sandbox`` starts it if needed and waits until it runs; it returns the sandbox."""
        return OperationRef.spawn(self.wait, name="sbx-wait").__await__()
