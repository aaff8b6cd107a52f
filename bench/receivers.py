"""OTLP trace receivers for the bench and the tests: gRPC (a grpcio TraceService) and
HTTP/protobuf, each recording the requests and headers it got."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Receiver:
    """What a receiver got; ``on_request`` runs in the receiver's thread after each export."""

    def __init__(self, on_request: Callable[[], None] | None = None) -> None:
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


class GrpcReceiver(Receiver):
    """OTLP/gRPC: ``start(port)`` listens on 127.0.0.1 (port 0 picks one) and returns the port."""

    _server: Any = None

    def start(self, port: int = 0) -> int:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportTraceServiceResponse:
                receiver.record(request, dict(context.invocation_metadata()))
                return ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        bound = self._server.add_insecure_port(f"127.0.0.1:{port}")
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

    def start(self, port: int = 0) -> int:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
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
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
