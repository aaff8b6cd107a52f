"""Settings, read once from the environment (``NATS_URL``, ``NATSMESH_*``) and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from natsmesh import subjects

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REGISTRY_TTL = 6.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_SPANS_MAX_AGE = 24 * 3600.0
DEFAULT_SPANS_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_HOME = "~/.natsmesh"
DEFAULT_TRACE_PAYLOAD_LIMIT = 1024

_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a process needs to join a mesh. Build with :meth:`from_env`."""

    nats_url: str = DEFAULT_NATS_URL
    prefix: str = subjects.DEFAULT_PREFIX
    registry_bucket: str = subjects.DEFAULT_REGISTRY_BUCKET
    #: seconds an instance stays in the registry without a heartbeat; heartbeats come every third
    registry_ttl: float = DEFAULT_REGISTRY_TTL
    spans_stream: str = subjects.DEFAULT_SPANS_STREAM
    spans_max_age: float = DEFAULT_SPANS_MAX_AGE
    spans_max_bytes: int = DEFAULT_SPANS_MAX_BYTES
    #: replicas of the registry bucket and span stream (3 on a three-node cluster)
    replicas: int = 1
    tracing: bool = True
    #: record request and reply payloads on SERVER spans (redacted, truncated)
    trace_payloads: bool = False
    trace_payload_limit: int = DEFAULT_TRACE_PAYLOAD_LIMIT
    timeout: float = DEFAULT_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    home: str = DEFAULT_HOME
    debug: bool = False
    # connection security, all optional
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: inbox prefix (``_INBOX_<agent>`` lets permissions keep replies private)
    inbox_prefix: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment; keyword overrides that are not ``None`` win."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {
            "nats_url": e.get("NATS_URL", DEFAULT_NATS_URL),
            "prefix": e.get("NATSMESH_PREFIX", subjects.DEFAULT_PREFIX),
            "registry_bucket": e.get("NATSMESH_REGISTRY_BUCKET", subjects.DEFAULT_REGISTRY_BUCKET),
            "registry_ttl": float(e.get("NATSMESH_REGISTRY_TTL", DEFAULT_REGISTRY_TTL)),
            "spans_stream": e.get("NATSMESH_SPANS_STREAM", subjects.DEFAULT_SPANS_STREAM),
            "spans_max_age": float(e.get("NATSMESH_SPANS_MAX_AGE", DEFAULT_SPANS_MAX_AGE)),
            "spans_max_bytes": int(e.get("NATSMESH_SPANS_MAX_BYTES", DEFAULT_SPANS_MAX_BYTES)),
            "replicas": int(e.get("NATSMESH_REPLICAS", 1)),
            "tracing": e.get("NATSMESH_TRACING", "true").lower() in _TRUE,
            "trace_payloads": e.get("NATSMESH_TRACE_PAYLOADS", "").lower() in _TRUE,
            "trace_payload_limit": int(
                e.get("NATSMESH_TRACE_PAYLOAD_LIMIT", DEFAULT_TRACE_PAYLOAD_LIMIT)
            ),
            "timeout": float(e.get("NATSMESH_TIMEOUT", DEFAULT_TIMEOUT)),
            "max_in_flight": int(e.get("NATSMESH_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)),
            "home": e.get("NATSMESH_HOME", DEFAULT_HOME),
            "debug": e.get("NATSMESH_DEBUG", "").lower() in _TRUE,
            "user": e.get("NATS_USER"),
            "password": e.get("NATS_PASSWORD"),
            "token": e.get("NATS_TOKEN"),
            "creds_file": e.get("NATS_CREDS"),
            "nkey_seed_file": e.get("NATS_NKEY"),
            "tls_ca": e.get("NATS_CA"),
            "tls_cert": e.get("NATS_CERT"),
            "tls_key": e.get("NATS_KEY"),
            "inbox_prefix": e.get("NATSMESH_INBOX_PREFIX"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        subjects.check_token(settings.prefix, "NATSMESH_PREFIX")
        return settings

    def environment(self) -> dict[str, str]:
        """The mesh settings as environment variables, for a child process to join the same
        mesh (connection secrets are not included: they pass through the parent's environment)."""
        return {
            "NATS_URL": self.nats_url,
            "NATSMESH_PREFIX": self.prefix,
            "NATSMESH_REGISTRY_BUCKET": self.registry_bucket,
            "NATSMESH_REGISTRY_TTL": str(self.registry_ttl),
            "NATSMESH_SPANS_STREAM": self.spans_stream,
            "NATSMESH_REPLICAS": str(self.replicas),
            "NATSMESH_TRACING": "true" if self.tracing else "false",
            "NATSMESH_TRACE_PAYLOADS": "true" if self.trace_payloads else "false",
            "NATSMESH_TRACE_PAYLOAD_LIMIT": str(self.trace_payload_limit),
            "NATSMESH_TIMEOUT": str(self.timeout),
            "NATSMESH_MAX_IN_FLIGHT": str(self.max_in_flight),
        }

    @property
    def home_path(self) -> Path:
        """The folder for logs, pid files and the embedded server's data."""
        return Path(self.home).expanduser()

    def servers(self) -> list[str]:
        """The server URLs (``NATS_URL`` may list several, comma-separated)."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` with the configured security."""
        opts: dict[str, Any] = {}
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.token:
            opts["token"] = self.token
        if self.creds_file:
            opts["user_credentials"] = self.creds_file
        if self.nkey_seed_file:
            opts["nkeys_seed"] = self.nkey_seed_file
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        if self.tls_ca or self.tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
            opts["tls"] = ctx
        return opts

    def __repr__(self) -> str:  # never print secrets
        hidden = {"password", "token"}
        fields = ", ".join(
            f"{f.name}={'***' if f.name in hidden and getattr(self, f.name) else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({fields})"
