"""Conversions between the Python API's arguments and the wire (JSON) forms."""

from __future__ import annotations

import base64
import posixpath
import re
from datetime import datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional

from . import exceptions as exc

__all__ = ["resources_to_wire", "mounted_files_to_wire", "resolve_path", "parse_timestamp", "ceil_seconds"]


def ceil_seconds(v: float) -> int:
    """Whole seconds, rounded up."""
    return int(-(-float(v) // 1))


def _quantity(v: Any, what: str) -> int:
    """Parse 512Mi / 1G / 1e9 / 1024 (bytes) into an int."""
    if isinstance(v, bool):
        raise TypeError(f"{what}: expected a number or a quantity string")
    if isinstance(v, (int, float)):
        return int(v)
    m = re.fullmatch(r"\s*([0-9.]+(?:[eE][0-9]+)?)\s*([KMGTP]i?|[kmgtp])?\s*[bB]?\s*", str(v))
    if not m:
        raise ValueError(f"{what}: cannot parse quantity {v!r} (use e.g. 512Mi, 2G or a number of bytes)")
    n = float(m.group(1))
    unit = (m.group(2) or "")
    bin_ = unit.endswith("i")
    exp = "KMGTP".find(unit[:1].upper()) + 1 if unit else 0
    return int(n * ((1024 if bin_ else 1000) ** exp))


def _cpu_millis(v: Any) -> int:
    if isinstance(v, str) and v.strip().endswith("m"):
        return int(float(v.strip()[:-1]))
    return int(float(v) * 1000)


def resources_to_wire(r: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """Map {"cpu": "500m"|0.5, "memory": "512Mi", "pids": 100, "disk": "10Gi"} (or cpu_millis / memory_bytes / disk_bytes) to the wire form."""
    if not r:
        return None
    from ._compat import ResourceOptions, resource_options_to_dict

    if isinstance(r, ResourceOptions):
        r = resource_options_to_dict(r)
        if not r:
            return None
    if not isinstance(r, Mapping):
        r = {k: getattr(r, k) for k in ("cpu", "memory", "pids", "disk", "cpu_millis", "memory_bytes", "disk_bytes") if getattr(r, k, None) is not None}
    out: Dict[str, Any] = {}
    for k, v in r.items():
        if v is None:
            continue
        if k in ("cpu", "cpus"):
            out["cpuMillis"] = str(_cpu_millis(v))
        elif k == "cpu_millis":
            out["cpuMillis"] = str(int(v))
        elif k in ("memory", "memory_bytes", "mem"):
            out["memoryBytes"] = str(_quantity(v, "memory"))
        elif k == "pids":
            out["pids"] = str(int(v))
        elif k in ("disk", "disk_bytes"):
            out["diskBytes"] = str(_quantity(v, "disk"))
        elif k in ("gpu", "gpus") and not v:
            continue
        else:
            raise exc.SandboxInvalidArgumentError(f"unknown resource {k!r}: sbx supports cpu, memory, pids and disk")
    return out or None


def resolve_path(path: Any, working_dir: Optional[str] = None) -> str:
    """path inside the sandbox as the server takes it: an absolute one as
    given, a relative one (W&B's ``write_file("hello.txt", ...)``, mounted
    files) normalized, for the server to take from the sandbox's working dir
    (working_dir if the create gave one, else the image's WORKDIR, else /).
    An empty path stays empty, for the server to refuse."""
    p = str(path)
    if not p or p.startswith("/"):
        return p
    return posixpath.normpath(p)


def mounted_files_to_wire(files: Any, working_dir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Accept [{"mount_path", "file_content"}] (W&B / CoreWeave), [{"path",
    "content", "mode"?}] or {path: content} and return the wire form;
    relative paths are taken from working_dir (or /)."""
    if not files:
        return []
    items: Iterable[Any] = files.items() if isinstance(files, Mapping) else files
    out = []
    for i, it in enumerate(items):
        if isinstance(it, tuple):
            path, content, mode = it[0], it[1], 0
        elif isinstance(it, Mapping):
            path = it.get("mount_path", it.get("path"))
            content = it.get("file_content", it.get("content", it.get("contents", b"")))
            mode = it.get("mode", 0)
            if path is None:
                raise exc.SandboxInvalidArgumentError(
                    f"mounted_files[{i}]: give mount_path (or path), e.g. {{'mount_path': '/app/x.py', 'file_content': b'...'}}",
                    reason="INVALID_ARGUMENT")
        else:
            raise TypeError(f"mounted_files[{i}] must be a dict with mount_path and file_content, got {type(it).__name__}")
        if isinstance(content, str):
            content = content.encode()
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"mounted_files[{i}] content must be bytes or str, got {type(content).__name__}")
        m: Dict[str, Any] = {"path": resolve_path(path, working_dir), "content": base64.b64encode(content).decode()}
        if mode:
            m["mode"] = int(mode)
        out.append(m)
    return out


def parse_timestamp(v: Optional[str]) -> Optional[datetime]:
    if not v:
        return None
    v = re.sub(r"(\.\d{6})\d+", r"\1", v).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None
