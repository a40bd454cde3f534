"""Fixtures of the sbx Python SDK tests.

``server`` builds and starts the real ``sbx serve`` (fresh data dir, random
port, local mode writing its credentials file) with docker.io mirrored to
``sbx-offline-registry`` on 127.0.0.1, which serves the busybox and Debian
python3 images that internal/testenv builds from Debian packages. Nothing
touches the internet. The server gets its own bridge, nftables tables and
subnet (as internal/testenv.NewNetwork gives Go tests), removed afterwards.

A missing prerequisite (root, go, crun, a build failure) fails the test
under CI=true and skips it elsewhere, like internal/testenv.Require.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent
sys.path.insert(0, str(PYTHON_DIR))

import sbx  # noqa: E402
import sbx._client  # noqa: E402


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, msg: str) -> None:
    """Fail under CI=true, skip elsewhere, when a prerequisite is missing."""
    if ok:
        return
    if in_ci():
        pytest.fail("prerequisite missing: " + msg, pytrace=False)
    pytest.skip("prerequisite missing: " + msg)


def _go() -> Optional[str]:
    return shutil.which("go") or (("/usr/local/go/bin/go") if os.path.exists("/usr/local/go/bin/go") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ip_json(*args: str) -> list:
    r = subprocess.run(["ip", "-4", "-j", *args], capture_output=True, text=True)
    return json.loads(r.stdout or "[]") if r.returncode == 0 else []


def pick_network() -> "tuple[str, str]":
    """A unique bridge/table name and a random 10.x.y.0/24 that no address or
    route of this host overlaps (like internal/testenv.PickNetwork)."""
    used = []
    for link in _ip_json("addr"):
        for a in link.get("addr_info") or ():
            used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for r in _ip_json("route"):
        if r.get("dst") not in (None, "default"):
            used.append(ipaddress.ip_network(r["dst"] if "/" in r["dst"] else r["dst"] + "/32", strict=False))
    for _ in range(1000):
        net = ipaddress.ip_network(f"10.{64 + secrets.randbelow(128)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return "sbxt" + secrets.token_hex(3), str(net)
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test server")


def remove_network(name: str) -> None:
    """Delete the test server's bridge, nftables tables and lock files (a clean
    sbx serve shutdown keeps them for its restart)."""
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    for family in ("inet", "bridge"):
        subprocess.run(["nft", "delete", "table", family, name], capture_output=True)
    for f in (f"bridge-{name}.lock", f"table-{name}.lock"):
        try:
            os.remove(os.path.join("/run/sbx", f))
        except OSError:
            pass


class Server:
    """One running `sbx serve` and its registry."""

    def __init__(self, root: Path, bins: Dict[str, str]) -> None:
        self.root = root
        self.bins = bins
        self.cfg_dir = root / "cfg"
        self.data_dir = root / "data"
        self.log_path = root / "serve.log"
        self.reg_log_path = root / "registry.log"
        self.procs: List[subprocess.Popen] = []
        self.url = ""
        self.api_key = ""
        self.network, self.subnet = pick_network()

    def start(self) -> None:
        reg_log = open(self.reg_log_path, "wb")
        reg = subprocess.Popen([self.bins["sbx-offline-registry"], "-listen", "127.0.0.1:0"], stdout=reg_log, stderr=reg_log)
        self.procs.append(reg)
        host = None
        deadline = time.monotonic() + 900  # the first debootstrap takes minutes
        while time.monotonic() < deadline:
            m = re.search(r"on http://(127\.0\.0\.1:\d+)", self.reg_log_path.read_text(errors="replace"))
            if m:
                host = m.group(1)
                break
            if reg.poll() is not None:
                break
            time.sleep(0.2)
        if host is None:
            pytest.fail("sbx-offline-registry did not start:\n" + self.reg_log_path.read_text(errors="replace")[-4000:], pytrace=False)
        self.cfg_dir.mkdir(parents=True)
        addr = f"127.0.0.1:{_free_port()}"
        env = dict(os.environ, SBX_CONFIG_DIR=str(self.cfg_dir), SBX_URL="", SBX_API_KEY="")
        log = open(self.log_path, "wb")
        srv = subprocess.Popen([
            self.bins["sbx"], "serve", "--listen", addr, "--data-dir", str(self.data_dir),
            "--agent-path", self.bins["sbx-agent"], "--registry-mirror", f"docker.io=http://{host}", "--allowed-registry", host, "--log-level", "debug",
            "--network", "bridge", "--network-bridge", self.network, "--network-table", self.network,
            "--network-subnet", self.subnet,
            # A closed loopback port: no sandbox lookup leaves the machine.
            "--network-dns-upstream", "127.0.0.1:1",
        ], stdout=log, stderr=log, env=env)
        self.procs.append(srv)
        self.url = f"http://{addr}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if srv.poll() is not None:
                pytest.fail("sbx serve exited at start:\n" + self.log(), pytrace=False)
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("sbx serve did not answer /healthz within 60s:\n" + self.log(), pytrace=False)
        creds = (self.cfg_dir / "credentials")
        if not creds.exists():
            pytest.fail("sbx serve wrote no credentials file:\n" + self.log(), pytrace=False)
        self.api_key = json.loads(creds.read_text())["api_key"]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def env(self) -> Dict[str, str]:
        """Environment for a child Python process using the SDK through the credentials file."""
        env = dict(os.environ, SBX_CONFIG_DIR=str(self.cfg_dir), PYTHONPATH=str(PYTHON_DIR))
        env.pop("SBX_URL", None)
        env.pop("SBX_API_KEY", None)
        return env

    def stop(self) -> None:
        try:
            c = sbx.Client(self.url, self.api_key)
            for sb in sbx.Sandbox.list(show_terminated=True, client=c).result(timeout=60):
                sbx.Sandbox.delete(sb.sandbox_id or "", missing_ok=True, client=c).result(timeout=120)
        except Exception as e:  # noqa: BLE001 - best-effort cleanup
            print("cleanup:", e, file=sys.stderr)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        remove_network(self.network)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The real sbx serve, with the environment pointing the default client at it
    through its credentials file (SBX_CONFIG_DIR), as a local user's would."""
    require(os.geteuid() == 0, "the integration tests need root (sbx serve creates containers, mounts and cgroups)")
    go = _go()
    require(go is not None, "go is not installed: the tests build sbx serve from this tree (run .ci/run once)")
    require(shutil.which("crun") is not None, "crun is not installed: run .ci/run once, or apt-get install crun")
    bindir = Path(tempfile.mkdtemp(prefix="sbx-pytest-bin-"))
    bins: Dict[str, str] = {}
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS=(os.environ.get("GOFLAGS", "") + " -buildvcs=false").strip())
    for pkg in ("./cmd/sbx", "./cmd/sbx-agent", "./internal/testenv/cmd/sbx-offline-registry"):
        out = bindir / Path(pkg).name
        r = subprocess.run([go or "go", "build", "-o", str(out), pkg], cwd=REPO, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(bindir, ignore_errors=True)
            # A broken build is never a reason to skip: it is what the tests exist to catch.
            pytest.fail(f"go build {pkg} failed:\n{r.stdout}{r.stderr}", pytrace=False)
        bins[Path(pkg).name] = str(out)
    # Not under pytest's basetemp, which keeps old runs: the data dir holds
    # unpacked images.
    root = Path(tempfile.mkdtemp(prefix="sbx-pytest-serve-"))
    # Searchable, as /var/lib is: under user namespaces a sandbox's root
    # (an unprivileged host uid) must reach its rootfs in the data dir.
    root.chmod(0o711)
    s = Server(root, bins)
    old = {k: os.environ.get(k) for k in ("SBX_CONFIG_DIR", "SBX_URL", "SBX_API_KEY")}
    try:
        s.start()
        os.environ["SBX_CONFIG_DIR"] = str(s.cfg_dir)
        os.environ.pop("SBX_URL", None)
        os.environ.pop("SBX_API_KEY", None)
        sbx._client._default = None  # configure from the environment just set
        yield s
    finally:
        s.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sbx._client._default = None
        shutil.rmtree(bindir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def idle(server: Server) -> Iterator[sbx.Sandbox]:
    """A running idle python:3.11 sandbox, stopped after the test."""
    sb = sbx.Sandbox.run(container_image="python:3.11", tags=("pytest",), max_lifetime_seconds=600)
    try:
        sb.wait(timeout=120)
        yield sb
    finally:
        sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result(timeout=60)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Print the end of the server log when an integration test fails."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "server" in getattr(item, "funcargs", {}):
        rep.sections.append(("sbx serve log (tail)", item.funcargs["server"].log()[-4000:]))
