"""A record of every call and every attempt, aggregated per model and provider.

Two wrappers feed one ``Metrics`` collector:

- ``RecordingProvider`` wraps the whole stack (outermost): one ``CallRecord`` per call — model,
  provider, wall-clock latency, tokens, cost, attempts, cache hit, fallback, outcome, error type.
  It also logs the record (``promptlift.calls`` logger, DEBUG, fields under ``extra["call"]``)
  and hands it to the optional call log.
- ``AttemptMeter`` wraps the provider (innermost): it counts what actually went on the wire,
  so ``attempts`` equals the server's request log, and ``retries = attempts - calls sent``.

Costs: ``cost_usd`` is new spend only (cache hits excluded); ``cached_cost_usd`` is what the hits
would have cost. Latency percentiles are exact over the last ``window`` calls per model.

Thread-safety: the collector is guarded by a ``threading.Lock``.
OpenTelemetry spans are not emitted (the SDK is not a dependency).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from promptlift.client.alerts import Alerts
from promptlift.client.cache import route_of
from promptlift.errors import PromptliftError, ProviderError
from promptlift.jsonout import dumps
from promptlift.log import get_logger
from promptlift.providers.base import Provider, closing
from promptlift.types import Completion, CompletionRequest, StreamEvent

call_log = get_logger("calls")
REFRESHED_AFTER = "AuthenticationFailed"  # what a request retried with a fresh credential failed with


@dataclass(frozen=True)
class CallRecord:
    """One call as the caller saw it."""

    model: str  # the model asked for
    provider: str
    served_by: str  # the model that answered (after any fallback); "" on failure
    started: float  # time.time()
    latency_s: float
    ok: bool
    error_type: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # as reported on the completion (a hit keeps the original cost)
    attempts: int = 0
    cached: bool = False
    fallback_used: bool = False
    # of the input, read from the provider's prompt cache, and what that saved (Completion.cache_saved_usd)
    cached_input_tokens: int = 0
    cache_saved_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; 0.0 for an empty list."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Agg:
    calls: int = 0
    ok: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    attempts: int = 0  # requests sent (from the attempt meter)
    attempt_errors: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached_cost_usd: float = 0.0
    latencies: deque[float] = field(default_factory=deque)
    cached_input_tokens: int = 0  # read from the provider's prompt cache (calls sent)
    cache_saved_usd: float = 0.0


@dataclass(frozen=True)
class ModelStats:
    model: str
    provider: str
    calls: int
    ok: int
    failed: int
    success_rate: float
    errors: dict[str, int]  # final outcome of calls, by error type
    attempts: int  # requests sent, retries included
    retries: int
    attempt_errors: dict[str, int]  # every failed attempt, by error type
    cache_hits: int
    cache_hit_rate: float
    fallbacks: int
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached_cost_usd: float
    cached_input_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_saved_usd: float = 0.0  # what that saved: the cost at the full input price minus cost_usd


@dataclass(frozen=True)
class MetricsSnapshot:
    """Aggregates at one moment. ``models`` is keyed ``provider/model``; ``total`` sums them."""

    models: dict[str, ModelStats]
    total: ModelStats

    def to_dict(self) -> dict[str, Any]:
        return {"models": {k: asdict(v) for k, v in self.models.items()}, "total": asdict(self.total)}

    def to_json(self) -> str:
        return dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_prometheus(self, prefix: str = "promptlift") -> str:
        return _prometheus(self, prefix)


class Metrics:
    """Collects call records and attempt counts. ``listeners`` get every ``CallRecord``."""

    def __init__(self, window: int = 100_000):
        self.alerts = Alerts()  # suspicious activity, seen in every attempt (AttemptMeter)
        self.window = window
        self._aggs: dict[tuple[str, str], _Agg] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[CallRecord], None]] = []

    def _agg(self, model: str) -> _Agg:
        key = (route_of(model), model)
        agg = self._aggs.get(key)
        if agg is None:
            agg = self._aggs[key] = _Agg(latencies=deque(maxlen=self.window))
        return agg

    def record_call(self, record: CallRecord) -> None:
        """The call counts under the model asked for; its tokens and cost under the model that
        answered (after a fallback, not the first model's: that is whose bill they are on)."""
        with self._lock:
            agg = self._agg(record.model)
            agg.calls += 1
            agg.ok += record.ok
            agg.cache_hits += record.cached
            agg.fallbacks += record.fallback_used
            if record.error_type:
                agg.errors[record.error_type] += 1
            agg.latencies.append(record.latency_s)
            billed = self._agg(record.served_by) if record.served_by else agg
            if record.cached:
                billed.cached_cost_usd += record.cost_usd
            else:
                billed.input_tokens += record.input_tokens
                billed.output_tokens += record.output_tokens
                billed.cost_usd += record.cost_usd
                billed.cached_input_tokens += record.cached_input_tokens
                billed.cache_saved_usd += record.cache_saved_usd
        for listener in self.listeners:
            listener(record)

    def record_attempt(self, model: str, error_type: str = "") -> None:
        with self._lock:
            agg = self._agg(model)
            agg.attempts += 1
            if error_type:
                agg.attempt_errors[error_type] += 1

    def reset(self) -> None:
        with self._lock:
            self._aggs.clear()

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            items = [(k, _copy(a)) for k, a in self._aggs.items()]
        models = {f"{p}/{m}" if not m.startswith(p + "/") else m: _stats(p, m, a) for (p, m), a in items}
        total = _Agg()
        for _, a in items:
            _merge(total, a)
        return MetricsSnapshot(models=models, total=_stats("*", "*", total))


def _copy(a: _Agg) -> _Agg:
    return _Agg(
        a.calls,
        a.ok,
        a.cache_hits,
        a.fallbacks,
        a.attempts,
        Counter(a.attempt_errors),
        Counter(a.errors),
        a.input_tokens,
        a.output_tokens,
        a.cost_usd,
        a.cached_cost_usd,
        deque(a.latencies),
        a.cached_input_tokens,
        a.cache_saved_usd,
    )


def _merge(into: _Agg, a: _Agg) -> None:
    into.calls += a.calls
    into.ok += a.ok
    into.cache_hits += a.cache_hits
    into.fallbacks += a.fallbacks
    into.attempts += a.attempts
    into.attempt_errors.update(a.attempt_errors)
    into.errors.update(a.errors)
    into.input_tokens += a.input_tokens
    into.output_tokens += a.output_tokens
    into.cost_usd += a.cost_usd
    into.cached_cost_usd += a.cached_cost_usd
    into.latencies.extend(a.latencies)
    into.cached_input_tokens += a.cached_input_tokens
    into.cache_saved_usd += a.cache_saved_usd


def _stats(provider: str, model: str, a: _Agg) -> ModelStats:
    lat = sorted(a.latencies)
    sent = a.calls - a.cache_hits - a.errors.get("BudgetExceeded", 0)
    return ModelStats(
        model=model,
        provider=provider,
        calls=a.calls,
        ok=a.ok,
        failed=a.calls - a.ok,
        success_rate=a.ok / a.calls if a.calls else 0.0,
        errors=dict(a.errors),
        attempts=a.attempts,
        retries=max(0, a.attempts - sent),
        attempt_errors=dict(a.attempt_errors),
        cache_hits=a.cache_hits,
        cache_hit_rate=a.cache_hits / a.calls if a.calls else 0.0,
        fallbacks=a.fallbacks,
        latency_p50_s=percentile(lat, 50),
        latency_p95_s=percentile(lat, 95),
        latency_p99_s=percentile(lat, 99),
        input_tokens=a.input_tokens,
        output_tokens=a.output_tokens,
        cost_usd=a.cost_usd,
        cached_cost_usd=a.cached_cost_usd,
        cached_input_tokens=a.cached_input_tokens,
        cache_saved_usd=a.cache_saved_usd,
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_PROM_COUNTERS: list[tuple[str, str, str]] = [
    ("calls_total", "calls", "Calls made through the client."),
    ("calls_ok_total", "ok", "Calls that returned a completion."),
    ("attempts_total", "attempts", "Requests sent to providers, retries included."),
    ("retries_total", "retries", "Requests sent beyond the first of each call."),
    ("cache_hits_total", "cache_hits", "Calls answered from the cache."),
    ("fallbacks_total", "fallbacks", "Calls answered by a fallback model."),
    ("input_tokens_total", "input_tokens", "Input tokens of calls sent (cache hits excluded)."),
    ("output_tokens_total", "output_tokens", "Output tokens of calls sent (cache hits excluded)."),
    ("cost_usd_total", "cost_usd", "New spend in USD (cache hits excluded)."),
    ("cached_input_tokens_total", "cached_input_tokens", "Input tokens read from providers' prompt caches."),
    ("cache_saved_usd_total", "cache_saved_usd", "USD providers' prompt caches saved on calls sent."),
]


def _prometheus(snap: MetricsSnapshot, prefix: str) -> str:
    lines: list[str] = []
    rows = list(snap.models.values())
    for metric, attr, help_text in _PROM_COUNTERS:
        lines += [f"# HELP {prefix}_{metric} {help_text}", f"# TYPE {prefix}_{metric} counter"]
        for s in rows:
            lines.append(
                f'{prefix}_{metric}{{provider="{_label(s.provider)}",model="{_label(s.model)}"}} '
                f"{getattr(s, attr)}"
            )
    errors = f"{prefix}_errors_total"
    lines += [f"# HELP {errors} Failed calls by error type.", f"# TYPE {errors} counter"]
    for s in rows:
        for kind, n in sorted(s.errors.items()):
            lines.append(
                f'{prefix}_errors_total{{provider="{_label(s.provider)}",model="{_label(s.model)}",'
                f'type="{_label(kind)}"}} {n}'
            )
    name = f"{prefix}_call_latency_seconds"
    lines += [f"# HELP {name} Call latency, cache hits included.", f"# TYPE {name} summary"]
    for s in rows:
        labels = f'provider="{_label(s.provider)}",model="{_label(s.model)}"'
        for q, v in (("0.5", s.latency_p50_s), ("0.95", s.latency_p95_s), ("0.99", s.latency_p99_s)):
            lines.append(f'{name}{{{labels},quantile="{q}"}} {v}')
        lines.append(f"{name}_count{{{labels}}} {s.calls}")
    return "\n".join(lines) + "\n"


Sink = Callable[[CallRecord, CompletionRequest, Completion | None, PromptliftError | None], None]


# The error type a stream's record carries when its caller stopped reading before the end.
STREAM_CLOSED = "StreamClosed"


class RecordingProvider(Provider):
    """Outermost wrapper: times each call end to end and records its outcome."""

    name = "metrics"

    def __init__(
        self,
        inner: Provider,
        metrics: Metrics,
        *,
        sink: Sink | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self.inner = inner
        self.metrics = metrics
        self.sink = sink
        self.on_close = on_close

    async def acomplete(self, request: CompletionRequest) -> Completion:
        started_wall = time.time()
        started = time.perf_counter()
        try:
            completion = await self.inner.acomplete(request)
        except PromptliftError as exc:
            self._record(request, started_wall, time.perf_counter() - started, None, exc)
            raise
        self._record(request, started_wall, time.perf_counter() - started, completion, None)
        return completion

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """One record per stream, when it ends: its completion, the error that ended it, or — the
        caller stopped reading first — a failed call of type ``StreamClosed`` (its tokens unknown)."""
        started_wall = time.time()
        started = time.perf_counter()
        recorded = False
        try:
            async with closing(self.inner.astream(request)) as stream:
                async for event in stream:
                    if isinstance(event, Completion):
                        recorded = True
                        self._record(request, started_wall, time.perf_counter() - started, event, None)
                    yield event
        except PromptliftError as exc:
            recorded = True
            self._record(request, started_wall, time.perf_counter() - started, None, exc)
            raise
        finally:
            if not recorded:
                latency = time.perf_counter() - started
                self._record(request, started_wall, latency, None, None, error_type=STREAM_CLOSED)

    def _record(
        self,
        request: CompletionRequest,
        started: float,
        latency: float,
        completion: Completion | None,
        error: PromptliftError | None,
        *,
        error_type: str = "",
    ) -> None:
        c = completion
        record = CallRecord(
            model=request.model,
            provider=route_of(request.model),
            served_by=c.model if c else "",
            started=started,
            latency_s=latency,
            ok=c is not None,
            error_type=type(error).__name__ if error is not None else error_type,
            input_tokens=c.usage.input_tokens if c else 0,
            output_tokens=c.usage.output_tokens if c else 0,
            cost_usd=c.cost_usd if c else 0.0,
            # a failure's requests sent, retries included (set by the retry and fallback layers; 0 when
            # nothing was sent: refused by a budget, an open breaker or a disallowed host)
            attempts=c.attempts
            if c
            else getattr(error, "attempts", 0)
            if isinstance(error, ProviderError)
            else 0,
            cached=c.cached if c else False,
            fallback_used=c.fallback_used if c else False,
            cached_input_tokens=c.usage.cached_tokens if c and not c.cached else 0,
            cache_saved_usd=c.cache_saved_usd if c and not c.cached else 0.0,
        )
        self.metrics.record_call(record)
        if self.sink is not None:
            self.sink(record, request, completion, error)
        call_log.debug(
            "call model=%s ok=%s error=%s latency_ms=%.1f cached=%s cost_usd=%.6f",
            record.model,
            record.ok,
            record.error_type or "-",
            record.latency_s * 1000,
            record.cached,
            record.cost_usd,
            extra={"call": record.to_dict()},
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
        if self.on_close is not None:
            self.on_close()


class AttemptMeter(Provider):
    """Innermost wrapper: counts each request sent, and each failed one by error type."""

    name = "attempts"

    def __init__(self, inner: Provider, metrics: Metrics):
        self.inner = inner
        self.metrics = metrics

    async def acomplete(self, request: CompletionRequest) -> Completion:
        try:
            completion = await self.inner.acomplete(request)
        except PromptliftError as exc:
            self._refused_before(request.model, getattr(exc, "requests", 1))
            self.metrics.record_attempt(request.model, type(exc).__name__)
            self.metrics.alerts.observe(request.model, time.time(), exc)
            raise
        self._refused_before(request.model, completion.attempts)
        self.metrics.record_attempt(request.model)
        return completion

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            async with closing(self.inner.astream(request)) as stream:
                async for event in stream:
                    if isinstance(event, Completion):
                        self._refused_before(request.model, event.attempts)
                        self.metrics.record_attempt(request.model)
                    yield event
        except PromptliftError as exc:
            self._refused_before(request.model, getattr(exc, "requests", 1))
            self.metrics.record_attempt(request.model, type(exc).__name__)
            self.metrics.alerts.observe(request.model, time.time(), exc)
            raise

    def _refused_before(self, model: str, sent: int) -> None:
        # A provider sends more than one request for one call only to retry a 401 with a refreshed
        # credential (providers.litellm): the requests before the last were refused so.
        for _ in range(max(0, sent - 1)):
            self.metrics.record_attempt(model, REFRESHED_AFTER)

    async def aclose(self) -> None:
        await self.inner.aclose()
