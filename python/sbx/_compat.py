"""CoreWeave / W&B types that sbx accepts so that ported code keeps
importing and running: ResourceOptions (mapped onto sbx's limits) and
AuthStrategy (sbx authenticates with SBX_API_KEY or the credentials file, so
the strategy is accepted and ignored)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, Mapping, Optional

from . import exceptions as exc

__all__ = ["ResourceOptions", "AuthStrategy", "resource_options_to_dict"]


class AuthStrategy(str, enum.Enum):
    """How CoreWeave's client authenticates. sbx ignores it: the key comes
    from ``sbx.configure(api_key=...)``, SBX_API_KEY or the credentials file."""

    COREWEAVE_API_KEY = "coreweave_api_key"
    WANDB = "wandb"


@dataclasses.dataclass(frozen=True)
class ResourceOptions:
    """CPU and memory as CoreWeave spells them: separate requests and limits.

    sbx enforces limits only (cgroup maxima; nothing is reserved), so the
    limits are used, else the requests. ``gpu`` is refused: sbx has no GPUs.

    Attributes:
        requests: e.g. ``{"cpu": "1", "memory": "256Mi"}``.
        limits: e.g. ``{"cpu": "8", "memory": "2Gi"}``.
        gpu: Must be empty.
    """

    requests: Optional[Mapping[str, Any]] = None
    limits: Optional[Mapping[str, Any]] = None
    gpu: Optional[Mapping[str, Any]] = None


def resource_options_to_dict(r: ResourceOptions) -> Dict[str, Any]:
    """The flat limits dict sbx sends for r."""
    if r.gpu:
        raise exc.SandboxInvalidArgumentError(
            f"resources.gpu: sbx has no GPUs (got {dict(r.gpu)!r}); remove it", reason="INVALID_ARGUMENT")
    return dict(r.limits or r.requests or {})
