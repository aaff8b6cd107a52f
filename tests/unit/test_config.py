"""One configuration table: each variable named once, read, passed on, and never leaked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from natsmesh.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_is_read_by_the_table() -> None:
    s = Settings.from_env(
        {
            "NATS_URL": "nats://a:1",
            "NATSMESH_TIMEOUT": "5",
            "NATSMESH_TRACING": "off",
            "NATSMESH_MAX_IN_FLIGHT": "7",
            "NATS_PASSWORD": "hunter2",
            "TEMPO_URL": "http://tempo:3200",
        }
    )
    assert (s.nats_url, s.timeout, s.tracing, s.max_in_flight) == ("nats://a:1", 5.0, False, 7)
    assert s.password == "hunter2" and s.tempo_url == "http://tempo:3200"
    with pytest.raises(ValueError, match="NATSMESH_TIMEOUT"):
        Settings.from_env({"NATSMESH_TIMEOUT": "soon"})


def test_a_child_gets_the_same_settings_and_secrets_only_when_asked() -> None:
    s = Settings(nats_url="nats://b:2", prefix="p1", timeout=3.0, tracing=False, password="pw")
    plain = s.environment()
    assert "NATS_PASSWORD" not in plain
    assert Settings.from_env(s.environment(secrets=True)) == s
    assert "pw" not in repr(s)


def test_every_variable_is_documented() -> None:
    documented = (ROOT / "docs" / "environment.md").read_text()
    missing = [v for v in Settings.variables().values() if f"`{v}`" not in documented]
    assert missing == []


def test_cli_flags_become_overrides_not_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from natsmesh_cli import options

    monkeypatch.setattr(options, "OVERRIDES", {})
    before = dict(os.environ)
    options.set_connection(server="nats://flag:4222", password="secret", user=None)
    assert dict(os.environ) == before
    s = options.settings()
    assert (s.nats_url, s.password, s.user) == ("nats://flag:4222", "secret", None)
