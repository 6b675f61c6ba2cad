"""Fallback: an ordered chain of models, and a circuit breaker per model and endpoint.

``FallbackProvider`` tries the chain in order. It moves to the next model when the current one
has exhausted its retries on a retryable error (the retry wrapper sits below it), fails
authentication or permission, or — with ``on_context_window`` — cannot fit the request. Any other
error (a bad request, a content filter) is the caller's to see and ends the call at once.

Each model/endpoint has a ``CircuitBreaker``: after ``failure_threshold`` consecutive failed calls
it opens and the chain skips that model for ``cooldown`` seconds; then it is half-open and lets
one call through as a probe — success closes it, failure opens it again. The breaker is a pure
state machine driven by an explicit ``now``, so tests need no sleeping.

The completion says who served it: ``model`` is the model that answered, ``fallback_used`` is true
when that is not the first model tried, and ``attempts`` adds up every request sent for the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from promptlift import errors
from promptlift.log import get_logger
from promptlift.providers.base import Provider
from promptlift.types import Completion, CompletionRequest

log = get_logger("fallback")

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class FallbackPolicy:
    """``failure_threshold`` consecutive failed calls open a model's breaker for ``cooldown`` seconds
    (``failure_threshold=0`` turns breakers off). ``on_context_window``: a request too long for one
    model goes on to the next (which may have a larger window)."""

    failure_threshold: int = 5
    cooldown: float = 30.0
    on_context_window: bool = True


class CircuitBreaker:
    """closed → (threshold failures) → open → (cooldown) → half_open → success: closed / failure: open.

    Thread-safe. ``allow(now)`` must be called before a call; it returns False while open, and in
    half-open lets exactly one probe through until that probe reports back.
    """

    def __init__(self, failure_threshold: int = 5, cooldown: float = 30.0):
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.state: BreakerState = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self, now: float) -> bool:
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open":
                if now < self.opened_at + self.cooldown:
                    return False
                self.state = "half_open"
                self._probing = False
            if self._probing:
                return False
            self._probing = True
            return True

    def seconds_left(self, now: float) -> float:
        """Until an open breaker lets a probe through (0 when it would now)."""
        with self._lock:
            return max(0.0, self.opened_at + self.cooldown - now) if self.state == "open" else 0.0

    def record_success(self) -> None:
        with self._lock:
            self.state = "closed"
            self.failures = 0
            self._probing = False

    def record_failure(self, now: float) -> None:
        with self._lock:
            self.failures += 1
            if self.state == "half_open" or (
                self.failure_threshold > 0 and self.failures >= self.failure_threshold
            ):
                self.state = "open"
                self.opened_at = now
            self._probing = False


def _counts_against_endpoint(exc: errors.ProviderError) -> bool:
    """Failures that say the endpoint is unhealthy, not that the request was wrong."""
    return exc.retryable or isinstance(exc, (errors.AuthenticationFailed, errors.PermissionDenied))


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
        return _counts_against_endpoint(exc)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        chain = self._chain(request)
        attempts = 0
        last: errors.ProviderError | None = None
        for position, model in enumerate(chain):
            routed = self._routed(request, chain, model)
            breaker = self.breaker(model, routed.api_base)
            if self.policy.failure_threshold > 0 and not breaker.allow(self._clock()):
                log.info(
                    "skipping %s: circuit open for %.1f s more", model, breaker.seconds_left(self._clock())
                )
                continue
            try:
                completion = await self.inner.acomplete(routed)
            except errors.ProviderError as exc:
                attempts += exc.attempts
                if _counts_against_endpoint(exc):
                    breaker.record_failure(self._clock())
                else:
                    breaker.record_success()  # the endpoint answered; the request was at fault
                if not self._falls_through(exc) or position == len(chain) - 1:
                    exc.attempts = attempts
                    raise
                log.warning(
                    "%s failed (%s); falling back to %s", model, type(exc).__name__, chain[position + 1]
                )
                last = exc
                continue
            breaker.record_success()
            return completion.replace(
                model=model,
                attempts=attempts + completion.attempts,
                fallback_used=model != chain[0],
            )
        raise self._all_skipped(chain, request, last, attempts)

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
        wait = min(self.breaker(m, self._routed(request, chain, m).api_base).seconds_left(now) for m in chain)
        err = errors.ProviderUnavailable(
            f"every model in the chain ({', '.join(chain)}) failed recently and is paused "
            f"(circuit open); next try in {wait:.1f} s",
            model=chain[0],
            retry_after=wait,
        )
        err.attempts = 0
        return err

    async def aclose(self) -> None:
        await self.inner.aclose()
