"""Secrets against the real `sbx serve`: the store calls, injection into a
real sandbox's main command and execs, and that no call returns a value."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import sbx
from sbx import Sandbox, SandboxDefaults, Secret, Secrets, Session


def _value() -> str:
    return "val-" + uuid.uuid4().hex


def test_secret_type_and_defaults() -> None:
    s = Secret(name="HF_TOKEN")
    assert s.env_var is None and s.effective_env_var == "HF_TOKEN"
    assert Secret(name="OPENAI_API_KEY", env_var="OPENAI_KEY").effective_env_var == "OPENAI_KEY"
    # CoreWeave spelling: store "wandb" is the tenant's store.
    assert Secret(store="wandb", name="HF_TOKEN").name == "HF_TOKEN"
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        Secret(name="X", field="token")
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        Secret(name="")
    d = SandboxDefaults(secrets=[Secret(name="A"), {"name": "B", "env_var": "SHARED"}])
    sb = Sandbox(defaults=d, secrets=[Secret(name="C", env_var="SHARED")])
    # The sandbox's own secret wins for SHARED; the request names no value.
    assert sb._create_req["secrets"] == [{"name": "C", "envVar": "SHARED"}, {"name": "A"}]
    with pytest.raises(TypeError):
        Sandbox(secrets=Secret(name="A"))


def test_secrets_store(server: Any) -> None:
    store = Secrets()
    name = "PYTEST_" + uuid.uuid4().hex[:8].upper()
    value = _value()
    assert store.set(name, value) is True
    assert store.set(name, value + "2") is False
    infos = {i.name: i for i in store.list()}
    assert name in infos and infos[name].created_at is not None and infos[name].updated_at is not None
    assert value not in repr(store.list())
    store.delete(name)
    assert name not in {i.name for i in store.list()}
    with pytest.raises(sbx.SandboxNotFoundError) as ei:
        store.delete(name)
    assert ei.value.reason == "SECRET_NOT_FOUND"
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        store.set("1BAD", "x")
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        store.set("BIG", "x" * (64 * 1024 + 1))


def test_secrets_injected_into_main_and_exec(server: Any) -> None:
    store = Secrets()
    hf, openai = _value(), _value()
    store.set("HF_TOKEN", hf)
    store.set("OPENAI_API_KEY", openai)
    with Sandbox.run(
        "sh", "-c", 'echo "main:$HF_TOKEN:$OPENAI_KEY"; sleep 600',
        container_image="busybox",
        secrets=[Secret(name="HF_TOKEN"), Secret(name="OPENAI_API_KEY", env_var="OPENAI_KEY")],
        max_lifetime_seconds=300,
    ) as sb:
        sb.wait(timeout=120)
        r = sb.exec(["sh", "-c", 'echo "$HF_TOKEN|$OPENAI_KEY|${OPENAI_API_KEY:-unset}"']).result()
        assert r.stdout == f"{hf}|{openai}|unset\n"
        logs = ""
        for chunk in sb.stream_logs():
            logs += chunk
            if "\n" in logs:
                break
        assert logs.startswith(f"main:{hf}:{openai}")
        assert [(s.name, s.env_var) for s in sb.secrets] == [("HF_TOKEN", "HF_TOKEN"), ("OPENAI_API_KEY", "OPENAI_KEY")]
        # Neither Get nor List returns a value.
        c = sbx.default_client()
        got = c.call("sbx.v1.SandboxService", "Get", {"id": sb.sandbox_id})
        listed = c.call("sbx.v1.SandboxService", "List", {})
        for resp in (got, listed):
            text = json.dumps(resp)
            assert hf not in text and openai not in text


def test_secrets_session_defaults_and_unknown(server: Any) -> None:
    store = Secrets()
    v = _value()
    store.set("SESSION_TOKEN", v)
    with Session(SandboxDefaults(container_image="busybox", secrets=[Secret(name="SESSION_TOKEN", env_var="TOKEN")])) as session:
        sb = session.sandbox()
        sb.wait(timeout=120)
        assert sb.exec(["sh", "-c", "echo $TOKEN"]).result().stdout == v + "\n"
    # An unknown name fails the create, naming the secret.
    with pytest.raises(sbx.SandboxNotFoundError) as ei:
        Sandbox.run(container_image="busybox", secrets=[Secret(name="NO_SUCH_SECRET_" + uuid.uuid4().hex[:6].upper())])
    assert ei.value.reason == "SECRET_NOT_FOUND" and "NO_SUCH_SECRET_" in str(ei.value)
    # A reserved variable is refused up front.
    with pytest.raises(sbx.SandboxInvalidArgumentError) as ei2:
        Sandbox.run(container_image="busybox", secrets=[Secret(name="SESSION_TOKEN", env_var="PATH")])
    assert "secrets[0].env_var" in str(ei2.value)
