"""The issue's three examples, run as written (only the import changed from
``wandb.sandbox`` to ``sbx``) in a fresh Python process that finds the server
through the credentials file, and the session lease: a killed Python process's
sandboxes are stopped by the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import sbx
from sbx import Sandbox, SandboxStatus

EXAMPLE_1 = """
from sbx import Sandbox

with Sandbox.run(container_image="python:3.11") as sandbox:
    sandbox.exec(["python", "--version"]).result()
"""

EXAMPLE_2 = """
from sbx import Sandbox

sandbox = Sandbox.run("python", "train.py")
sandbox.wait_until_complete(timeout=3600.0).result()
print(sandbox.returncode)
"""

EXAMPLE_3 = """
from sbx import Sandbox, SandboxDefaults, Session

defaults = SandboxDefaults(container_image="python:3.11", max_lifetime_seconds=300, tags=("batch-job",))
with Session(defaults) as session:
    sandbox1 = session.sandbox()      # not started until first use
    sandbox2 = session.sandbox()
    print(sandbox1.exec(["echo", "hi"]).result().stdout)
"""


def run_py(server: Any, code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=server.env(), capture_output=True, text=True, timeout=timeout)


def test_readme_quickstart(server: Any) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## Quickstart.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    r = run_py(server, code.group(1))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "42\n 0\nb'a,b\\n1,2\\n'\ngot 1\ngot 2\ngot 3\nolleh\n\n3\nhi\n\n"


def test_example_1(server: Any) -> None:
    r = run_py(server, EXAMPLE_1)
    assert r.returncode == 0, r.stderr


def test_example_2(server: Any) -> None:
    # The image has no train.py, so python exits 2; the point is that the
    # main command's exit code reaches sandbox.returncode.
    r = run_py(server, EXAMPLE_2)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "2\n"
    # The same with a train.py mounted in, for a successful run.
    with_file = EXAMPLE_2.replace('Sandbox.run("python", "train.py")',
                                  'Sandbox.run("python", "/app/train.py", mounted_files=[{"path": "/app/train.py", "content": "print(6*7)"}])')
    r = run_py(server, with_file + "print(''.join(sandbox.stream_logs()), end='')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "0\n42\n"


def test_example_3(server: Any) -> None:
    before = {s.sandbox_id for s in Sandbox.list(tags=["batch-job"], show_terminated=True).result()}
    r = run_py(server, EXAMPLE_3)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n\n"
    made = [s for s in Sandbox.list(tags=["batch-job"], show_terminated=True).result() if s.sandbox_id not in before]
    assert len(made) == 1  # sandbox2 was never used, so never created
    assert made[0].status == SandboxStatus.TERMINATED and made[0].container_image == "python:3.11"


KILLED = """
import sys, time
from sbx import Session, SandboxDefaults

session = Session(SandboxDefaults(container_image="busybox", tags=("killed",)), lease_seconds=2)
sb = session.sandbox()
sb.exec(["true"]).result()
print(sb.sandbox_id, session.session_id, flush=True)
time.sleep(3600)
"""


def test_killed_process_session_stopped_by_server(server: Any) -> None:
    p = subprocess.Popen([sys.executable, "-c", KILLED], env=server.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline() if p.stdout else ""
        assert line, p.stderr.read() if p.stderr else ""
        sandbox_id, _session_id = line.split()
        sb = Sandbox.from_id(sandbox_id).result()
        # While the process lives, its heartbeats keep the session open past
        # several leases.
        time.sleep(5)
        assert sb.get_status() == SandboxStatus.RUNNING
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        # No more heartbeats: the server closes the session after its lease
        # and stops the sandbox. Wait on the server, bounded generously.
        sb.wait_until_complete(timeout=120, raise_on_termination=False).result()
        assert sb.status == SandboxStatus.TERMINATED
        assert "session" in (sb.status_reason or ""), sb.info
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


FORGOT_CLOSE = """
from sbx import Session, SandboxDefaults

session = Session(SandboxDefaults(container_image="busybox"))
sb = session.sandbox()
sb.exec(["true"]).result()
print(sb.sandbox_id, flush=True)
"""


def test_session_closed_at_exit(server: Any) -> None:
    # A script that forgets close() still stops its sandboxes when it exits
    # normally, without waiting for the (60 s) lease to run out.
    r = run_py(server, FORGOT_CLOSE)
    assert r.returncode == 0, r.stderr
    sb = Sandbox.from_id(r.stdout.strip()).result()
    assert sb.status == SandboxStatus.TERMINATED, sb.info


def test_unreachable_server_is_clear(server: Any) -> None:
    env = dict(server.env(), SBX_URL="http://127.0.0.1:1", SBX_API_KEY="x")
    r = subprocess.run([sys.executable, "-c", EXAMPLE_1], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "SandboxConnectionError" in r.stderr and "cannot reach the sbx server at http://127.0.0.1:1" in r.stderr
    assert isinstance(sbx.SandboxConnectionError("x"), sbx.SandboxError)
