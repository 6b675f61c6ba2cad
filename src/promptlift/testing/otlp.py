"""A real OTLP/HTTP trace receiver on loopback, for tests: what a collector would get, decoded.

    with OtlpReceiver() as receiver:
        client = Client(ClientConfig(tracing=TracingConfig(otlp_endpoint=receiver.url)))
        ...
        client.close()                      # flushes the client's spans
        spans = receiver.spans              # every span received, in arrival order
        assert b"sk-canary" not in receiver.raw()

It answers ``POST /v1/traces`` as the OpenTelemetry Collector's ``otlphttp`` receiver does: a
binary protobuf ``ExportTraceServiceRequest`` (gzip or deflate bodies too) decoded with the
official ``opentelemetry-proto`` package (it comes with the ``otel`` extra), answered with an empty
``ExportTraceServiceResponse``. JSON-encoded OTLP is refused with 415. ``raw()`` is every byte
received, headers and decompressed bodies, for checking that something never left the process.

Thread-safety: each request is answered on its own thread; reading ``spans`` is safe from any thread.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it; ids as hex, attribute values as Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str  # internal, client, ...
    attributes: Mapping[str, Any]
    events: tuple[tuple[str, Mapping[str, Any]], ...]
    status: str  # "unset", "ok", "error"
    status_message: str
    resource: Mapping[str, Any]
    start_ns: int
    end_ns: int


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one binary ``ExportTraceServiceRequest``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=KINDS.get(s.kind, str(s.kind)),
                        attributes=_attrs(s.attributes),
                        events=tuple((e.name, _attrs(e.attributes)) for e in s.events),
                        status={0: "unset", 1: "ok", 2: "error"}.get(s.status.code, str(s.status.code)),
                        status_message=s.status.message,
                        resource=resource,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``spans``
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        encoding = (self.headers.get("content-encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        owner = self.server.owner
        owner.record(str(self.headers).encode() + body)
        if self.path.split("?", 1)[0] != "/v1/traces":
            self._send(404, b"")
            return
        if (self.headers.get("content-type") or "").split(";")[0].strip() != "application/x-protobuf":
            self._send(415, b"only binary protobuf OTLP is accepted here")
            return
        try:
            spans = decode(body)
        except Exception as exc:  # a body that does not parse: the exporter is told, as a collector does
            self._send(400, f"not an ExportTraceServiceRequest: {exc}".encode())
            return
        owner.add(spans)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        self._send(200, ExportTraceServiceResponse().SerializeToString())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: OtlpReceiver


class OtlpReceiver:
    """An OTLP/HTTP receiver on ``127.0.0.1`` (a free port unless ``port`` is given)."""

    def __init__(self, port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._raw: list[bytes] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, as ``TracingConfig(otlp_endpoint=)`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` take it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, data: bytes) -> None:
        with self._lock:
            self._raw.append(data)

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def raw(self) -> bytes:
        """Every request received so far: headers and decompressed body, concatenated."""
        with self._lock:
            return b"".join(self._raw)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The spans, once at least ``count`` have arrived; ``TimeoutError`` if they never do."""
        deadline = time.monotonic() + timeout_s
        while len(self.spans) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.spans)} spans received in {timeout_s}s, expected {count}")
            time.sleep(0.02)
        return self.spans
