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

Shared limits: a ``RateLimit`` with ``shared="redis://..."`` keeps its buckets in Redis
(``client.shared.RedisBucket``: the same arithmetic, one atomic Lua script per step), so every process
naming that server, ``key_prefix`` and scope waits in one queue for one quota. When Redis cannot be
reached, a call's ``acquire`` raises ``SharedStateUnavailable`` and nothing is sent (fail closed,
the default); with ``on_unreachable="local"`` the limit logs one warning and goes on with this
process's own buckets for the rest of the limiter's life. The adjustments after a call (reconcile,
slow-down, recovery) never raise: an answer is not turned into an error by its bookkeeping.

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
from promptlift.client.shared import RedisBucket, RedisLink
from promptlift.errors import RateLimited, SharedStateUnavailable
from promptlift.log import get_logger
from promptlift.pricing import worst_case_usage
from promptlift.providers.base import Provider, closing
from promptlift.types import Completion, CompletionRequest, StreamEvent

Clock = Callable[[], float]

log = get_logger("ratelimit")


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

    def headroom(self) -> float:
        """The share of the burst left now, 0..1 (0 while paused by a Retry-After)."""
        with self._lock:
            now = self.clock()
            self._refill(now)
            return 0.0 if now < self.paused_until else max(0.0, min(1.0, self.level / self.capacity))

    def recover(self) -> None:
        with self._lock:
            if self.rate < self.configured_rate:
                self._refill(self.clock())
                self.rate = min(self.configured_rate, self.rate + self.configured_rate * 0.05)


class SharedBucket:
    """A ``RedisBucket`` with this process's own ``TokenBucket`` behind it, for when Redis is lost.

    ``degrade`` False: ``take`` raises ``SharedStateUnavailable`` while Redis is unreachable (and
    uses Redis again once it answers). True: the first failure switches this bucket to the local one
    for good, after one warning per Redis server. ``give_back``, ``slow_down`` and ``recover`` never
    raise.
    """

    def __init__(self, shared: RedisBucket, local: TokenBucket, *, degrade: bool):
        self.shared = shared
        self.local = local
        self.degrade = degrade
        self.degraded = False

    def take(self, amount: float) -> float:
        if not self.degraded:
            try:
                return self.shared.take(amount)
            except SharedStateUnavailable as exc:
                if not self.degrade:
                    raise
                self.degraded = True
                self.shared.link.warn_once(f"rate limit {self.shared.key}: {exc}; using local limits instead")
        return self.local.take(amount)

    def _adjust(self, step: Callable[[TokenBucket | RedisBucket], None]) -> None:
        if self.degraded:
            step(self.local)
            return
        try:
            step(self.shared)
        except SharedStateUnavailable as exc:
            log.info("rate limit %s: not adjusted (%s)", self.shared.key, exc)

    def give_back(self, amount: float) -> None:
        self._adjust(lambda bucket: bucket.give_back(amount))

    def slow_down(self, retry_after: float | None) -> None:
        self._adjust(lambda bucket: bucket.slow_down(retry_after))

    def recover(self) -> None:
        self._adjust(lambda bucket: bucket.recover())


Bucket = TokenBucket | SharedBucket


class _Limit:
    def __init__(self, spec: RateLimit, clock: Clock, links: dict[str, RedisLink]):
        self.spec = spec
        self.requests = self._bucket("rpm", spec.rpm, clock, links)
        self.tokens = self._bucket("tpm", spec.tpm, clock, links)

    def _bucket(
        self, unit: str, per_minute: float | None, clock: Clock, links: dict[str, RedisLink]
    ) -> Bucket | None:
        if not per_minute:
            return None
        spec = self.spec
        rate, capacity = per_minute / 60, per_minute / 60 * spec.burst_s
        local = TokenBucket(rate, capacity, clock)
        if spec.shared is None:
            return local
        if spec.shared not in links:
            links[spec.shared] = RedisLink(spec.shared)
        key = f"{spec.key_prefix}ratelimit:{spec.scope}:{unit}"
        shared = RedisBucket(links[spec.shared], key, rate, capacity)
        return SharedBucket(shared, local, degrade=spec.on_unreachable == "local")

    def matches(self, model: str) -> bool:
        scope = self.spec.scope
        return scope in ("*", model, route_of(model))

    def buckets(self) -> list[Bucket]:
        return [b for b in (self.requests, self.tokens) if b is not None]


class RateLimiter:
    """Every configured limit. One limiter per client, shared by every call through it.

    A limit's scope ``*`` is one bucket pair shared by all models; ``openai`` one pair for every
    ``openai/...`` model together; a full model name its own pair.
    """

    def __init__(self, limits: Sequence[RateLimit], clock: Clock = time.monotonic):
        self.links: dict[str, RedisLink] = {}  # one connection pool per Redis URL
        self.limits = [_Limit(spec, clock, self.links) for spec in limits]

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    def for_model(self, model: str) -> list[_Limit]:
        return [limit for limit in self.limits if limit.matches(model)]

    async def acquire(self, model: str, tokens: int) -> None:
        """Take one request and ``tokens`` from every matching bucket, waiting as long as needed.

        Raises ``SharedStateUnavailable`` (nothing sent) when a shared limit's Redis cannot be
        reached and the limit fails closed; what the other buckets gave is given back first."""
        waits: list[float] = []
        taken: list[tuple[Bucket, float]] = []
        for limit in self.for_model(model):
            for bucket, amount in ((limit.requests, 1), (limit.tokens, tokens)):
                if bucket is None:
                    continue
                try:
                    waits.append(bucket.take(amount))
                except SharedStateUnavailable:
                    for earlier, given in taken:
                        earlier.give_back(given)
                    raise
                taken.append((bucket, amount))
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
        self.limiter.close()
