"""The one entry point for model calls: ``Client.complete`` / ``acomplete`` / ``batch`` / ``abatch``,
and ``stream`` / ``astream`` for an answer in pieces as it arrives.

A client is a stack of providers with one interface (``Provider.acomplete``); each concern the
client adds is one wrapper around the next, assembled in ``promptlift.client.stack``.

Sync calls run on a private event loop in a background thread, so ``complete`` works the same
inside and outside a running event loop (a notebook, an async web handler).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from promptlift.client.budget import (
    BudgetedProvider,
    BudgetLedger,
    budget_scope,
    carry_scope,
    carry_scope_inner,
    scoped_ledgers,
)
from promptlift.client.cache import CachingProvider, ResponseCache
from promptlift.client.concurrency import SharedLimit
from promptlift.client.config import Budget, ClientConfig
from promptlift.client.health import EndpointHealth
from promptlift.client.metrics import Metrics, MetricsSnapshot, RecordingProvider
from promptlift.client.replicas import EndpointStats, ReplicaProvider
from promptlift.client.stack import build_stack
from promptlift.client.traced import TracingProvider
from promptlift.errors import ClientClosed, NotSent, PromptliftError, UserError
from promptlift.providers.base import Provider, close_stream
from promptlift.tracing import NO_TRACER, Tracer
from promptlift.types import Completion, CompletionRequest, Message, StreamEvent, messages_from

T = TypeVar("T")
OnResult = Callable[[int, "Completion | PromptliftError"], "Awaitable[None] | None"]

DEFAULT_MODEL = "local/gemma-3-270m"

_CLOSED = "this Client is closed (close(), or the end of its `with` block): make a new Client to call models"


class _LoopThread:
    """An event loop running forever in a daemon thread, for the sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="promptlift-loop", daemon=True)
        self.thread.start()

    def check_caller(self) -> None:
        """Refuse a sync call made on this loop's own thread: it would wait for itself, forever."""
        if threading.current_thread() is self.thread:
            raise UserError(
                "a sync Client call (complete, batch) was made on the client's own loop thread, from a "
                "callback of batch(); it would wait for itself forever: make the callback async and "
                "await acomplete, or use abatch"
            )

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result()


async def _cancel_leftover_tasks() -> None:
    """Cancel tasks that libraries left on the loop (LiteLLM's logging worker), as asyncio.run does."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Client:
    """Calls models. Thread-safe; one concurrency limit shared by every caller of this client.

    ``config`` holds every knob (retry, fallback, cache, rate limits, budget); ``provider``
    replaces the LiteLLM provider at the bottom of the stack (a scripted provider in tests).

    After ``close()`` every call (``complete``, ``acomplete``, ``stream``, ``astream``, ``batch``,
    ``abatch``) and the cache
    raise ``ClientClosed``; ``metrics``, ``metrics_snapshot()`` and ``budget`` stay readable (they are
    in memory, and final). Calls still in flight when ``close()`` runs may fail with it too.
    """

    def __init__(self, config: ClientConfig | None = None, *, provider: Provider | None = None):
        self.config = config or ClientConfig()
        self._stack, self.parts = build_stack(self.config, provider)
        self._loop_thread: _LoopThread | None = None
        self._loop_lock = threading.Lock()
        self._closed = False
        # One limit for every caller: sync and async, every thread and loop, nested batches.
        self._limit = SharedLimit(self.config.concurrency)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(_CLOSED)

    @property
    def model(self) -> str:
        return self.config.chain[0] if self.config.chain else DEFAULT_MODEL

    def is_base_model(self, model: str | None = None) -> bool:
        """True for a base (completion-only) model, such as the embedded one."""
        from promptlift.providers.local import is_base_model

        return is_base_model(model or self.model)

    def request(
        self, messages: Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> CompletionRequest:
        """Build a request with this client's defaults: model, timeout, and that model's api_base."""
        params.setdefault("model", self.model)
        params.setdefault("timeout", self.config.timeout)
        params.setdefault("api_base", self.config.endpoint_of(params["model"]))
        if isinstance(params.get("stop"), (list, str)):
            stop = params["stop"]
            params["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        if isinstance(params.get("tools"), list):
            params["tools"] = tuple(params["tools"])
        return CompletionRequest(messages=messages_from(messages), **params)

    # -- async API ---------------------------------------------------------------------------
    async def acomplete(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> Completion:
        """One call through the whole stack. Raises a ``promptlift.errors`` error on failure."""
        self._check_open()
        if not isinstance(request, CompletionRequest):
            request = self.request(request, **params)
        async with self._limit:
            return await self._stack.acomplete(request)

    async def astream(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> AsyncIterator[StreamEvent]:
        """One call through the whole stack, its answer in pieces: ``TextDelta`` and
        ``ToolCallDelta`` events as they arrive, then the ``Completion`` (usage, cost), last.

        The stack applies as for ``acomplete``: the budget reserves the worst case before sending
        and settles on the final usage; retries and fallback happen only before the first event (a
        failure after it raises its typed error, and nothing is sent again); a cache hit comes as
        one delta and its completion (``cached``), and a finished stream is stored; metrics and the
        call log record one call. The call holds a slot of the concurrency limit until the stream
        ends: read it to the end, or close it (``aclose``) to give the slot back.
        """
        self._check_open()
        if not isinstance(request, CompletionRequest):
            request = self.request(request, **params)
        async with self._limit:
            events = self._stack.astream(request)
            try:
                async for event in events:
                    yield event
            finally:
                await close_stream(events)

    async def abatch(
        self,
        requests: Sequence[CompletionRequest],
        *,
        on_result: OnResult | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Completion | PromptliftError]:
        """Many calls, results in input order; a failure is returned in place, never raised.

        At most ``config.concurrency`` workers per batch, and every call still takes a slot of the
        client's one limit, so batches inside batches (or beside other callers) never multiply
        it. ``on_result(index, result)`` is called as each call ends, in completion order; if it
        returns an awaitable (an ``async def`` callback), the worker awaits it before taking its next
        item, so slow follow-up work (a judge's call) holds up that worker only. Once ``stop()``
        returns true no new call is started (calls already started finish, including any waiting
        in a rate limit or a retry's backoff); the items never started are ``NotSent`` errors in
        place, and ``on_result`` is not called for them.
        """
        self._check_open()
        results: list[Completion | PromptliftError | None] = [None] * len(requests)
        queue = iter(range(len(requests)))

        async def worker() -> None:
            for index in queue:  # a shared iterator: each index is taken by exactly one worker
                if stop is not None and stop():
                    results[index] = NotSent(f"not sent: the batch was stopped before item {index}")
                    continue
                try:
                    result: Completion | PromptliftError = await self.acomplete(requests[index])
                except PromptliftError as exc:
                    result = exc
                results[index] = result
                if on_result is not None:
                    follow_up = on_result(index, result)
                    if inspect.isawaitable(follow_up):
                        await follow_up

        workers = [
            asyncio.ensure_future(worker()) for _ in range(min(self.config.concurrency, len(requests)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:  # a callback that raised, or a cancellation, ends every worker: none outlives the batch
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return [r for r in results if r is not None]

    # -- sync API ----------------------------------------------------------------------------
    def _loop(self) -> _LoopThread:
        self._check_open()
        if self._loop_thread is None:
            with self._loop_lock:
                self._check_open()  # under the lock: a loop thread started after close() would leak
                if self._loop_thread is None:
                    self._loop_thread = _LoopThread()
        return self._loop_thread

    def complete(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> Completion:
        loop = self._loop()
        loop.check_caller()
        return loop.run(carry_scope(self.tracer.carry(self.acomplete(request, **params))))

    def preflight(self, *models: str) -> None:
        """Raise now the error a call to any of ``models`` (the chain's, when none are named) would
        raise before sending: an unknown provider or model, an endpoint not allowed, a missing key
        (``Provider.preflight``). Nothing is sent; a test double's provider checks nothing."""
        provider = self.parts["provider"]
        loop = self._loop()
        loop.check_caller()

        async def check() -> None:
            for model in dict.fromkeys(models or self.config.chain):
                await provider.preflight(model)

        loop.run(check())

    def stream(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> Iterator[StreamEvent]:
        """``astream`` from sync code: each event is fetched on the client's loop thread as the
        caller asks for it. Leaving the loop early (``break``) closes the stream."""
        loop = self._loop()
        loop.check_caller()
        scope = scoped_ledgers()
        events = self.astream(request, **params)
        try:
            while True:
                try:
                    event = loop.run(carry_scope_inner(scope, self.tracer.carry(anext(events))))
                except StopAsyncIteration:
                    return
                yield event
        finally:
            if self._closed:
                pass  # its loop is gone, and the stream with it
            elif threading.current_thread() is loop.thread:  # collected on the loop: it cannot wait there
                loop.loop.create_task(close_stream(events))
            else:
                loop.run(close_stream(events))

    def batch(
        self,
        requests: Sequence[CompletionRequest],
        *,
        on_result: OnResult | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Completion | PromptliftError]:
        """``abatch`` from sync code; ``on_result`` and ``stop`` run on the client's loop thread (so
        they must not make sync calls through this client: that is refused)."""
        loop = self._loop()
        loop.check_caller()
        return loop.run(carry_scope(self.tracer.carry(self.abatch(requests, on_result=on_result, stop=stop))))

    # -- budgets, cache, metrics -------------------------------------------------------------
    @property
    def metrics(self) -> Metrics:
        recorder = self.parts["metrics"]
        assert isinstance(recorder, RecordingProvider)
        return recorder.metrics

    def alerts(self) -> list[str]:
        """Suspicious activity seen so far, one message each (``promptlift.client.alerts``): a burst
        of authentication failures on a model, a request refused for a host not allowed."""
        return self.metrics.alerts.messages()

    def metrics_snapshot(self) -> MetricsSnapshot:
        return self.metrics.snapshot()

    def health(self) -> list[EndpointHealth]:
        """Per model this client called: calls, errors by type, latency percentiles, cache hits,
        retries, its circuit breaker's state and its rate limit's headroom
        (``promptlift.client.health``; ``degraded`` says when and why something is wrong)."""
        from promptlift.client.fallback import FallbackProvider
        from promptlift.client.ratelimit import RateLimitedProvider, TokenBucket

        fallback, limited = self.parts.get("fallback"), self.parts.get("ratelimit")
        out = []
        for stats in self.metrics_snapshot().models.values():
            endpoint = self.config.endpoint_of(stats.model) or ""
            state, left = "unknown", 0.0
            if isinstance(fallback, FallbackProvider):
                breaker = fallback.breaker(stats.model, endpoint or None)
                state, left = breaker.state, breaker.seconds_left(time.monotonic())
            headroom = None
            if isinstance(limited, RateLimitedProvider):
                buckets = [
                    b for limit in limited.limiter.for_model(stats.model) for b in limit.buckets()
                    if isinstance(b, TokenBucket)
                ]  # fmt: skip
                headroom = min((b.headroom() for b in buckets), default=None)
            out.append(
                EndpointHealth(
                    model=stats.model,
                    endpoint=endpoint,
                    calls=stats.calls,
                    failed=stats.failed,
                    errors=dict(stats.errors),
                    latency_p50_s=stats.latency_p50_s,
                    latency_p95_s=stats.latency_p95_s,
                    cache_hit_rate=stats.cache_hit_rate,
                    retries=stats.retries,
                    attempts=stats.attempts,
                    attempt_errors=dict(stats.attempt_errors),
                    breaker=state,
                    breaker_seconds_left=left,
                    rate_limit_headroom=headroom,
                )
            )
        return out

    def replica_stats(self) -> list[EndpointStats]:
        """Each replica of every replicated model (``ModelSpec.replicas``): its breaker state, calls
        in flight, attempts sent, failures and mean latency; empty when no model has replicas."""
        part = self.parts.get("replicas")
        return part.stats() if isinstance(part, ReplicaProvider) else []

    @property
    def tracer(self) -> Tracer:
        """Where this client's spans go (``promptlift.tracing``): ``NO_TRACER`` unless tracing is on.
        The optimize layer opens its run, evaluation and row spans here; ``close()`` flushes it."""
        part = self.parts.get("tracing")
        return part.tracer if isinstance(part, TracingProvider) else NO_TRACER

    @property
    def cache(self) -> ResponseCache | None:
        self._check_open()
        part = self.parts.get("cache")
        return part.cache if isinstance(part, CachingProvider) else None

    @property
    def budget(self) -> BudgetLedger | None:
        """The client's own ledger (``config.budget``), or None when the client has no cap."""
        part = self.parts.get("budget")
        return part.ledger if isinstance(part, BudgetedProvider) else None

    @staticmethod
    def budget_scope(budget: Budget | BudgetLedger, name: str = "run") -> Any:
        """``with client.budget_scope(Budget(max_cost_usd=2)) as run:`` — every call made in the
        block (sync or async, this client or another) is also charged to, and capped by, ``run``."""
        return budget_scope(budget, name)

    def close(self) -> None:
        """Release connections and files (cache, call log) and stop the sync API's loop thread.

        Idempotent and thread-safe: only the first call does the work."""
        with self._loop_lock:
            if self._closed:
                return
            self._closed = True
            loop_thread, self._loop_thread = self._loop_thread, None
        loop_thread = loop_thread or _LoopThread()
        try:
            loop_thread.run(self._stack.aclose())
            loop_thread.run(_cancel_leftover_tasks())
        finally:
            loop_thread.loop.call_soon_threadsafe(loop_thread.loop.stop)
            loop_thread.thread.join()
            loop_thread.loop.close()

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
