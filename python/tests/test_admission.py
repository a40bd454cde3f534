"""Unit tests of the SDK's answer to the server's admission control: a
Create refused with CREATE_QUEUE_FULL is retried after the delay the
server gives (RetryInfo's exact delay over Retry-After's whole seconds)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

import sbx
from sbx import _client
from sbx._client import Client

from test_codec import Fake, reply_json

SB = {"id": "sb-1", "state": "SANDBOX_STATE_RUNNING"}

# A Connect error body with ErrorInfo and a RetryInfo of 10 ms, as the
# server writes it (details' values are base64 protobuf; RetryInfo's
# retry_delay is Duration{nanos: 10000000}).
QUEUE_FULL = {
    "code": "resource_exhausted",
    "message": "the server is creating as many sandboxes as it can",
    "details": [
        {"type": "google.rpc.RetryInfo", "value": "CgUQgK3iBA"},
    ],
}


@pytest.fixture()
def fake() -> Any:
    f = Fake()
    yield f
    f.close()


def refuse_then_create(refusals: int) -> Any:
    left = [refusals]
    full = reply_json(429, QUEUE_FULL, {"Sbx-Reason": "CREATE_QUEUE_FULL", "Retry-After": "1"})
    ok = reply_json(200, {"sandbox": SB})

    def h(w: BaseHTTPRequestHandler, body: bytes) -> None:
        if left[0] > 0:
            left[0] -= 1
            full(w, body)
        else:
            ok(w, body)
    return h


def test_create_retried_after_queue_full(fake: Fake) -> None:
    fake.routes["/sbx.v1.SandboxService/Create"] = refuse_then_create(3)
    c = Client(fake.url, "k")
    sb = sbx.Sandbox.run(client=c)
    assert sb.sandbox_id == "sb-1"
    creates = [r for r in fake.requests if r[0].endswith("/Create")]
    assert len(creates) == 4
    assert all(json.loads(r[2]) == json.loads(creates[0][2]) for r in creates)


def test_queue_full_returned_after_the_retries(fake: Fake, monkeypatch: Any) -> None:
    monkeypatch.setattr(_client, "CREATE_RETRIES", 2)
    fake.routes["/sbx.v1.SandboxService/Create"] = refuse_then_create(10)
    c = Client(fake.url, "k")
    with pytest.raises(sbx.SandboxError) as ei:
        sbx.Sandbox.run(client=c)
    assert ei.value.reason == "CREATE_QUEUE_FULL"
    # The exact RetryInfo delay, not the header's rounded-up second.
    assert ei.value.retry_delay.total_seconds() == pytest.approx(0.01)
    assert len([r for r in fake.requests if r[0].endswith("/Create")]) == 3
