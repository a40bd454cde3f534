"""Exec round trip through the Python SDK: `true` N times in one sandbox.

Run against a server the SDK finds (SBX_URL / SBX_API_KEY or the credentials
file `sbx serve` writes in local mode), from the module root:

    PYTHONPATH=python python3 bench/python/exec_rtt.py [N] [IMAGE]

It prints the median and p90 of exec(["true"]).result(), and how many TCP
connections to the server were left in TIME_WAIT (one per call when the SDK
does not keep connections alive). The sandbox is stopped at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse

import sbx
from sbx import Sandbox


def time_wait(port: int) -> int:
    out = subprocess.run(["ss", "-tan", "state", "time-wait", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return max(len(out.strip().splitlines()) - 1, 0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    image = sys.argv[2] if len(sys.argv) > 2 else "python:3.11"
    port = urllib.parse.urlsplit(sbx.default_client().url).port or 80
    sb = Sandbox.run(container_image=image)
    try:
        sb.exec(["true"]).result()  # the first exec waits for the sandbox
        before = time_wait(port)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            sb.exec(["true"]).result()
            ts.append((time.perf_counter() - t) * 1000)
        ts.sort()
        print(f"exec true x{n}: p50 {ts[n // 2]:.2f} ms, p90 {ts[n * 9 // 10]:.2f} ms, "
              f"sockets left in TIME_WAIT: {time_wait(port) - before}")
    finally:
        sb.stop().result()


if __name__ == "__main__":
    main()
