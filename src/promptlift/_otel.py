"""The OpenTelemetry-backed tracer (``promptlift.tracing``); imported only when tracing is on.

Each tracer has its own ``TracerProvider`` (no global one is set or read), so two clients with two
collectors, or a host application's own OpenTelemetry setup, never mix; nesting still works across
them, since the current span lives in OpenTelemetry's one context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from promptlift.secrets import redact
from promptlift.tracing import Attributes, Span, Tracer, TracingConfig

T = TypeVar("T")
_MAX_STATUS = 500  # characters of an error message kept in the span's status


def _clean(value: str | bool | int | float | Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float):
        return value
    return [redact(str(v)) for v in value]


class _OtelSpan(Span):
    """``current``: entering the span's block makes it the current span (its children nest)."""

    __slots__ = ("_current", "_span", "_token")

    def __init__(self, span: trace.Span, *, current: bool = False):
        self._span = span
        self._current = current
        self._token: object | None = None

    def set(self, key: str, value: str | bool | int | float | Sequence[str] | None) -> None:
        if value is not None:
            self._span.set_attribute(key, _clean(value))

    def fail(self, error: BaseException) -> None:
        kind = type(error).__name__
        message = redact(str(error))
        self._span.set_attribute("error.type", kind)
        self._span.add_event("exception", {"exception.type": kind, "exception.message": message})
        self._span.set_status(trace.Status(trace.StatusCode.ERROR, message[:_MAX_STATUS]))

    def end(self) -> None:
        self._span.end()

    def __enter__(self) -> Span:
        if self._current:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None:
            self.fail(error)
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


class OtelTracer(Tracer):
    enabled = True

    def __init__(self, config: TracingConfig):
        self.capture_content = config.capture_content
        resource = Resource.create({"service.name": config.service_name} if config.service_name else {})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "promptlift"}))
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.traces_url())))
        self._tracer = self._provider.get_tracer("promptlift", _version())

    def _start(self, name: str, attributes: Attributes | None, kind: trace.SpanKind) -> trace.Span:
        attrs = {k: _clean(v) for k, v in (attributes or {}).items() if v is not None}
        return self._tracer.start_span(
            redact(name), kind=kind, attributes=attrs, record_exception=False, set_status_on_exception=False
        )

    def span(self, name: str, attributes: Attributes | None = None) -> Span:
        return _OtelSpan(self._start(name, attributes, trace.SpanKind.INTERNAL), current=True)

    def start(self, name: str, attributes: Attributes | None = None, *, client: bool = False) -> Span:
        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        return _OtelSpan(self._start(name, attributes, kind))

    def carry(self, coro: Awaitable[T]) -> Awaitable[T]:
        return _under(otel_context.get_current(), coro)

    def flush(self) -> None:
        self._provider.force_flush()

    def shutdown(self) -> None:
        self._provider.shutdown()


async def _under(ctx: otel_context.Context, coro: Awaitable[T]) -> T:
    token = otel_context.attach(ctx)
    try:
        return await coro
    finally:
        with contextlib.suppress(ValueError):  # a context reset elsewhere: nothing left to undo
            otel_context.detach(token)


def _version() -> str:
    from promptlift import __version__

    return __version__
