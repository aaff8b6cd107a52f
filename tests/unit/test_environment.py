"""The suite runs in a clean environment: nothing of the developer's mesh leaks in."""

from __future__ import annotations

import os

from tests.conftest import clear_inherited_environment, env_for, mesh_settings


def test_inherited_credentials_and_mesh_settings_are_cleared() -> None:
    env = {
        "NATS_USER": "u",
        "NATS_PASSWORD": "p",
        "NATS_TOKEN": "t",
        "NATS_URL": "nats://elsewhere:4222",
        "NATS_CREDS": "/x.creds",
        "NATSMESH_PREFIX": "prod",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer x",
        "ANTHROPIC_API_KEY": "sk-ant-x",
        "PATH": "/bin",
    }
    clear_inherited_environment(env)
    assert env == {"PATH": "/bin"}


def test_session_and_subprocesses_see_no_inherited_credentials() -> None:
    leaked = {"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_NKEY"}
    assert leaked.isdisjoint(os.environ)
    child = env_for(mesh_settings("nats://127.0.0.1:1"))
    assert leaked.isdisjoint(child)
    assert child["NATS_URL"] == "nats://127.0.0.1:1"
