"""Integration tests of published ports and network options against the real
`sbx serve` (with sandbox networking): busybox httpd in a sandbox, reached
through the server's proxy with and without the API key."""

from __future__ import annotations

import base64
import http.client
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import pytest

import sbx
from sbx import NetworkOptions, Sandbox, Service

#: busybox httpd on 8080 and 9001 (httpd without -f daemonizes), serving /www.
HTTPD = ["sh", "-c", "httpd -p 8080 -h /www && httpd -p 9001 -h /www && exec sleep 3600"]
PAGE = "hello through the proxy\n"


def get(url: str, api_url: str, key: Optional[str] = None, basic: bool = False) -> Tuple[int, str]:
    """GET url through the API's listener: the host-form URL's name goes in
    the Host header, so no *.localhost resolution is needed."""
    u, api = urlsplit(url), urlsplit(api_url)
    headers: Dict[str, str] = {"Host": u.netloc}
    if key and basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"x:{key}".encode()).decode()
    elif key:
        headers["Authorization"] = "Bearer " + key
    conn = http.client.HTTPConnection(api.hostname or "127.0.0.1", api.port or 80, timeout=30)
    try:
        conn.request("GET", (u.path or "/") + "index.html", headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def get_eventually(url: str, api_url: str, key: Optional[str] = None) -> Tuple[int, str]:
    """The httpd may not listen yet right after RUNNING: retry a 502 briefly."""
    deadline = time.monotonic() + 30
    while True:
        status, body = get(url, api_url, key)
        if status != 502 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


@pytest.fixture()
def web(server: Any) -> Any:
    sb = Sandbox.run(*HTTPD, container_image="busybox", mounted_files=[{"path": "/www/index.html", "content": PAGE}],
                     ports=[8080], services=[Service(port=9000, visibility="public")], max_lifetime_seconds=600)
    try:
        sb.wait(timeout=120)
        yield sb
    finally:
        sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result(timeout=60)


def test_ports_on_create(server: Any, web: Sandbox) -> None:
    assert web.exposed_ports == (8080, 9000)
    assert web.address and web.address.count(".") == 3
    url = web.service_urls[8080]
    assert url.startswith(f"http://8080-{web.sandbox_id}.")
    assert get_eventually(url, server.url, server.api_key) == (200, PAGE)
    assert get(url, server.url, server.api_key, basic=True) == (200, PAGE)
    assert get(url, server.url)[0] == 401
    assert get(url, server.url, "wrong-key")[0] == 401
    # The path form, with the key.
    p = next(p for p in web.ports if p.port == 8080)
    req = urllib.request.Request(p.path_url + "index.html", headers={"Authorization": "Bearer " + server.api_key})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.read().decode() == PAGE
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(p.path_url + "index.html", timeout=30)
    assert ei.value.code == 401
    # The refreshed record carries the same URLs.
    again = Sandbox.from_id(web.sandbox_id or "").result()
    assert again.service_urls == web.service_urls


def test_expose_public_and_unexpose(server: Any, web: Sandbox) -> None:
    p = web.expose_port(9001, public=True).result()
    assert p.public and p.port == 9001 and 9001 in web.exposed_ports
    assert p.url != f"http://9001-{web.sandbox_id}.localhost/"  # holds the token
    assert get_eventually(p.url, server.url) == (200, PAGE)
    web.unexpose_port(9001).result()
    assert 9001 not in web.exposed_ports
    assert get(p.url, server.url)[0] == 404
    # Private again: the key is needed.
    p = web.expose_port(9001).result()
    assert not p.public
    assert get(p.url, server.url)[0] == 401
    assert get_eventually(p.url, server.url, server.api_key) == (200, PAGE)


def test_bad_ports_and_network_rejected(server: Any) -> None:
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        Sandbox.run(container_image="busybox", ports=[0])
    with pytest.raises(sbx.SandboxInvalidArgumentError) as ei:
        Sandbox.run(container_image="busybox", network={"egress": [{"cidr": "not-a-cidr"}]})
    assert "network.allow_cidrs[0].cidr" in str(ei.value)


def test_network_policy_reported(server: Any) -> None:
    n = NetworkOptions(deny_ingress=True, egress=[sbx.EgressRule(cidr="192.0.2.0/24", ports=[443])])
    with Sandbox.run(container_image="busybox", network=n, max_lifetime_seconds=120) as sb:
        sb.wait(timeout=120)
        sb.get_status()
        net = sb.info.get("network") or {}
        assert net.get("denyIngress") is True
        assert net.get("allowCidrs") == [{"cidr": "192.0.2.0/24", "ports": [443]}]
    d = sbx.SandboxDefaults(container_image="busybox", network=NetworkOptions(deny_egress=True))
    with sbx.Session(d) as s:
        sb = s.sandbox()
        sb.wait(timeout=120)
        sb.get_status()
        assert (sb.info.get("network") or {}).get("denyEgress") is True
