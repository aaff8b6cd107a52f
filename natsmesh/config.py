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


def _setting(default: Any, env: str, *, secret: bool = False, inherit: bool = True) -> Any:
    """A settings field read from ``env``: the one place each variable is named.

    ``secret`` keeps it out of ``repr`` and of a child's environment unless asked for;
    ``inherit=False`` keeps it from children at all (an agent's own inbox prefix)."""
    return dataclasses.field(
        default=default, metadata={"env": env, "secret": secret, "inherit": inherit}
    )


def _parse(raw: str, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in _TRUE
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    return raw


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a process needs to join a mesh. Build with :meth:`from_env`.

    Each field names its environment variable (the table below is the only list of
    them); CLI flags arrive as keyword overrides of :meth:`from_env`.
    """

    nats_url: str = _setting(DEFAULT_NATS_URL, "NATS_URL")
    prefix: str = _setting(subjects.DEFAULT_PREFIX, "NATSMESH_PREFIX")
    registry_bucket: str = _setting(subjects.DEFAULT_REGISTRY_BUCKET, "NATSMESH_REGISTRY_BUCKET")
    #: seconds an instance stays in the registry without a heartbeat; heartbeats come every third
    registry_ttl: float = _setting(DEFAULT_REGISTRY_TTL, "NATSMESH_REGISTRY_TTL")
    spans_stream: str = _setting(subjects.DEFAULT_SPANS_STREAM, "NATSMESH_SPANS_STREAM")
    spans_max_age: float = _setting(DEFAULT_SPANS_MAX_AGE, "NATSMESH_SPANS_MAX_AGE")
    spans_max_bytes: int = _setting(DEFAULT_SPANS_MAX_BYTES, "NATSMESH_SPANS_MAX_BYTES")
    #: replicas of the registry bucket and span stream (3 on a three-node cluster)
    replicas: int = _setting(1, "NATSMESH_REPLICAS")
    tracing: bool = _setting(True, "NATSMESH_TRACING")
    #: record request and reply payloads on SERVER spans (redacted, truncated)
    trace_payloads: bool = _setting(False, "NATSMESH_TRACE_PAYLOADS")
    trace_payload_limit: int = _setting(DEFAULT_TRACE_PAYLOAD_LIMIT, "NATSMESH_TRACE_PAYLOAD_LIMIT")
    #: head sampling of traces that start here, as OpenTelemetry names it (``parentbased_
    #: traceidratio`` with a ratio); unset: every trace is recorded
    traces_sampler: str | None = _setting(None, "OTEL_TRACES_SAMPLER")
    traces_sampler_arg: str | None = _setting(None, "OTEL_TRACES_SAMPLER_ARG")
    timeout: float = _setting(DEFAULT_TIMEOUT, "NATSMESH_TIMEOUT")
    max_in_flight: int = _setting(DEFAULT_MAX_IN_FLIGHT, "NATSMESH_MAX_IN_FLIGHT")
    home: str = _setting(DEFAULT_HOME, "NATSMESH_HOME")
    debug: bool = _setting(False, "NATSMESH_DEBUG")
    #: where the collector sends OTLP (``natsmesh collector``)
    telemetry_endpoint: str | None = _setting(None, "TELEMETRY_ENDPOINT")
    #: Tempo's HTTP API, the default of ``natsmesh trace --tempo``
    tempo_url: str | None = _setting(None, "TEMPO_URL")
    # connection security, all optional
    user: str | None = _setting(None, "NATS_USER")
    password: str | None = _setting(None, "NATS_PASSWORD", secret=True)
    token: str | None = _setting(None, "NATS_TOKEN", secret=True)
    creds_file: str | None = _setting(None, "NATS_CREDS")
    nkey_seed_file: str | None = _setting(None, "NATS_NKEY")
    tls_ca: str | None = _setting(None, "NATS_CA")
    tls_cert: str | None = _setting(None, "NATS_CERT")
    tls_key: str | None = _setting(None, "NATS_KEY")
    #: inbox prefix (``_INBOX_<agent>`` lets permissions keep replies private)
    inbox_prefix: str | None = _setting(None, "NATSMESH_INBOX_PREFIX", inherit=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment; keyword overrides that are not ``None`` win."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = e.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(raw, f.default, f.metadata["env"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        subjects.check_token(settings.prefix, "NATSMESH_PREFIX")
        return settings

    def environment(self, secrets: bool = False) -> dict[str, str]:
        """The settings as environment variables, for a child process to join the same mesh
        (every field that is set; secrets only with ``secrets``: a child that the CLI starts
        after a ``--password`` flag needs it)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata["inherit"] or (f.metadata["secret"] and not secrets):
                continue
            if value is not None:
                out[f.metadata["env"]] = _render(value)
        return out

    @staticmethod
    def variables() -> dict[str, str]:
        """Every variable natsmesh reads, by field name (for docs and tests)."""
        return {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}

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
        hidden = {f.name for f in dataclasses.fields(self) if f.metadata["secret"]}
        fields = ", ".join(
            f"{f.name}={'***' if f.name in hidden and getattr(self, f.name) else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({fields})"
