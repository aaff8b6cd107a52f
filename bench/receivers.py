"""OTLP trace receivers for the bench and the tests: gRPC (a grpcio TraceService) and
HTTP/protobuf, each recording the requests and headers it got; optionally over TLS
(mutual with ``client_ca``) and failing on plan (``planned``: a gRPC status code name,
or an HTTP status with headers, per request to come)."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclasses.dataclass(frozen=True)
class Tls:
    """A receiver's certificate and key; with ``client_ca``, clients must show a
    certificate it signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class Receiver:
    """What a receiver got; ``on_request`` runs in the receiver's thread after each export."""

    def __init__(self, on_request: Callable[[], None] | None = None) -> None:
        #: failures to answer, one per request, before answering normally again
        self.planned: list[Any] = []
        #: requests that arrived, failed on plan or not
        self.attempts = 0
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.spans = 0
        self.on_request = on_request
        self._lock = threading.Lock()

    def record(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
            self.spans += sum(
                len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
            )
        if self.on_request is not None:
            self.on_request()

    def plan(self) -> Any:
        """The failure planned for this request, if any."""
        with self._lock:
            self.attempts += 1
            return self.planned.pop(0) if self.planned else None


class GrpcReceiver(Receiver):
    """OTLP/gRPC: ``start(port)`` listens on 127.0.0.1 (port 0 picks one) and returns the port."""

    _server: Any = None

    def start(self, port: int = 0, tls: Tls | None = None) -> int:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportTraceServiceResponse:
                failure = receiver.plan()
                if failure is not None:
                    context.abort(getattr(grpc.StatusCode, failure), "planned failure")
                receiver.record(request, dict(context.invocation_metadata()))
                return ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        if tls is None:
            bound = self._server.add_insecure_port(f"127.0.0.1:{port}")
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.key.read_bytes(), tls.cert.read_bytes())],
                root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
                require_client_auth=tls.client_ca is not None,
            )
            bound = self._server.add_secure_port(f"127.0.0.1:{port}", credentials)
        if not bound:
            raise OSError(f"the gRPC receiver could not listen on port {port}")
        self._server.start()
        return int(bound)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None


class HttpReceiver(Receiver):
    """OTLP/HTTP protobuf: ``start(port)`` listens on 127.0.0.1 and returns the port."""

    _server: http.server.ThreadingHTTPServer | None = None

    def start(self, port: int = 0, tls: Tls | None = None) -> int:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failure = receiver.plan()
                if failure is not None:
                    status, headers = failure
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                elif self.headers.get("Content-Encoding") == "deflate":
                    import zlib

                    body = zlib.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.record(ExportTraceServiceRequest.FromString(body), headers)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            if tls.client_ca is not None:
                context.load_verify_locations(tls.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def serve(protocol: str) -> None:
    """Run a receiver that keeps only its span count: print its port, then answer ``count``
    on stdin with the spans received so far; stop at end of input."""
    import sys

    class Counting(GrpcReceiver if protocol == "grpc" else HttpReceiver):  # type: ignore[misc]
        def record(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.spans += n

    receiver = Counting()
    print(receiver.start(), flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(receiver.spans, flush=True)
    receiver.stop()


if __name__ == "__main__":
    import sys

    serve(sys.argv[1])
