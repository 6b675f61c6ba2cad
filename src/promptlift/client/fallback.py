"""Fallback: an ordered chain of models, and a circuit breaker per model and endpoint.

``FallbackProvider`` tries the chain in order. It moves to the next model when the current one
has exhausted its retries on a retryable error (the retry wrapper sits below it), fails
authentication or permission, or — with ``on_context_window`` — cannot fit the request. Any other
error (a bad request, a content filter) is the caller's to see and ends the call at once.

Each model/endpoint has a ``CircuitBreaker``: after ``failure_threshold`` consecutive failed calls
it opens and the chain skips that model for ``cooldown`` seconds; then it is half-open and lets
one call through as a probe — success closes it, failure opens it again, and a probe that ends
without a verdict (cancelled, or an error that says nothing about the endpoint) frees the slot for
the next caller. The breaker is a state machine driven by an explicit ``now``, so tests need no
sleeping; it only keeps callbacks to wake callers waiting on it.

When no model of the chain can take a call — each is paused, or failed this call and is now
paused — the call waits (``FallbackPolicy.wait_for_probe``) instead of failing: for a one-model
chain, or a chain against one endpoint, failing at once would turn a server's restart into as many
failed calls as arrive during the cool-down. It is sent as soon as a model lets it through (the
cool-down ends and it becomes the probe, or another call's probe succeeds); it fails when a probe
fails (the endpoint is still down: every waiter learns it from that one probe), or when it has
waited its own ``timeout``. A call that failed on the wire is sent again at most once after such a
wait; a call that was itself the probe never waits.

The completion says who served it: ``model`` is the model that answered, ``fallback_used`` is true
when that is not the first model tried, and ``attempts`` adds up every request sent for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from promptlift import errors
from promptlift.log import get_logger
from promptlift.providers.base import Provider, close_stream
from promptlift.types import Completion, CompletionRequest, StreamEvent

log = get_logger("fallback")

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class FallbackPolicy:
    """``failure_threshold`` consecutive failed calls open a model's breaker for ``cooldown`` seconds
    (``failure_threshold=0`` turns breakers off). ``on_context_window``: a request too long for one
    model goes on to the next (which may have a larger window). ``wait_for_probe``: a call that finds
    every model of its chain paused waits for a probe (bounded by its own ``timeout``) instead of
    failing at once; False fails at once, with ``retry_after`` set (for callers that fall back on
    their own, or answer a user who should not wait a cool-down)."""

    failure_threshold: int = 5
    cooldown: float = 30.0
    on_context_window: bool = True
    wait_for_probe: bool = True

    def __post_init__(self) -> None:
        # A fractional or negative threshold, or a negative or infinite cool-down, would silently
        # mean "never open" or "never close": refused where it is given, in code, YAML or a flag.
        threshold = self.failure_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise errors.ConfigError(
                f"failure_threshold must be a whole number of at least 0 (0: no breaker), got {threshold!r}"
            )
        cooldown = self.cooldown
        if (
            isinstance(cooldown, bool)
            or not isinstance(cooldown, int | float)
            or not 0 <= cooldown < math.inf
        ):
            raise errors.ConfigError(f"cooldown must be a number of seconds of at least 0, got {cooldown!r}")


@dataclass(frozen=True)
class Pass:
    """A call a breaker let through; ``probe`` > 0 numbers the half-open probe it is (0: not one)."""

    probe: int = 0


class CircuitBreaker:
    """closed → (threshold failures) → open → (cooldown) → half_open → success: closed / failure: open.

    Thread-safe. ``admit(now)`` (or ``allow``) must be called before a call; it refuses while open,
    and in half-open lets exactly one probe through until that probe reports back: with
    ``record_success`` / ``record_failure``, or ``release`` when it ended with no verdict. Whoever
    admits a call must ``release`` its pass however the call ends (``release`` of a pass that got its
    verdict does nothing). ``probe_failures`` counts failed probes; ``last_failure`` says what the
    last failed call raised (already free of secrets: the provider layer redacts its messages).
    """

    def __init__(self, failure_threshold: int = 5, cooldown: float = 30.0):
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.state: BreakerState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probe_failures = 0
        self.last_failure = ""
        self._probing = False
        self._probe = 0  # the number of the latest probe let through
        self._wakers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def allow(self, now: float) -> bool:
        return self.admit(now) is not None

    def admit(self, now: float) -> Pass | None:
        with self._lock:
            if self.state == "closed":
                return Pass()
            if self.state == "open":
                if now < self.opened_at + self.cooldown:
                    return None
                self.state = "half_open"
                self._probing = False
            if self._probing:
                return None
            self._probing = True
            self._probe += 1
            return Pass(self._probe)

    def release(self, passed: Pass) -> None:
        """Free the probe slot of a probe that ended without a verdict, and wake the waiters."""
        with self._lock:
            if not (passed.probe and passed.probe == self._probe and self._probing):
                return
            self._probing = False
        self._wake()

    def wait_hint(self, now: float) -> float | None:
        """0 when a call may go now, else the seconds until the cool-down ends; None while a probe
        is out (its verdict, not the clock, decides)."""
        with self._lock:
            if self.state == "closed":
                return 0.0
            if self.state == "open":
                return max(0.0, self.opened_at + self.cooldown - now)
            return None if self._probing else 0.0

    def on_change(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (once, from any thread) at the next verdict or released probe; returns a
        function that cancels it."""
        with self._lock:
            self._wakers.append(wake)

        def cancel() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._wakers.remove(wake)

        return cancel

    def _wake(self) -> None:
        with self._lock:
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def seconds_left(self, now: float) -> float:
        """Until an open breaker lets a probe through (0 when it would now)."""
        with self._lock:
            return max(0.0, self.opened_at + self.cooldown - now) if self.state == "open" else 0.0

    def record_success(self) -> None:
        with self._lock:
            self.state = "closed"
            self.failures = 0
            self._probing = False
        self._wake()

    def record_failure(self, now: float, reason: str = "") -> None:
        with self._lock:
            self.failures += 1
            self.last_failure = reason or self.last_failure
            if self.state == "half_open":
                self.probe_failures += 1
            if self.state == "half_open" or (
                self.failure_threshold > 0 and self.failures >= self.failure_threshold
            ):
                self.state = "open"
                self.opened_at = now
            self._probing = False
        self._wake()


def counts_against_endpoint(exc: errors.ProviderError) -> bool:
    """Failures that say the endpoint is unhealthy, not that the request was wrong."""
    return exc.retryable or isinstance(exc, (errors.AuthenticationFailed, errors.PermissionDenied))


@dataclass
class _Call:
    """What one call has done so far, over its passes down the chain."""

    attempts: int = 0
    last: errors.ProviderError | None = None
    probed: bool = False  # the latest pass was let through as a probe
    sent_failed: bool = False  # the latest pass sent a request that failed
    resends: int = 1  # passes that may still go on the wire after a failed one
    wait_until: float | None = field(default=None)


_T = TypeVar("_T")
_Sender = Callable[[CircuitBreaker, Pass, CompletionRequest, int], Awaitable[_T]]


async def _counted(events: AsyncIterator[StreamEvent], before: int) -> AsyncIterator[StreamEvent]:
    """``events``, the completion's attempts (or a failure's after the first event) counting the
    ``before`` requests of earlier models; a failure before it is counted by ``_round``."""
    started = False
    try:
        async for event in events:
            started = True
            yield event.replace(attempts=before + event.attempts) if isinstance(event, Completion) else event
    except errors.ProviderError as exc:
        if started:
            exc.attempts += before
        raise
    finally:
        await close_stream(events)


def _waker(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> Callable[[], None]:
    """A callback any thread may call to settle ``woken`` on its own loop."""

    def settle() -> None:
        if not woken.done():
            woken.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the waiter's loop has closed: nobody to wake
            loop.call_soon_threadsafe(settle)

    return wake


class FallbackProvider(Provider):
    """Tries ``models`` in order for a request whose model is the chain's first; a request naming
    any other model is sent to that model alone (with its breaker still applied).

    ``endpoint`` names where the models are served (an ``api_base``), so breakers of the same
    model name at different servers are kept apart. ``endpoints`` gives a chain model its own
    endpoint: each model of the chain is sent to its own, unless the request named another one
    than the first model's (an explicit ``api_base`` for this call), which then serves them all.
    """

    name = "fallback"

    def __init__(
        self,
        inner: Provider,
        models: Sequence[str],
        policy: FallbackPolicy | None = None,
        *,
        endpoint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        endpoints: Mapping[str, str | None] | None = None,
    ):
        self.inner = inner
        self.models = tuple(models)
        self.policy = policy or FallbackPolicy()
        self.endpoint = endpoint or ""
        self.endpoints = dict(endpoints or {})
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._lock = threading.Lock()

    def breaker(self, model: str, api_base: str | None = None) -> CircuitBreaker:
        key = (model, api_base or self.endpoint)
        with self._lock:
            found = self._breakers.get(key)
            if found is None:
                found = self._breakers[key] = CircuitBreaker(
                    self.policy.failure_threshold, self.policy.cooldown
                )
            return found

    def _chain(self, request: CompletionRequest) -> tuple[str, ...]:
        if self.models and request.model == self.models[0]:
            return self.models
        return (request.model,)

    def _routed(self, request: CompletionRequest, chain: tuple[str, ...], model: str) -> CompletionRequest:
        """``request`` for ``model``, at that model's own endpoint unless the call named its own."""
        first = self.endpoints.get(chain[0], self.endpoint or None)
        if request.api_base not in (None, first):
            return request.replace(model=model)
        return request.replace(model=model, api_base=self.endpoints.get(model, request.api_base))

    def _falls_through(self, exc: errors.ProviderError) -> bool:
        if isinstance(exc, errors.ContextWindowExceeded):
            return self.policy.on_context_window
        return counts_against_endpoint(exc)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        chain = self._chain(request)
        model, completion = await self._served(chain, request, self._send)
        return self._marked(completion, chain, model)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Falls back as ``acomplete`` does, until the first event: a model that has begun its answer
        is the one that finishes it, or the stream ends with its error."""
        chain = self._chain(request)
        model, (first, events) = await self._served(chain, request, self._open)
        breaker = self.breaker(model, self._routed(request, chain, model).api_base)
        event: StreamEvent = first
        try:
            while True:
                yield self._marked(event, chain, model) if isinstance(event, Completion) else event
                event = await anext(events)
        except StopAsyncIteration:
            return
        except errors.ProviderError as exc:
            if counts_against_endpoint(exc):
                breaker.record_failure(self._clock(), str(exc))
            raise
        finally:
            await close_stream(events)

    def _marked(self, completion: Completion, chain: tuple[str, ...], model: str) -> Completion:
        return completion.replace(model=model, fallback_used=model != chain[0])

    async def _served(
        self, chain: tuple[str, ...], request: CompletionRequest, send: _Sender[_T]
    ) -> tuple[str, _T]:
        """The model that took the call and what ``send`` got from it, after every pass and wait."""
        call = _Call()
        while True:
            served = await self._round(chain, request, call, send)
            if served is not None:
                return served
            if not self._may_wait(chain, request, call) or not await self._wait(chain, request, call):
                raise self._all_skipped(chain, request, call.last, call.attempts)

    async def _round(
        self, chain: tuple[str, ...], request: CompletionRequest, call: _Call, send: _Sender[_T]
    ) -> tuple[str, _T] | None:
        """One pass down the chain: the model that answered and its answer, or None with
        ``call.last`` the final failure (None when every model was skipped). An error that must not
        fall through is raised."""
        call.probed = call.sent_failed = False
        for position, model in enumerate(chain):
            routed = self._routed(request, chain, model)
            breaker = self.breaker(model, routed.api_base)
            passed = breaker.admit(self._clock()) if self.policy.failure_threshold > 0 else Pass()
            if passed is None:
                log.info(
                    "skipping %s: circuit open for %.1f s more", model, breaker.seconds_left(self._clock())
                )
                continue
            call.probed = call.probed or passed.probe > 0
            try:
                answer = await send(breaker, passed, routed, call.attempts)
            except errors.ProviderError as exc:
                call.attempts += exc.attempts
                call.sent_failed = True
                if not self._falls_through(exc):
                    exc.attempts = call.attempts
                    raise
                call.last = exc
                if position < len(chain) - 1:
                    log.warning(
                        "%s failed (%s); falling back to %s", model, type(exc).__name__, chain[position + 1]
                    )
                continue
            return model, answer
        return None

    async def _send(
        self, breaker: CircuitBreaker, passed: Pass, request: CompletionRequest, before: int
    ) -> Completion:
        """One model's answer (its attempts added to the ``before`` of the models tried first)."""
        try:
            completion = await self.inner.acomplete(request)
            breaker.record_success()
            return completion.replace(attempts=before + completion.attempts)
        except errors.ProviderError as exc:
            if counts_against_endpoint(exc):
                breaker.record_failure(self._clock(), str(exc))
            else:
                breaker.record_success()  # the endpoint answered; the request was at fault
            raise
        finally:  # a probe that got no verdict (cancelled, a foreign error) must not hold its slot
            breaker.release(passed)

    async def _open(
        self, breaker: CircuitBreaker, passed: Pass, request: CompletionRequest, before: int
    ) -> tuple[StreamEvent, AsyncIterator[StreamEvent]]:
        """One model's stream, up to its first event (the endpoint's verdict); the rest is the
        caller's to read. A failure before it is one the chain may fall through."""
        events = _counted(self.inner.astream(request), before)
        try:
            first = await anext(events)
        except errors.ProviderError as exc:
            await close_stream(events)
            if counts_against_endpoint(exc):
                breaker.record_failure(self._clock(), str(exc))
            else:
                breaker.record_success()
            raise
        except StopAsyncIteration:
            raise errors.ProviderUnavailable("the stream ended with no answer", model=request.model) from None
        finally:
            breaker.release(passed)
        breaker.record_success()
        return first, events

    def _chain_breakers(self, chain: tuple[str, ...], request: CompletionRequest) -> list[CircuitBreaker]:
        """Each chain model's breaker, for the endpoint that model is really sent to."""
        return [self.breaker(m, self._routed(request, chain, m).api_base) for m in chain]

    def _may_wait(self, chain: tuple[str, ...], request: CompletionRequest, call: _Call) -> bool:
        """Wait only for a chain that is paused, not for a model that failed this call alone."""
        if not self.policy.wait_for_probe or self.policy.failure_threshold <= 0 or call.probed:
            return False
        if call.last is not None and not counts_against_endpoint(call.last):
            return False
        if call.sent_failed:
            if call.resends == 0:
                return False
            call.resends -= 1
        return any(b.state != "closed" for b in self._chain_breakers(chain, request))

    async def _wait(self, chain: tuple[str, ...], request: CompletionRequest, call: _Call) -> bool:
        """Until a model of the chain may take the call (True), or a probe failed or the call's own
        ``timeout`` ran out (False)."""
        breakers = self._chain_breakers(chain, request)
        if call.sent_failed:  # a model that failed this call but stays closed is not worth waiting for
            breakers = [b for b in breakers if b.state != "closed"]
        failed_probes = [b.probe_failures for b in breakers]
        if not breakers:
            return False
        if call.wait_until is None:
            call.wait_until = self._clock() + request.timeout
            log.info("every model of %s is paused (circuit open); waiting for a probe", chain[0])
        loop = asyncio.get_running_loop()
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            cancels = [b.on_change(_waker(loop, woken)) for b in breakers]
            try:  # subscribed before looking, so no verdict can come between the look and the wait
                if any(b.probe_failures > n for b, n in zip(breakers, failed_probes, strict=True)):
                    return False  # the endpoint is still down: the probe answered for every waiter
                now = self._clock()
                hints = [b.wait_hint(now) for b in breakers]
                if 0.0 in hints:
                    return True
                left = call.wait_until - now
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, min([left, *(h for h in hints if h is not None)]))
            finally:
                for cancel in cancels:
                    cancel()

    def _all_skipped(
        self,
        chain: tuple[str, ...],
        request: CompletionRequest,
        last: errors.ProviderError | None,
        attempts: int,
    ) -> errors.ProviderError:
        if last is not None:  # the remaining models were all skipped: the last real failure explains most
            last.attempts = attempts
            return last
        now = self._clock()
        breakers = self._chain_breakers(chain, request)
        wait = min(b.seconds_left(now) for b in breakers)
        reasons = [b.last_failure for b in breakers if b.last_failure]
        err = errors.ProviderUnavailable(
            f"every model in the chain ({', '.join(chain)}) failed recently and is paused "
            f"(circuit open); next try in {wait:.1f} s"
            + (f"; the last failure: {reasons[0]}" if reasons else ""),
            model=chain[0],
            retry_after=wait,
        )
        err.attempts = 0
        return err

    async def aclose(self) -> None:
        await self.inner.aclose()
