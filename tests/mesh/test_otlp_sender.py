"""The OTLP sender against real receivers (bench/receivers.py), gRPC and HTTP: transient
failures retried (Retry-After honoured), permanent ones not, a deadline on retries,
mutual TLS, deflate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench.receivers import GrpcReceiver, HttpReceiver, Receiver, Tls
from natsmesh.tracing import otlp
from natsmesh.tracing.otlp import ExportFailed, OtlpSender, Rejected, retry_after
from natsmesh.wire import SpanMessage

SPANS = [
    SpanMessage(trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", name="call", start=1, end=2,
                service="svc", instance="svc-1", attrs={"n": i})
    for i in range(5)
]  # fmt: skip

TRANSIENT = {"grpc": "UNAVAILABLE", "http": (503, {})}
PERMANENT = {"grpc": "INVALID_ARGUMENT", "http": (400, {})}
UNAUTHORISED = {"grpc": "UNAUTHENTICATED", "http": (401, {})}


@pytest.fixture(params=["grpc", "http"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "FIRST_BACKOFF", 0.01)


def started(protocol: str, tls: Tls | None = None) -> tuple[Receiver, int]:
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    return receiver, receiver.start(0, tls)


def test_a_transient_failure_is_retried(protocol: str, fast_backoff: None) -> None:
    receiver, port = started(protocol)
    receiver.planned = [TRANSIENT[protocol], TRANSIENT[protocol]]
    sender = OtlpSender(f"http://127.0.0.1:{port}", protocol, timeout=10)
    try:
        assert sender.send(SPANS) == 5
    finally:
        sender.close()
        receiver.stop()
    assert receiver.attempts == 3
    assert receiver.spans == 5
    [request] = receiver.requests
    assert [s.span_id.hex() for s in request.resource_spans[0].scope_spans[0].spans] == [
        s.span_id for s in SPANS
    ]


def test_a_permanent_failure_is_not_retried(protocol: str, fast_backoff: None) -> None:
    receiver, port = started(protocol)
    receiver.planned = [PERMANENT[protocol]]  # a retry would succeed
    sender = OtlpSender(f"http://127.0.0.1:{port}", protocol, timeout=10)
    try:
        with pytest.raises(Rejected, match=r"INVALID_ARGUMENT|400"):
            sender.send(SPANS)
    finally:
        sender.close()
        receiver.stop()
    assert receiver.attempts == 1 and receiver.spans == 0


def test_an_authentication_error_is_not_retried_nor_a_rejection(
    protocol: str, fast_backoff: None
) -> None:
    """Not retried by the sender, but not the request's fault either: the collector keeps
    the spans (a fixed token sends them), where it drops a rejected request."""
    receiver, port = started(protocol)
    receiver.planned = [UNAUTHORISED[protocol]]
    sender = OtlpSender(f"http://127.0.0.1:{port}", protocol, timeout=10)
    try:
        with pytest.raises(ExportFailed, match=r"UNAUTHENTICATED|401") as failed:
            sender.send(SPANS)
        assert not isinstance(failed.value, Rejected)
    finally:
        sender.close()
        receiver.stop()
    assert receiver.attempts == 1 and receiver.spans == 0


def test_retries_end_at_the_timeout(protocol: str, fast_backoff: None) -> None:
    receiver, port = started(protocol)
    receiver.planned = [TRANSIENT[protocol]] * 1000
    sender = OtlpSender(f"http://127.0.0.1:{port}", protocol, timeout=0.3)
    try:
        with pytest.raises(ExportFailed, match=r"gave up after 0\.3 s"):
            sender.send(SPANS)
    finally:
        sender.close()
        receiver.stop()
    assert 2 <= receiver.attempts < 1000 and receiver.spans == 0


def test_http_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "FIRST_BACKOFF", 1000.0)  # without Retry-After: give up
    receiver, port = started("http")
    receiver.planned = [(429, {"Retry-After": "0"}), (502, {"Retry-After": "0.01"})]
    sender = OtlpSender(f"http://127.0.0.1:{port}", "http", timeout=10)
    try:
        sender.send(SPANS)
    finally:
        sender.close()
        receiver.stop()
    assert receiver.attempts == 3 and receiver.spans == 5
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("garbage") is None and retry_after("-3") == 0.0


def test_http_deflate() -> None:
    receiver, port = started("http")
    sender = OtlpSender(f"http://127.0.0.1:{port}/", "http", compression="deflate")
    try:
        sender.send(SPANS)
    finally:
        sender.close()
        receiver.stop()
    assert receiver.spans == 5
    assert receiver.headers[0]["content-encoding"] == "deflate"
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"


def certificates(folder: Path) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1 and a client certificate, both signed by it."""
    paths = {n: folder / n for n in ("ca.key", "ca.pem", "ext.cnf")}
    paths["ext.cnf"].write_text("subjectAltName=IP:127.0.0.1\n")
    run = ["openssl"]
    subprocess.run(
        [*run, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", paths["ca.key"],
         "-out", paths["ca.pem"], "-days", "1", "-subj", "/CN=natsmesh test CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    for who in ("server", "client"):
        key, csr, cert = (folder / f"{who}.{x}" for x in ("key", "csr", "pem"))
        subprocess.run(
            [*run, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*run, "x509", "-req", "-in", csr, "-CA", paths["ca.pem"], "-CAkey", paths["ca.key"],
             "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", paths["ext.cnf"]],
            check=True, capture_output=True,
        )  # fmt: skip
        paths[f"{who}.key"], paths[f"{who}.pem"] = key, cert
    return paths


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_mutual_tls(
    protocol: str, tmp_path: Path, fast_backoff: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = certificates(tmp_path)
    receiver, port = started(protocol, Tls(p["server.pem"], p["server.key"], p["ca.pem"]))
    url = f"https://127.0.0.1:{port}"
    good = OtlpSender(
        url, protocol, 5, ca_file=str(p["ca.pem"]),
        client_cert=str(p["client.pem"]), client_key=str(p["client.key"]),
    )  # fmt: skip
    anonymous = OtlpSender(url, protocol, 0.5, ca_file=str(p["ca.pem"]))
    untrusting = OtlpSender(url, protocol, 0.5)  # the system's CAs do not know ours
    # OpenTelemetry's variables stand in for the options
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(p["ca.pem"]))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", str(p["client.pem"]))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(p["client.key"]))
    from_env = OtlpSender(url, protocol, 5)
    try:
        good.send(SPANS)
        from_env.send(SPANS)
        for sender in (anonymous, untrusting):
            with pytest.raises(ExportFailed):
                sender.send(SPANS)
    finally:
        for sender in (good, from_env, anonymous, untrusting):
            sender.close()
        receiver.stop()
    assert receiver.spans == 10 and len(receiver.requests) == 2


def test_bad_tls_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot read"):
        OtlpSender("https://127.0.0.1:4317", ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="needs its key"):
        OtlpSender("https://127.0.0.1:4317", client_cert=str(tmp_path / "c.pem"))


def test_requests_are_split_by_spans_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    def span_ids(requests: list[tuple[bytes, int]]) -> list[list[str]]:
        out = []
        for body, count in requests:
            request = ExportTraceServiceRequest.FromString(body)
            ids = [
                s.span_id.hex()
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            ]
            assert len(ids) == count
            out.append(ids)
        return out

    spans = [
        SpanMessage(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", name="call", start=1,
                    end=2, service="svc", attrs={"big": "x" * (1000 if i == 4 else 10)})
        for i in range(10)
    ]  # fmt: skip
    ids = [s.span_id for s in spans]
    sender = OtlpSender("http://127.0.0.1:1")
    try:
        assert span_ids(sender.requests(spans, 3)) == [ids[0:3], ids[3:6], ids[6:9], ids[9:]]
        monkeypatch.setattr(otlp, "MAX_REQUEST_BYTES", 300)
        # halves until each request fits; the big span alone does not, and is left out
        requests = sender.requests(spans, 10)
        assert [i for request in span_ids(requests) for i in request] == ids[:4] + ids[5:]
        assert len(requests) > 1 and all(len(body) <= 300 for body, _n in requests)
    finally:
        sender.close()
