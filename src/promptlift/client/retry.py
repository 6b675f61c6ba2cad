"""Retries: small composable strategies, and the wrapper that applies them to one model.

A strategy is a pure function of a ``RetryState`` (which attempt failed, with what error, how long
the call has taken, and a uniform random draw for jitter), so every decision can be tested without
sleeping or patching randomness::

    wait = WaitRetryAfter(max_wait=60, otherwise=WaitFullJitter(initial=0.5, cap=30))
    stop = StopAfterAttempt(4) | StopAfterDelay(120)
    strategy = RetryStrategy(wait=wait, stop=stop, attempts=AttemptsPerError({RateLimited: 6}))
    strategy.next_wait(state)   # seconds to wait before the next attempt, or None: give up

Waits compose with ``+`` (``WaitExponential() + WaitFixed(0.1)``), stops with ``|``.

Only errors whose class says ``retryable`` (429, 408/timeouts, connection failures, 5xx) are ever
retried; a 400, 401, 403, 404, context-window or content-filter error is final on its first
attempt. ``RetryPolicy`` is the typed config a client holds; ``RetryingProvider`` is the wrapper.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from promptlift import errors
from promptlift.log import get_logger
from promptlift.providers.base import Provider, close_stream
from promptlift.types import Completion, CompletionRequest, StreamEvent

log = get_logger("retry")


@dataclass(frozen=True)
class RetryState:
    """What a strategy sees after a failed attempt.

    ``attempt`` counts attempts made so far (1 after the first failure); ``elapsed`` is seconds
    since the call began; ``draw`` is a uniform random number in [0, 1) for jitter.
    """

    attempt: int
    error: errors.ProviderError
    elapsed: float = 0.0
    draw: float = 0.5


# -- waits ---------------------------------------------------------------------------------------


class Wait:
    """Seconds to wait before the next attempt. Compose with ``+``."""

    def __call__(self, state: RetryState) -> float:
        raise NotImplementedError

    def __add__(self, other: Wait) -> Wait:
        return WaitSum(self, other)


@dataclass(frozen=True)
class WaitSum(Wait):
    first: Wait
    second: Wait

    def __call__(self, state: RetryState) -> float:
        return self.first(state) + self.second(state)


@dataclass(frozen=True)
class WaitFixed(Wait):
    seconds: float

    def __call__(self, state: RetryState) -> float:
        return self.seconds


@dataclass(frozen=True)
class WaitExponential(Wait):
    """``initial * base ** (attempt - 1)``, capped at ``cap`` seconds."""

    initial: float = 0.5
    base: float = 2.0
    cap: float = 30.0

    def __call__(self, state: RetryState) -> float:
        exponent = max(0, state.attempt - 1)
        try:
            return min(self.cap, self.initial * self.base**exponent)
        except OverflowError:
            return self.cap


@dataclass(frozen=True)
class WaitFullJitter(Wait):
    """Full jitter (a uniform draw between 0 and the capped exponential), so that many clients that
    failed together do not retry together."""

    initial: float = 0.5
    base: float = 2.0
    cap: float = 30.0

    def __call__(self, state: RetryState) -> float:
        return state.draw * WaitExponential(self.initial, self.base, self.cap)(state)


@dataclass(frozen=True)
class WaitRetryAfter(Wait):
    """The server's ``Retry-After`` (already in seconds on the error), capped at ``max_wait``;
    ``otherwise`` when the error carries none."""

    max_wait: float = 60.0
    otherwise: Wait = field(default_factory=WaitFullJitter)

    def __call__(self, state: RetryState) -> float:
        if state.error.retry_after is not None:
            return min(self.max_wait, max(0.0, state.error.retry_after))
        return self.otherwise(state)


# -- stops ---------------------------------------------------------------------------------------


class Stop:
    """Whether to give up after this failure (given the wait that would come next). Compose with ``|``."""

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        raise NotImplementedError

    def __or__(self, other: Stop) -> Stop:
        return StopAny(self, other)


@dataclass(frozen=True)
class StopAny(Stop):
    first: Stop
    second: Stop

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        return self.first(state, next_wait) or self.second(state, next_wait)


@dataclass(frozen=True)
class StopAfterAttempt(Stop):
    """At most ``attempts`` attempts in all (the first one included)."""

    attempts: int

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        return state.attempt >= self.attempts


@dataclass(frozen=True)
class StopAfterDelay(Stop):
    """An overall deadline: give up when the next attempt could not even start before it."""

    seconds: float

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        return state.elapsed + next_wait >= self.seconds


@dataclass(frozen=True)
class AttemptsPerError(Stop):
    """A different attempt limit per error class (looked up along the class's MRO).

    ``AttemptsPerError({RateLimited: 6, Timeout: 2})``: a rate-limited call may be tried 6 times, a
    timing-out one twice. Classes not listed are not limited by this rule.
    """

    limits: Mapping[type[errors.ProviderError], int]

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        for cls in type(state.error).__mro__:
            if cls in self.limits:
                return state.attempt >= self.limits[cls]
        return False


# -- the strategy and the policy -----------------------------------------------------------------


@dataclass(frozen=True)
class RetryStrategy:
    """Combines a wait and a stop rule: ``next_wait(state)`` is seconds to wait, or None to give up."""

    wait: Wait
    stop: Stop

    def next_wait(self, state: RetryState) -> float | None:
        if not state.error.retryable:
            return None
        seconds = self.wait(state)
        if self.stop(state, seconds):
            return None
        return seconds


_ERROR_NAMES: dict[str, type[errors.ProviderError]] = {
    cls.__name__: cls
    for cls in (errors.RateLimited, errors.Timeout, errors.ConnectionFailed, errors.ProviderUnavailable)
}


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries one model before falling back to the next.

    ``max_attempts`` counts every attempt (``max_attempts=1``: never retry). Waits are exponential
    from ``initial_wait`` seconds with full jitter, each capped at ``max_wait``; a ``Retry-After``
    from the server is honoured, capped at ``max_wait`` too. ``deadline`` (seconds) bounds the whole
    call on this model, waits included. ``attempts_per_error`` overrides ``max_attempts`` per error
    class name: ``{"RateLimited": 6, "Timeout": 2}``.
    """

    max_attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 30.0
    deadline: float | None = None
    jitter: bool = True
    attempts_per_error: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise errors.ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        unknown = set(self.attempts_per_error) - set(_ERROR_NAMES)
        if unknown:
            raise errors.ConfigError(
                f"attempts_per_error names unknown retryable errors {sorted(unknown)}; "
                f"use {sorted(_ERROR_NAMES)}"
            )

    @classmethod
    def with_max_retries(cls, retries: int, **kwargs: float) -> RetryPolicy:
        """``retries`` retries, so ``retries + 1`` attempts."""
        return cls(max_attempts=retries + 1, **kwargs)  # type: ignore[arg-type]

    def strategy(self) -> RetryStrategy:
        backoff: Wait = (
            WaitFullJitter(self.initial_wait, 2.0, self.max_wait)
            if self.jitter
            else WaitExponential(self.initial_wait, 2.0, self.max_wait)
        )
        stop: Stop = StopAfterAttempt(self.max_attempts)
        if self.attempts_per_error:
            limits = {_ERROR_NAMES[name]: n for name, n in self.attempts_per_error.items()}
            stop = _PerErrorFirst(AttemptsPerError(limits), StopAfterAttempt(self.max_attempts))
        if self.deadline is not None:
            stop = stop | StopAfterDelay(self.deadline)
        return RetryStrategy(WaitRetryAfter(self.max_wait, backoff), stop)


@dataclass(frozen=True)
class _PerErrorFirst(Stop):
    """The per-error limit where one is set for this error's class, else the general limit."""

    per_error: AttemptsPerError
    general: Stop

    def __call__(self, state: RetryState, next_wait: float) -> bool:
        if any(cls in self.per_error.limits for cls in type(state.error).__mro__):
            return self.per_error(state, next_wait)
        return self.general(state, next_wait)


# -- the wrapper ---------------------------------------------------------------------------------


class RetryingProvider(Provider):
    """Retries ``inner`` per ``policy``; the completion's ``attempts`` says how many were made.

    A final error carries ``attempts`` too. With a deadline, each attempt's timeout is cut to the
    time left. ``sleep``, ``clock`` and ``draw`` are injectable so tests can run without waiting.
    """

    name = "retry"

    def __init__(
        self,
        inner: Provider,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ):
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.strategy = self.policy.strategy()
        self._sleep = sleep
        self._clock = clock
        self._draw = draw

    async def acomplete(self, request: CompletionRequest) -> Completion:
        started = self._clock()
        attempt = 0
        sent = 0  # requests on the wire: one attempt may send two (a credential refresh after a 401)
        while True:
            attempt += 1
            try:
                completion = await self.inner.acomplete(self._bounded(request, started))
            except errors.ProviderError as exc:
                sent = await self._wait_or_raise(exc, attempt, sent, started, request.model)
                continue
            return completion.replace(attempts=sent + completion.attempts)

    async def _wait_or_raise(
        self, exc: errors.ProviderError, attempt: int, sent: int, started: float, model: str, when: str = ""
    ) -> int:
        """``exc`` ended attempt ``attempt``: wait as the policy says before the next one and return
        the requests sent so far, or raise ``exc`` (counting them) when the policy stops here."""
        sent += exc.requests
        wait = self.strategy.next_wait(RetryState(attempt, exc, self._clock() - started, self._draw()))
        if wait is None:
            exc.attempts = sent
            raise exc
        log.info(
            "attempt %d on %s failed%s (%s); retrying in %.2f s",
            attempt,
            model,
            when,
            type(exc).__name__,
            wait,
        )
        await self._sleep(wait)
        return sent

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Retries as ``acomplete`` does, but only until the first event: once part of an answer has
        been yielded, a failure ends the stream with its error (sending again would repeat it)."""
        started = self._clock()
        attempt = 0
        sent = 0
        while True:
            attempt += 1
            events = self.inner.astream(self._bounded(request, started))
            try:
                first = await anext(events)
            except errors.ProviderError as exc:
                await close_stream(events)
                sent = await self._wait_or_raise(
                    exc, attempt, sent, started, request.model, " before its first token"
                )
                continue
            break
        try:
            event: StreamEvent = first
            while True:
                yield (
                    event.replace(attempts=sent + event.attempts) if isinstance(event, Completion) else event
                )
                event = await anext(events)
        except StopAsyncIteration:
            return
        except errors.ProviderError as exc:
            exc.attempts = sent + exc.requests
            raise
        finally:
            await close_stream(events)

    def _bounded(self, request: CompletionRequest, started: float) -> CompletionRequest:
        if self.policy.deadline is None:
            return request
        left = self.policy.deadline - (self._clock() - started)
        return request if left >= request.timeout else request.replace(timeout=max(0.001, left))

    async def aclose(self) -> None:
        await self.inner.aclose()
