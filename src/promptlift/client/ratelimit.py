"""Requests- and tokens-per-minute limits as token buckets, as a provider wrapper.

Each ``RateLimit`` (per model, per provider, or ``*``) is a pair of buckets. A call takes one
request and its estimated tokens from every bucket that matches its model *at once*, then sleeps
until the buckets would have had that much: a bucket may go negative, and the deficit is the
queue. So calls wait in arrival order and are never rejected; a call larger than a bucket still goes
(once the bucket is full) and leaves the bucket in debt by the rest, which the next calls wait out.
After the call the token estimate is reconciled with the real usage (a larger answer deepens the
deficit, a smaller one refunds).

Adaptive slow-down: a 429 halves the bucket's rate (down to a tenth of the configured rate) and,
when the provider sent Retry-After, pauses the bucket until then; each success afterwards gives
back 5% of the configured rate (additive increase, multiplicative decrease).

The wrapper sits below retry and fallback in the stack, so every attempt — a retry, a fallback to
another model — is counted against the limits of the model it actually goes to.

Thread-safety: bucket state is guarded by a ``threading.Lock`` and waiting is ``asyncio.sleep``,
so one limiter may be shared by several event loops (the sync API's and the caller's).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

from promptlift.client.cache import route_of
from promptlift.client.config import RateLimit
from promptlift.errors import RateLimited
from promptlift.pricing import worst_case_usage
from promptlift.providers.base import Provider, closing
from promptlift.types import Completion, CompletionRequest, StreamEvent

Clock = Callable[[], float]


def estimate_tokens(request: CompletionRequest, default_max_tokens: int = 256) -> int:
    """Input estimate plus ``max_tokens`` (or ``default_max_tokens``) for the answer
    (``promptlift.pricing``: the same estimate the budget reserves)."""
    return worst_case_usage(request, default_max_tokens).total_tokens


class TokenBucket:
    """``rate_per_s`` refill, ``capacity`` burst. ``take`` never refuses: it returns the wait."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Clock = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("a rate limit must be positive")
        self.configured_rate = rate_per_s
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.clock = clock
        self.level = self.capacity
        self.updated = clock()
        self.paused_until = 0.0
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        start = max(self.updated, self.paused_until)
        if now > start:
            self.level = min(self.capacity, self.level + (now - start) * self.rate)
        self.updated = max(self.updated, now)

    def take(self, amount: float) -> float:
        """Take ``amount`` now; return how many seconds the caller must wait before sending.

        A call may go once the bucket holds its amount. One bigger than the whole bucket could never
        fit: it goes once the bucket is full, and takes all of its amount, so the bucket goes into
        debt and the calls after it wait that debt out (taking only a bucketful undercounted it)."""
        with self._lock:
            now = self.clock()
            self._refill(now)
            needed = min(amount, self.capacity)  # what must be in the bucket before this call goes
            short = needed - self.level
            self.level -= amount
            paused = max(0.0, self.paused_until - now)
            return paused + short / self.rate if short > 0 else paused

    def give_back(self, amount: float) -> None:
        """Refund (positive) or charge more (negative) after the fact."""
        with self._lock:
            self._refill(self.clock())
            self.level = min(self.capacity, self.level + amount)

    def slow_down(self, retry_after: float | None) -> None:
        with self._lock:
            now = self.clock()
            self._refill(now)
            self.rate = max(self.configured_rate / 10, self.rate / 2)
            if retry_after:
                self.paused_until = max(self.paused_until, now + retry_after)
            self.level = min(self.level, 0.0)

    def recover(self) -> None:
        with self._lock:
            if self.rate < self.configured_rate:
                self._refill(self.clock())
                self.rate = min(self.configured_rate, self.rate + self.configured_rate * 0.05)


class _Limit:
    def __init__(self, spec: RateLimit, clock: Clock):
        self.spec = spec
        self.requests = TokenBucket(spec.rpm / 60, spec.rpm / 60 * spec.burst_s, clock) if spec.rpm else None
        self.tokens = TokenBucket(spec.tpm / 60, spec.tpm / 60 * spec.burst_s, clock) if spec.tpm else None

    def matches(self, model: str) -> bool:
        scope = self.spec.scope
        return scope in ("*", model, route_of(model))

    def buckets(self) -> list[TokenBucket]:
        return [b for b in (self.requests, self.tokens) if b is not None]


class RateLimiter:
    """Every configured limit. One limiter per client, shared by every call through it.

    A limit's scope ``*`` is one bucket pair shared by all models; ``openai`` one pair for every
    ``openai/...`` model together; a full model name its own pair.
    """

    def __init__(self, limits: Sequence[RateLimit], clock: Clock = time.monotonic):
        self.limits = [_Limit(spec, clock) for spec in limits]

    def for_model(self, model: str) -> list[_Limit]:
        return [limit for limit in self.limits if limit.matches(model)]

    async def acquire(self, model: str, tokens: int) -> None:
        """Take one request and ``tokens`` from every matching bucket, waiting as long as needed."""
        waits = []
        for limit in self.for_model(model):
            if limit.requests is not None:
                waits.append(limit.requests.take(1))
            if limit.tokens is not None:
                waits.append(limit.tokens.take(tokens))
        wait = max(waits, default=0.0)
        if wait > 0:
            await asyncio.sleep(wait)

    def reconcile(self, model: str, estimated: int, actual: int) -> None:
        for limit in self.for_model(model):
            if limit.tokens is not None:
                limit.tokens.give_back(estimated - actual)

    def rate_limited(self, model: str, retry_after: float | None) -> None:
        for limit in self.for_model(model):
            for bucket in limit.buckets():
                bucket.slow_down(retry_after)

    def succeeded(self, model: str) -> None:
        for limit in self.for_model(model):
            for bucket in limit.buckets():
                bucket.recover()


class RateLimitedProvider(Provider):
    """Waits for the rate limits of the request's model, then calls the provider below."""

    name = "ratelimit"

    def __init__(self, inner: Provider, limiter: RateLimiter):
        self.inner = inner
        self.limiter = limiter

    async def acomplete(self, request: CompletionRequest) -> Completion:
        estimated = estimate_tokens(request)
        await self.limiter.acquire(request.model, estimated)
        try:
            completion = await self.inner.acomplete(request)
        except RateLimited as exc:
            self.limiter.rate_limited(request.model, exc.retry_after)
            raise
        except BaseException:
            self.limiter.reconcile(request.model, estimated, 0)
            raise
        self.limiter.reconcile(request.model, estimated, completion.usage.total_tokens)
        self.limiter.succeeded(request.model)
        return completion

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        estimated = estimate_tokens(request)
        await self.limiter.acquire(request.model, estimated)
        settled = False
        try:
            async with closing(self.inner.astream(request)) as stream:
                async for event in stream:
                    if isinstance(event, Completion):
                        settled = True
                        self.limiter.reconcile(request.model, estimated, event.usage.total_tokens)
                        self.limiter.succeeded(request.model)
                    yield event
        except RateLimited as exc:
            settled = True  # as for acomplete: the 429 slows the bucket down, nothing is given back
            self.limiter.rate_limited(request.model, exc.retry_after)
            raise
        finally:
            if not settled:
                self.limiter.reconcile(request.model, estimated, 0)

    async def aclose(self) -> None:
        await self.inner.aclose()
