"""Span messages to an OTLP receiver: the request encoded by ``otlp_encode``, sent as raw
bytes over gRPC (``TraceService/Export``) or HTTP (``POST /v1/traces``, protobuf).

Both transports keep what OpenTelemetry's exporters offered: TLS (a private CA, a client
certificate), headers on every export, gzip (and, over HTTP, deflate), and retries with
exponential backoff and jitter for up to ``timeout`` seconds on the errors the OTLP
specification calls transient (gRPC: UNAVAILABLE, RESOURCE_EXHAUSTED and the like; HTTP:
429, 502, 503, 504 and connection errors, honouring ``Retry-After``).
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from natsmesh.tracing.otlp_encode import OtlpEncoder
from natsmesh.wire import SpanMessage

log = logging.getLogger("natsmesh.collector")

DEFAULT_GRPC_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "http://127.0.0.1:4318"
COMPRESSIONS = ("none", "gzip", "deflate")
#: the OTLP/gRPC method a request goes to
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: the largest export request: receivers refuse more than 4 MiB by default (gRPC's
#: limit, Tempo's and the OpenTelemetry Collector's), so a batch is split below it
MAX_REQUEST_BYTES = 4_000_000
#: the first backoff after a transient failure (seconds); doubled each time, ±20% jitter
FIRST_BACKOFF = 1.0
#: HTTP statuses worth a retry (the OTLP specification's)
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: HTTP statuses that refuse the request itself (bad or too large): sending it again
#: cannot help, unlike an authentication or endpoint error, which a fix on either side can
REJECTING_STATUSES = frozenset({400, 413})
#: gRPC status codes that refuse the request itself
REJECTING_CODES = frozenset({"INVALID_ARGUMENT"})
#: gRPC status codes worth a retry, by name (the OTLP specification's)
RETRYABLE_CODES = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
     "UNAVAILABLE", "DATA_LOSS"}
)  # fmt: skip


class ExportFailed(RuntimeError):
    """The OTLP receiver did not take a batch (after the retries)."""


class Rejected(ExportFailed):
    """The OTLP receiver refused the request itself (HTTP 400, gRPC ``INVALID_ARGUMENT``):
    sending it again cannot succeed."""


class Transient(Exception):
    """An attempt failed in a way worth retrying, after ``delay`` seconds if the receiver
    said so."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


def parse_headers(
    items: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Export headers: ``OTEL_EXPORTER_OTLP_HEADERS`` (``k=v,k2=v2``), then ``items``
    (``k=v`` each) on top; names are lower-cased as gRPC metadata requires."""
    from urllib.parse import unquote

    e = os.environ if env is None else env
    raw = [p for p in e.get("OTEL_EXPORTER_OTLP_HEADERS", "").split(",") if p.strip()]
    headers: dict[str, str] = {}
    for item in [*raw, *items]:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"header {item!r} is not NAME=VALUE")
        headers[unquote(name.strip()).lower()] = unquote(value.strip())
    return headers


def retrying(attempt: Callable[[float], None], timeout: float, stop: threading.Event) -> None:
    """Call ``attempt(seconds_left)`` until it returns; retry a :class:`Transient` failure
    with backoff while time is left and ``stop`` is not set, else raise
    :class:`ExportFailed`."""
    deadline = time.monotonic() + timeout
    backoff = FIRST_BACKOFF
    while True:
        try:
            attempt(max(deadline - time.monotonic(), 0.001))
            return
        except Transient as exc:
            delay = exc.delay if exc.delay is not None else backoff * random.uniform(0.8, 1.2)
            backoff *= 2
            if delay > deadline - time.monotonic() or stop.wait(delay):
                raise ExportFailed(f"{exc} (gave up after {timeout:g} s)") from exc


class OtlpSender:
    """Exports span messages to an OTLP receiver over gRPC or HTTP/protobuf.

    ``https://`` endpoints use TLS (``ca_file`` to trust a private CA; ``client_cert`` and
    ``client_key`` for mutual TLS; the ``OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE``,
    ``..._CLIENT_CERTIFICATE`` and ``..._CLIENT_KEY`` variables when these are not
    given); ``headers`` go with every export (authentication); ``compression`` is
    ``none``, ``gzip`` or (HTTP only) ``deflate``. A failed export is retried with backoff
    for up to ``timeout`` seconds. ``send`` is ``post(encode(spans))``; not thread-safe.
    """

    def __init__(
        self,
        endpoint: str,
        protocol: str = "grpc",
        timeout: float = 10.0,
        *,
        headers: Mapping[str, str] | None = None,
        compression: str = "none",
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError("protocol is 'grpc' or 'http'")
        if compression not in COMPRESSIONS or (protocol == "grpc" and compression == "deflate"):
            raise ValueError("compression is 'none' or 'gzip' (or 'deflate' over HTTP)")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"OTLP endpoint {endpoint!r} must start with http:// or https://")
        self.protocol = protocol
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._encoder = OtlpEncoder()
        self._stop = threading.Event()
        tls = _Tls(ca_file, client_cert, client_key) if endpoint.startswith("https://") else None
        headers = dict(headers or {})
        self._transport: _Grpc | _Http
        if protocol == "grpc":
            self._transport = _Grpc(self.endpoint, headers, compression, tls)
        else:
            if not self.endpoint.endswith("/v1/traces"):
                self.endpoint += "/v1/traces"
            self._transport = _Http(self.endpoint, headers, compression, tls)

    def encode(self, spans: Sequence[SpanMessage]) -> tuple[bytes, int]:
        """An ``ExportTraceServiceRequest``'s bytes and the number of spans in it."""
        return self._encoder.encode(spans)

    def requests(self, spans: Sequence[SpanMessage], per_request: int) -> list[tuple[bytes, int]]:
        """The spans as export requests of at most ``per_request`` spans and
        ``MAX_REQUEST_BYTES`` each (a span larger than that on its own is left out)."""
        out: list[tuple[bytes, int]] = []
        for i in range(0, len(spans), max(per_request, 1)):
            self._fit(spans[i : i + per_request], out)
        return out

    def _fit(self, spans: Sequence[SpanMessage], out: list[tuple[bytes, int]]) -> None:
        request, count = self._encoder.encode(spans)
        if len(request) <= MAX_REQUEST_BYTES:
            if count:
                out.append((request, count))
        elif len(spans) > 1:
            half = len(spans) // 2
            self._fit(spans[:half], out)
            self._fit(spans[half:], out)
        else:
            log.warning(
                "left out a span of %d bytes (the limit is %d)", len(request), MAX_REQUEST_BYTES
            )

    def post(self, request: bytes) -> None:
        """Send encoded spans; raises :class:`ExportFailed` when the receiver did not
        take them."""
        retrying(self._transport.attempt(request), self.timeout, self._stop)

    def send(self, spans: Sequence[SpanMessage]) -> int:
        """Encode and send; returns the number of spans sent."""
        request, count = self.encode(spans)
        if count:
            self.post(request)
        return count

    def close(self) -> None:
        """Stop retrying and close the channel or connection pool."""
        self._stop.set()
        self._transport.close()


class _Tls:
    """TLS material, from the arguments or OpenTelemetry's variables."""

    def __init__(self, ca_file: str | None, client_cert: str | None, client_key: str | None):
        env = os.environ

        def pick(given: str | None, name: str) -> str | None:
            return (
                given
                or env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
                or env.get(f"OTEL_EXPORTER_OTLP_{name}")
            )

        self.ca_file = pick(ca_file, "CERTIFICATE")
        self.client_cert = pick(client_cert, "CLIENT_CERTIFICATE")
        self.client_key = pick(client_key, "CLIENT_KEY")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        for path in (self.ca_file, self.client_cert, self.client_key):
            if path is not None and not os.path.isfile(path):
                raise OSError(f"cannot read {path}: no such file")


class _Grpc:
    """OTLP/gRPC: a channel whose ``Export`` method takes and returns raw bytes."""

    def __init__(
        self, endpoint: str, headers: dict[str, str], compression: str, tls: _Tls | None
    ) -> None:
        import grpc

        self._grpc = grpc
        self._target = endpoint.split("://", 1)[1]
        self._metadata = tuple(headers.items())
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._credentials = None
        if tls is not None:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file),
                private_key=_read(tls.client_key),
                certificate_chain=_read(tls.client_cert),
            )
        self._lock = threading.Lock()
        self._closed = False
        self._open()

    def _open(self) -> None:
        grpc = self._grpc
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self._target, compression=self._compression)
        else:
            self._channel = grpc.secure_channel(
                self._target, self._credentials, compression=self._compression
            )
        # no serializers: the request is bytes already, the response stays bytes
        self._export = self._channel.unary_unary(EXPORT_METHOD)

    def attempt(self, request: bytes) -> Callable[[float], None]:
        def attempt(seconds: float) -> None:
            try:
                self._export(request, timeout=seconds, metadata=self._metadata)
            except self._grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                reason = f"OTLP/gRPC export to {self._target}: {code.name} {exc.details()}"  # type: ignore[attr-defined]
                if code.name in REJECTING_CODES:
                    raise Rejected(reason) from exc
                if code.name not in RETRYABLE_CODES:
                    raise ExportFailed(reason) from exc
                if code.name == "UNAVAILABLE":
                    # a fresh channel reconnects now, not after the old one's backoff
                    with self._lock:
                        if not self._closed:
                            self._channel.close()
                            self._open()
                raise Transient(reason) from exc

        return attempt

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._channel.close()


class _Http:
    """OTLP/HTTP: ``POST`` of the protobuf bytes on a kept-alive connection (httpx)."""

    def __init__(
        self, url: str, headers: dict[str, str], compression: str, tls: _Tls | None
    ) -> None:
        import httpx

        self._httpx = httpx
        self.url = url
        self._compression = compression
        self._headers = {**headers, "content-type": "application/x-protobuf"}
        if compression != "none":
            self._headers["content-encoding"] = compression
        verify: Any = True
        if tls is not None:
            import ssl

            verify = ssl.create_default_context(cafile=tls.ca_file)
            if tls.client_cert:
                verify.load_cert_chain(tls.client_cert, tls.client_key)
        self._client = httpx.Client(verify=verify)

    def attempt(self, request: bytes) -> Callable[[float], None]:
        if self._compression == "gzip":
            request = _gzip(request)
        elif self._compression == "deflate":
            request = zlib.compress(request)

        def attempt(seconds: float) -> None:
            httpx = self._httpx
            try:
                response = self._client.post(
                    self.url, content=request, headers=self._headers, timeout=seconds
                )
            except (httpx.TransportError, OSError) as exc:
                raise Transient(
                    f"OTLP/HTTP export to {self.url}: {exc or type(exc).__name__}"
                ) from exc
            if 200 <= response.status_code < 300:
                return
            reason = (
                f"OTLP/HTTP export to {self.url}: {response.status_code} {response.reason_phrase}"
            )
            if response.status_code in REJECTING_STATUSES:
                raise Rejected(reason)
            if response.status_code not in RETRYABLE_STATUSES:
                raise ExportFailed(reason)
            raise Transient(reason, retry_after(response.headers.get("retry-after")))

        return attempt

    def close(self) -> None:
        self._client.close()


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header's delay in seconds (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return max(when.timestamp() - time.time(), 0.0)
    return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None


def _gzip(data: bytes) -> bytes:
    """gzip at zlib's default level (6): most of level 9's gain at a fraction of its CPU."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()
