"""Network options and published ports, spelled as the CoreWeave / W&B sandbox
client spells them (``NetworkOptions``, ``EgressRule``, ``IngressRule``,
``CidrBlock``, ``PortRange``, ``Service``), mapped onto sbx's network policy.

sbx's policy is simpler than CoreWeave's fleet profiles, so a few of their
options have no sbx meaning (tenant and label selectors, CIDR exceptions,
per-source ingress, product endpoints). Those raise
SandboxInvalidArgumentError naming the field, instead of being silently
dropped: a policy that is quietly weaker than asked is a security bug.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import exceptions as exc

__all__ = [
    "NetworkOptions", "EgressRule", "IngressRule", "CidrBlock", "PortRange",
    "Service", "ServiceVisibility", "ServiceProtocol", "ExposedPort",
    "network_to_wire", "ports_to_wire", "exposed_port_from_wire",
]

#: Bounds that mirror the server's, so that a bad option fails before sending.
MAX_PORTS = 32
MAX_RULES = 64
MAX_RULE_PORTS = 32


def _invalid(field: str, msg: str) -> exc.SandboxInvalidArgumentError:
    return exc.SandboxInvalidArgumentError(f"{field}: {msg}", reason="INVALID_ARGUMENT")


class ServiceVisibility(str, enum.Enum):
    """Who may reach a published port."""

    UNSPECIFIED = "unspecified"
    #: Anyone with the URL (it holds an unguessable token); no API key.
    PUBLIC = "public"
    #: Only callers with the owner's API key (the default).
    PRIVATE = "private"
    #: Fleet-assigned reachability (CoreWeave); not supported by sbx.
    CUSTOM = "custom"


class ServiceProtocol(str, enum.Enum):
    """L4 protocol of a published port; sbx publishes TCP only."""

    UNSPECIFIED = "unspecified"
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


@dataclasses.dataclass(frozen=True)
class CidrBlock:
    """An IPv4 range ("203.0.113.0/24" or one address). sbx has no
    ``except_cidrs``; a non-empty one is rejected."""

    cidr: str
    except_cidrs: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class PortRange:
    """A port, or the inclusive range port..end_port (at most 32 ports).
    The protocol is not filtered by sbx: a CIDR rule's ports cover TCP and UDP."""

    port: int
    end_port: Optional[int] = None
    protocol: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class EgressRule:
    """One allowed egress destination: exactly one of ``dns_name`` (exact or
    ``*.example.com``, enforced by sbx's resolver), ``cidr`` (optionally with
    ``ports``) or ``any`` (the default policy, alone). ``tenant`` and
    ``selector`` are CoreWeave fleet concepts: use
    ``NetworkOptions(allow_session_peers=True)`` for sandbox-to-sandbox traffic."""

    dns_name: Optional[str] = None
    cidr: Optional[Union[CidrBlock, Mapping[str, Any], str]] = None
    tenant: Optional[Any] = None
    any: bool = False
    selector: Optional[Any] = None
    ports: Optional[Sequence[Union[PortRange, Mapping[str, Any], int]]] = None
    dns_name_except: Optional[Sequence[str]] = None


@dataclasses.dataclass(frozen=True)
class IngressRule:
    """An ingress source. sbx accepts connections from the host (its proxy) by
    default and has no per-source rules, so only ``IngressRule(any=True)`` is
    accepted; use ``deny_ingress`` to refuse ingress."""

    cidr: Optional[Union[CidrBlock, Mapping[str, Any], str]] = None
    tenant: Optional[Any] = None
    any: bool = False
    ports: Optional[Sequence[Union[PortRange, Mapping[str, Any], int]]] = None


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    """A sandbox's network policy (``Sandbox.run(network=...)``,
    ``SandboxDefaults(network=...)``); a plain dict with these keys works too.

    Unset, a sandbox may reach the internet but not the host, private ranges
    (10/8, 172.16/12, 192.168/16, 100.64/10), link-local (cloud metadata),
    multicast or other sandboxes.

    Attributes:
        deny_egress: Block all egress but DNS to sbx's resolver. Not with ``egress``.
        deny_ingress: Refuse new connections from outside the host.
        egress: Allow egress only to these destinations (EgressRule or dict).
        ingress: Only ``[IngressRule(any=True)]`` (the default) is supported.
        deny_dns: sbx: block DNS to sbx's resolver too.
        allow_session_peers: sbx: allow traffic with the other sandboxes of
            the same session that set it too.
    """

    deny_egress: Optional[bool] = None
    deny_ingress: Optional[bool] = None
    egress: Optional[Sequence[Union[EgressRule, Mapping[str, Any]]]] = None
    ingress: Optional[Sequence[Union[IngressRule, Mapping[str, Any]]]] = None
    deny_dns: Optional[bool] = None
    allow_session_peers: Optional[bool] = None


@dataclasses.dataclass(frozen=True)
class Service:
    """A TCP port for sbx's proxy to publish: ``Service(port=8080)`` (private,
    the API key is needed) or ``Service(port=8080, visibility="public")``."""

    port: int
    name: Optional[str] = None
    protocol: Optional[Union[ServiceProtocol, str]] = None
    visibility: Optional[Union[ServiceVisibility, str]] = None
    endpoint: Optional[Any] = None


@dataclasses.dataclass(frozen=True)
class ExposedPort:
    """A published port and where to reach it.

    Attributes:
        port: The TCP port inside the sandbox.
        public: Reachable without the API key.
        url: Host form, ``http://<port>-<sandbox-id>.<domain>/`` (private: send
            ``Authorization: Bearer <key>``); a public one holds a token.
        path_url: The same under the API address: ``<api>/proxy/<id>/<port>/``.
    """

    port: int
    public: bool
    url: str
    path_url: str


def _coerce(cls: Any, v: Any, field: str) -> Any:
    if isinstance(v, cls):
        return v
    if isinstance(v, Mapping):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(v) - names
        if unknown:
            raise _invalid(field, f"unknown keys {sorted(unknown)}: use {sorted(names)}")
        return cls(**v)
    raise _invalid(field, f"expected {cls.__name__} or a dict, got {type(v).__name__}")


def _port(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise _invalid(field, f"{v!r} is not a TCP port from 1 to 65535")
    return v


def _rule_ports(ports: Any, field: str) -> List[int]:
    out: List[int] = []
    for i, p in enumerate(ports or ()):
        f = f"{field}[{i}]"
        if isinstance(p, (PortRange, Mapping)):
            r = _coerce(PortRange, p, f)
            lo = _port(r.port, f + ".port")
            hi = lo if r.end_port is None else _port(r.end_port, f + ".end_port")
            if hi < lo or hi - lo >= MAX_RULE_PORTS:
                raise _invalid(f, f"range {lo}-{hi} must be ascending and at most {MAX_RULE_PORTS} ports")
            out.extend(range(lo, hi + 1))
        else:
            out.append(_port(p, f))
    if len(out) > MAX_RULE_PORTS:
        raise _invalid(field, f"{len(out)} ports, at most {MAX_RULE_PORTS}")
    return out


def _cidr(v: Any, field: str) -> str:
    if isinstance(v, str):
        return v
    b = _coerce(CidrBlock, v, field)
    if b.except_cidrs:
        raise _invalid(field + ".except_cidrs", "sbx has no CIDR exceptions: split the range into the parts to allow")
    return str(b.cidr)


def network_to_wire(n: Any, field: str = "network") -> Optional[Dict[str, Any]]:
    """Map NetworkOptions (or a dict of its fields) to the wire NetworkPolicy; None stays None."""
    if n is None:
        return None
    opts = _coerce(NetworkOptions, n, field)
    w: Dict[str, Any] = {}
    if opts.deny_egress:
        w["denyEgress"] = True
    if opts.deny_dns:
        w["denyDns"] = True
    if opts.deny_ingress:
        w["denyIngress"] = True
    if opts.allow_session_peers:
        w["allowSessionPeers"] = True
    egress = list(opts.egress or ())
    if opts.deny_egress and egress:
        raise _invalid(field + ".egress", "deny_egress cannot be combined with egress rules: give one or the other")
    if len(egress) > MAX_RULES:
        raise _invalid(field + ".egress", f"{len(egress)} rules, at most {MAX_RULES}")
    cidrs: List[Dict[str, Any]] = []
    names: List[str] = []
    any_rule = False
    for i, r in enumerate(egress):
        f = f"{field}.egress[{i}]"
        rule = _coerce(EgressRule, r, f)
        if rule.tenant is not None:
            raise _invalid(f + ".tenant", "sbx selects no tenants: set allow_session_peers=True to reach the session's other sandboxes")
        if rule.selector is not None:
            raise _invalid(f + ".selector", "sbx has no workload selectors: allow a cidr or a dns_name")
        if rule.dns_name_except:
            raise _invalid(f + ".dns_name_except", "not allowed on a sandbox's rule")
        targets = [t for t, set_ in (("dns_name", rule.dns_name), ("cidr", rule.cidr), ("any", rule.any)) if set_]
        if len(targets) != 1:
            raise _invalid(f, f"set exactly one of dns_name, cidr or any (got {targets or 'none'})")
        ports = _rule_ports(rule.ports, f + ".ports")
        if rule.dns_name:
            if ports not in ([], [443]):
                raise _invalid(f + ".ports", "a dns_name rule covers the name's addresses: omit ports (or give 443)")
            names.append(str(rule.dns_name))
        elif rule.cidr:
            c: Dict[str, Any] = {"cidr": _cidr(rule.cidr, f + ".cidr")}
            if ports:
                c["ports"] = ports
            cidrs.append(c)
        else:
            if ports:
                raise _invalid(f + ".ports", "an any rule takes no ports in sbx")
            any_rule = True
    if any_rule and (cidrs or names):
        raise _invalid(field + ".egress", "an any rule is the default policy and cannot be combined with cidr or dns_name rules in sbx")
    if cidrs:
        w["allowCidrs"] = cidrs
    if names:
        w["allowNames"] = names
    for i, r in enumerate(opts.ingress or ()):
        f = f"{field}.ingress[{i}]"
        rule = _coerce(IngressRule, r, f)
        if not rule.any or rule.cidr is not None or rule.tenant is not None or rule.ports:
            raise _invalid(f, "sbx has no per-source ingress rules: ingress is allowed by default (IngressRule(any=True)); set deny_ingress=True to refuse it")
        if opts.deny_ingress:
            raise _invalid(f, "deny_ingress cannot be combined with an ingress rule")
    return w


def _visibility_public(v: Any, field: str) -> bool:
    s = (v.value if isinstance(v, enum.Enum) else str(v or "")).lower()
    if s in ("", "unspecified", "private"):
        return False
    if s == "public":
        return True
    raise _invalid(field, f"visibility {s!r}: sbx supports public and private")


def _port_spec(p: Any, field: str) -> Dict[str, Any]:
    if isinstance(p, bool):
        raise _invalid(field, f"{p!r} is not a port")
    if isinstance(p, int):
        return {"port": _port(p, field)}
    if isinstance(p, Mapping) and "public" in p:
        extra = set(p) - {"port", "public"}
        if extra:
            raise _invalid(field, f"unknown keys {sorted(extra)}: use port and public")
        spec = {"port": _port(p.get("port"), field + ".port")}
        if p["public"]:
            spec["public"] = True
        return spec
    s = _coerce(Service, p, field)
    if s.endpoint is not None:
        raise _invalid(field + ".endpoint", "sbx has no product endpoints: omit it")
    proto = (s.protocol.value if isinstance(s.protocol, enum.Enum) else str(s.protocol or "")).lower()
    if proto not in ("", "unspecified", "tcp"):
        raise _invalid(field + ".protocol", f"{proto!r}: sbx publishes TCP ports only")
    spec = {"port": _port(s.port, field + ".port")}
    if _visibility_public(s.visibility, field + ".visibility"):
        spec["public"] = True
    return spec


def ports_to_wire(ports: Optional[Sequence[Any]], field: str = "ports") -> List[Dict[str, Any]]:
    """Map ports (ints, ``{"port": 8080, "public": True}`` or Service) to wire PortSpecs."""
    if not ports:
        return []
    if isinstance(ports, (str, bytes, int, Mapping, Service)):
        raise TypeError(f"{field} must be a list, e.g. [8080] or [Service(port=8080)]")
    out: List[Dict[str, Any]] = []
    seen = set()
    for i, p in enumerate(ports):
        spec = _port_spec(p, f"{field}[{i}]")
        if spec["port"] in seen:
            raise _invalid(f"{field}[{i}]", f"port {spec['port']} is given twice: give each port once")
        seen.add(spec["port"])
        out.append(spec)
    if len(out) > MAX_PORTS:
        raise _invalid(field, f"{len(out)} ports, at most {MAX_PORTS}")
    return out


def exposed_port_from_wire(w: Mapping[str, Any]) -> ExposedPort:
    """An ExposedPort from the wire (JSON) form."""
    return ExposedPort(port=int(w.get("port") or 0), public=bool(w.get("public")), url=w.get("url") or "",
                       path_url=w.get("pathUrl") or "")


def exposed_ports_from_wire(ws: Any) -> Tuple[ExposedPort, ...]:
    return tuple(exposed_port_from_wire(w) for w in ws or ())
