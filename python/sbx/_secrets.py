"""Secrets: named values of the tenant's secret store that sandboxes get as
environment variables, and the calls that manage the store.

As in W&B / CoreWeave sandboxes, code passes a secret's name, never its
value::

    from sbx import Sandbox, Secret

    with Sandbox.run(secrets=[Secret(name="HF_TOKEN"),
                              Secret(name="OPENAI_API_KEY", env_var="OPENAI_KEY")]) as sb:
        ...

The server resolves the values when the sandbox is created; an unknown name
raises SandboxNotFoundError (reason SECRET_NOT_FOUND) and nothing starts.
Values are stored with ``Secrets().set(name, value)`` (or ``sbx secret set``)
and are never returned by any call.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import exceptions as exc
from ._client import Client, default_client
from ._wire import parse_timestamp

__all__ = ["Secret", "SecretInfo", "Secrets"]

SECRET_SERVICE = "sbx.v1.SecretService"

#: Stores a Secret may name: sbx has one per tenant, which W&B's and
#: CoreWeave's "wandb" store maps to.
_STORES = ("", "sbx", "wandb")


@dataclasses.dataclass(frozen=True)
class Secret:
    """A stored secret to inject into a sandbox as an environment variable.

    Attributes:
        name: The secret's name in the tenant's store.
        env_var: The environment variable it is injected as; None means ``name``.
        store: Accepted for CoreWeave compatibility: "" , "sbx" or "wandb" (all
            the tenant's store).
        field: Not supported (structured secrets); must be empty.
    """

    name: str
    env_var: Optional[str] = None
    store: str = ""
    field: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise exc.SandboxInvalidArgumentError(f"Secret name must be a non-empty string, got {self.name!r}", reason="INVALID_ARGUMENT")
        if self.store not in _STORES:
            raise exc.SandboxInvalidArgumentError(
                f"Secret store {self.store!r} is not available: sbx has one store per tenant (use store='' or 'wandb')", reason="INVALID_ARGUMENT")
        if self.field:
            raise exc.SandboxInvalidArgumentError(
                f"Secret field {self.field!r}: sbx secrets are single values, not structured; store the field as its own secret",
                reason="INVALID_ARGUMENT")

    @property
    def effective_env_var(self) -> str:
        """The environment variable the secret is injected as."""
        return self.env_var or self.name


@dataclasses.dataclass(frozen=True)
class SecretInfo:
    """A stored secret, without its value (values are never returned)."""

    name: str
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


def to_secret(s: Any, where: str = "secrets") -> Secret:
    """A Secret from a Secret, a dict of its fields or a bare name."""
    if isinstance(s, Secret):
        return s
    if isinstance(s, str):
        return Secret(name=s)
    if isinstance(s, Mapping):
        unknown = set(s) - {"name", "env_var", "store", "field"}
        if unknown:
            raise exc.SandboxInvalidArgumentError(f"{where}: unknown Secret fields {sorted(unknown)}", reason="INVALID_ARGUMENT")
        return Secret(**s)
    raise TypeError(f"{where} entries must be Secret, dict or str, not {type(s).__name__}")


def normalize_secrets(secrets: Any, where: str = "secrets") -> Tuple[Secret, ...]:
    """A tuple of Secrets from a sequence of Secrets, dicts or names (None is empty)."""
    if secrets is None:
        return ()
    if isinstance(secrets, (str, Secret, Mapping)):
        raise TypeError(f"{where} must be a sequence of Secret, e.g. [Secret(name='HF_TOKEN')]")
    return tuple(to_secret(s, where) for s in secrets)


def merge_secrets(base: Sequence[Secret], own: Sequence[Secret]) -> Tuple[Secret, ...]:
    """own, then base's secrets for env vars own does not inject (own wins)."""
    taken = {s.effective_env_var for s in own}
    return tuple(own) + tuple(s for s in base if s.effective_env_var not in taken)


def secrets_to_wire(secrets: Sequence[Secret]) -> List[Dict[str, str]]:
    out = []
    for s in secrets:
        w = {"name": s.name}
        if s.env_var:
            w["envVar"] = s.env_var
        out.append(w)
    return out


def secrets_from_wire(refs: Any) -> List[Secret]:
    return [Secret(name=r.get("name", ""), env_var=r.get("envVar") or None) for r in (refs or []) if r.get("name")]


class Secrets:
    """The tenant's secret store: set, list and delete secrets.

    Values are write-only. A tenant has at most 1000 secrets; names are
    environment variable names (at most 128 characters), values at most 64 KiB.

    Args:
        client: The Client to use (default: configured from the environment).
    """

    def __init__(self, client: Optional[Client] = None) -> None:
        self._client_ = client

    @property
    def _client(self) -> Client:
        if self._client_ is None:
            self._client_ = default_client()
        return self._client_

    def set(self, name: str, value: str) -> bool:
        """Store ``value`` as secret ``name`` (replacing it); return True if it is new."""
        if not isinstance(value, str):
            raise TypeError(f"secret value must be a str, not {type(value).__name__}")
        resp = self._client.call(SECRET_SERVICE, "Set", {"name": name, "value": value})
        return bool(resp.get("created"))

    def list(self) -> List[SecretInfo]:
        """The tenant's secrets, sorted by name, without values."""
        resp = self._client.call(SECRET_SERVICE, "List", {})
        return [SecretInfo(name=s.get("name", ""), created_at=parse_timestamp(s.get("createdAt")),
                           updated_at=parse_timestamp(s.get("updatedAt"))) for s in resp.get("secrets") or []]

    def delete(self, name: str) -> None:
        """Delete secret ``name`` (SandboxNotFoundError if there is none)."""
        self._client.call(SECRET_SERVICE, "Delete", {"name": name})
