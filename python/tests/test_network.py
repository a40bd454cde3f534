"""Unit tests of network options and published ports: their mapping onto the
wire (NetworkPolicy, PortSpec) and the port calls, against the fake Connect
server of test_codec."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sbx
from sbx import EgressRule, IngressRule, NetworkOptions, PortRange, Service, ServiceVisibility
from sbx._client import Client
from sbx._network import network_to_wire, ports_to_wire

from test_codec import Fake, reply_json  # noqa: F401 - the fixture's type

SB = {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING", "address": "10.203.0.5", "ports": [
    {"port": 8080, "url": "http://8080-sb-1.localhost/", "pathUrl": "http://api/proxy/sb-1/8080/"},
    {"port": 9000, "public": True, "url": "http://9000-sb-1-tok.localhost/", "pathUrl": "http://api/proxy/sb-1/9000-tok/"},
]}


@pytest.fixture()
def fake() -> Any:
    f = Fake()
    yield f
    f.close()


def test_network_options_to_wire() -> None:
    n = NetworkOptions(
        deny_ingress=True,
        egress=[
            EgressRule(cidr="203.0.113.0/24", ports=[443, PortRange(port=8000, end_port=8001)]),
            {"cidr": {"cidr": "198.51.100.7"}},
            EgressRule(dns_name="*.pypi.org", ports=[443]),
        ],
        allow_session_peers=True,
    )
    assert network_to_wire(n) == {
        "denyIngress": True, "allowSessionPeers": True,
        "allowCidrs": [{"cidr": "203.0.113.0/24", "ports": [443, 8000, 8001]}, {"cidr": "198.51.100.7"}],
        "allowNames": ["*.pypi.org"],
    }
    assert network_to_wire({"deny_egress": True, "deny_dns": True}) == {"denyEgress": True, "denyDns": True}
    assert network_to_wire(NetworkOptions()) == {}
    assert network_to_wire(None) is None
    # The default egress and ingress, spelled out, are the default policy.
    assert network_to_wire(NetworkOptions(egress=[EgressRule(any=True)], ingress=[IngressRule(any=True)])) == {}


@pytest.mark.parametrize("n,field", [
    (NetworkOptions(deny_egress=True, egress=[EgressRule(cidr="1.2.3.4")]), "network.egress"),
    (NetworkOptions(egress=[EgressRule(cidr="1.2.3.4", dns_name="x.com")]), "network.egress[0]"),
    (NetworkOptions(egress=[EgressRule()]), "network.egress[0]"),
    (NetworkOptions(egress=[EgressRule(tenant="same-session")]), "network.egress[0].tenant"),
    (NetworkOptions(egress=[EgressRule(selector={"app": "db"})]), "network.egress[0].selector"),
    (NetworkOptions(egress=[EgressRule(cidr={"cidr": "10.0.0.0/8", "except_cidrs": ["10.1.0.0/16"]})]), "network.egress[0].cidr.except_cidrs"),
    (NetworkOptions(egress=[EgressRule(cidr="1.2.3.4", ports=[0])]), "network.egress[0].ports[0]"),
    (NetworkOptions(egress=[EgressRule(cidr="1.2.3.4", ports=[PortRange(port=1, end_port=100)])]), "network.egress[0].ports[0]"),
    (NetworkOptions(egress=[EgressRule(dns_name="x.com", ports=[80])]), "network.egress[0].ports"),
    (NetworkOptions(egress=[EgressRule(any=True), EgressRule(cidr="1.2.3.4")]), "network.egress"),
    (NetworkOptions(ingress=[IngressRule(cidr="1.2.3.4")]), "network.ingress[0]"),
    ({"deny_egres": True}, "network"),
])
def test_network_options_rejected_naming_the_field(n: Any, field: str) -> None:
    with pytest.raises(sbx.SandboxInvalidArgumentError) as ei:
        network_to_wire(n)
    assert str(ei.value).startswith(field + ":"), str(ei.value)


def test_ports_to_wire() -> None:
    assert ports_to_wire([8080, {"port": 9000, "public": True}, Service(port=3000, visibility=ServiceVisibility.PUBLIC),
                          Service(port=3001, visibility="private", protocol="tcp")]) == [
        {"port": 8080}, {"port": 9000, "public": True}, {"port": 3000, "public": True}, {"port": 3001}]
    for bad in ([0], [70000], [True], [80, 80], [Service(port=1, visibility="custom")], [Service(port=1, protocol="udp")],
                [{"port": 1, "public": True, "host": "x"}], list(range(1, 34))):
        with pytest.raises(sbx.SandboxInvalidArgumentError) as ei:
            ports_to_wire(bad)
        assert str(ei.value).startswith("ports"), str(ei.value)
    with pytest.raises(TypeError):
        ports_to_wire(8080)  # type: ignore[arg-type]


def test_create_sends_network_and_ports(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Create"] = reply_json(200, {"sandbox": SB})
    c = Client(fake.url, "k")
    d = sbx.SandboxDefaults(network=NetworkOptions(deny_egress=True))
    sb = sbx.Sandbox.run(defaults=d, ports=[8080], services=[Service(port=9000, visibility="public")], client=c)
    req = json.loads(fake.requests[-1][2])
    assert req["network"] == {"denyEgress": True} and req["ports"] == [{"port": 8080}, {"port": 9000, "public": True}]
    sbx.Sandbox.run(defaults=d, network={"egress": [{"dns_name": "example.com"}]}, client=c)
    assert json.loads(fake.requests[-1][2])["network"] == {"allowNames": ["example.com"]}
    sbx.Sandbox.run(client=c)
    req = json.loads(fake.requests[-1][2])
    assert "network" not in req and "ports" not in req

    assert sb.address == "10.203.0.5"
    assert sb.exposed_ports == (8080, 9000)
    assert sb.service_urls == {8080: "http://8080-sb-1.localhost/", 9000: "http://9000-sb-1-tok.localhost/"}
    assert sb.ports[1] == sbx.ExposedPort(port=9000, public=True, url="http://9000-sb-1-tok.localhost/", path_url="http://api/proxy/sb-1/9000-tok/")


def test_session_defaults_send_network(fake: Fake) -> None:
    fake.routes["/sbx.v1.SessionService/Create"] = reply_json(200, {"session": {"id": "ss-1", "leaseSeconds": "60"}})
    fake.routes["/sbx.v1.SandboxService/Create"] = reply_json(200, {"sandbox": SB})
    fake.routes["/sbx.v1.SessionService/Close"] = reply_json(200, {})
    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(200, {"sandbox": SB})
    c = Client(fake.url, "k")
    with sbx.Session(sbx.SandboxDefaults(network=NetworkOptions(allow_session_peers=True)), client=c) as s:
        s.sandbox().start().result()
    create = next(json.loads(b) for p, _, b in fake.requests if p == "/sbx.v1.SessionService/Create")
    assert create["defaults"]["network"] == {"allowSessionPeers": True}


def test_expose_and_unexpose(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Get"] = reply_json(200, {"sandbox": SB})
    fake.routes["/sbx.v1.SandboxService/ExposePort"] = reply_json(200, {"port": {
        "port": 8080, "public": True, "url": "http://8080-sb-1-tok.localhost/", "pathUrl": "p"}})
    fake.routes["/sbx.v1.SandboxService/UnexposePort"] = reply_json(200, {})
    fake.routes["/sbx.v1.SandboxService/Wait"] = reply_json(200, {"sandbox": SB})
    c = Client(fake.url, "k")
    sb = sbx.Sandbox.from_id("sb-1", client=c).result()
    sb.wait()
    p = sb.expose_port(8080, public=True).result()
    assert p.public and p.url == "http://8080-sb-1-tok.localhost/"
    assert json.loads(fake.requests[-1][2]) == {"sandboxId": "sb-1", "port": {"port": 8080, "public": True}}
    assert sb.service_urls[8080] == "http://8080-sb-1-tok.localhost/" and sb.exposed_ports == (8080, 9000)
    sb.unexpose_port(9000).result()
    assert json.loads(fake.requests[-1][2]) == {"sandboxId": "sb-1", "port": 9000}
    assert sb.exposed_ports == (8080,)
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        sb.expose_port(0)
