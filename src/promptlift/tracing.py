"""Traces of what promptlift does, as OpenTelemetry spans exported over OTLP/HTTP (the ``otel``
extra), or nothing at all.

    promptlift.run                 one optimization (optimizer, models, run id, stop reason)
    └ promptlift.evaluation        one candidate scored on a split (or a minibatch, or the test split)
      └ promptlift.row             one dataset row: its answer and its score
        ├ chat {model}             one model call (``client.traced``), GenAI semantic conventions
        └ execute_tool {name}      one tool call of an agent

A client owns one tracer, made from ``ClientConfig.tracing`` or, when that is None, from the
standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variables; the
optimize layer opens its spans through ``client.tracer``, and nesting follows the caller's context
(``carry`` takes it across to the client's loop thread for the sync API). With neither set, or
``OTEL_SDK_DISABLED=true``, the tracer is ``NO_TRACER``: a span is one shared object that does
nothing, and ``opentelemetry`` is never imported. Tracing asked for in the config without the extra
installed is a ``ConfigError``; asked for only by the environment, one warning and no tracing.

Every text attribute, event and status message passes through ``secrets.redact`` on its way in,
and exceptions are recorded by type and redacted message only (no stack trace, whose frames may
show local values): no credential reaches the exporter. Message contents are recorded only with
``capture_content`` (or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``), redacted too.

Thread-safety: a tracer may be used from any thread; each span belongs to the code that opened it.
"""

from __future__ import annotations

import contextvars
import functools
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from promptlift.errors import ConfigError
from promptlift.log import get_logger
from promptlift.secrets import redact

T = TypeVar("T")
Attributes = Mapping[str, "str | bool | int | float | Sequence[str] | None"]
log = get_logger("tracing")

TRACES_PATH = "/v1/traces"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TracingConfig:
    """Where spans go and what they hold.

    ``otlp_endpoint``: the collector's OTLP/HTTP base URL (``http://localhost:4318``; ``/v1/traces``
    is added unless the URL already ends with it); None takes ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the
    exporter's other standard variables (headers, timeout, certificates). ``capture_content``: put
    the messages sent and the answers in the model-call spans (``gen_ai.input.messages``,
    ``gen_ai.output.messages``), redacted; off by default, since prompts and rows may be private.
    ``service_name`` None: ``OTEL_SERVICE_NAME``, else "promptlift".
    """

    otlp_endpoint: str | None = None
    capture_content: bool = False
    service_name: str | None = None

    def __post_init__(self) -> None:
        endpoint = self.otlp_endpoint
        if endpoint is not None and not (
            isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))
        ):
            raise ConfigError(
                f"tracing: otlp_endpoint must be an http:// or https:// URL, got {redact(str(endpoint))!r}"
            )

    def traces_url(self) -> str | None:
        """The URL spans are posted to; None: the exporter reads it from the environment."""
        if self.otlp_endpoint is None:
            return None
        base = self.otlp_endpoint.rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class Span:
    """One span being recorded; this base records nothing (``NO_TRACER``'s)."""

    __slots__ = ()

    def set(self, key: str, value: str | bool | int | float | Sequence[str] | None) -> None:
        """Set one attribute; None is left out; text is redacted."""

    def update(self, attributes: Attributes) -> None:
        for key, value in attributes.items():
            self.set(key, value)

    def fail(self, error: BaseException) -> None:
        """Mark the span failed: ``error.type``, an error status and an ``exception`` event, redacted."""

    def end(self) -> None:
        """End a span from ``Tracer.start`` (a ``Tracer.span`` block ends its own)."""

    def __enter__(self) -> Span:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        return None


_NO_SPAN = Span()


class Tracer:
    """The no-op tracer, and the interface of the real one: ``span`` for a block that its children
    nest under, ``start`` for a span ended by hand (a model call, a stream)."""

    enabled = False
    capture_content = False

    def span(self, name: str, attributes: Attributes | None = None) -> Span:
        """``with tracer.span("promptlift.row", {...}) as span:`` — the current span for the block;
        an exception leaving it marks it failed."""
        return _NO_SPAN

    def start(self, name: str, attributes: Attributes | None = None, *, client: bool = False) -> Span:
        """A span under the current one, not made current (nothing nests under it); ``client``:
        a call to another service (SpanKind.CLIENT)."""
        return _NO_SPAN

    def carry(self, coro: Awaitable[T]) -> Awaitable[T]:
        """``coro``, run under the caller's current span wherever it is finally awaited."""
        return coro

    def flush(self) -> None:
        """Send the spans ended so far (they are otherwise sent in batches, every few seconds)."""

    def shutdown(self) -> None:
        """Flush and stop the exporter; spans started afterwards are dropped."""


NO_TRACER = Tracer()

# What a wrapper below the model-call span learned that the span should say (the replica that
# served the call): set by ``client.traced`` around each call, None when no call span is open.
_notes: contextvars.ContextVar[dict[str, str | int] | None] = contextvars.ContextVar(
    "promptlift_call_notes", default=None
)


def note(attributes: Mapping[str, str | int | None]) -> None:
    """Add attributes to the model-call span in flight; nothing when tracing is off (one lookup).
    A later note overrides an earlier one (a retry's replica replaces the failed attempt's)."""
    notes = _notes.get()
    if notes is not None:
        notes.update({k: v for k, v in attributes.items() if v is not None})


def collect_notes() -> tuple[dict[str, str | int], contextvars.Token[dict[str, str | int] | None]]:
    """A fresh holder for the call about to be made, and the token that ends it (``_notes.reset``)."""
    notes: dict[str, str | int] = {}
    return notes, _notes.set(notes)


def end_notes(token: contextvars.Token[dict[str, str | int] | None]) -> None:
    _notes.reset(token)


def _env_endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def tracer_for(config: TracingConfig | None) -> Tracer:
    """The tracer a client uses: OpenTelemetry's when tracing is configured (``config``, else the
    environment), ``NO_TRACER`` otherwise."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() in _TRUE:
        return NO_TRACER
    if config is None:
        if not _env_endpoint():
            return NO_TRACER
        capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in _TRUE
        config = TracingConfig(capture_content=capture)
        from_env = True
    else:
        from_env = False
    try:
        from promptlift._otel import OtelTracer
    except ImportError as exc:
        hint = "tracing needs the otel extra: pip install 'promptlift[otel]'"
        if from_env:
            _warn_missing(f"{hint} ({exc})")
            return NO_TRACER
        raise ConfigError(f"{hint} ({exc})") from None
    return OtelTracer(config)


@functools.cache
def _warn_missing(why: str) -> None:
    """Once per process, not once per client."""
    log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but %s; no spans are sent", why)
