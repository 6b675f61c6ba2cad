"""Retry strategies as pure functions of a state, and the retry wrapper against a scripted provider."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import errors
from promptlift.client.retry import (
    AttemptsPerError,
    RetryingProvider,
    RetryPolicy,
    RetryState,
    RetryStrategy,
    StopAfterAttempt,
    StopAfterDelay,
    WaitExponential,
    WaitFixed,
    WaitFullJitter,
    WaitRetryAfter,
)
from promptlift.providers.litellm import parse_retry_after
from promptlift.testing import ScriptedProvider
from promptlift.types import CompletionRequest, Message

REQ = CompletionRequest(model="openai/m", messages=(Message("user", "hi"),), timeout=10.0)


def state(
    attempt: int, error: errors.ProviderError | None = None, elapsed: float = 0.0, draw: float = 1.0
) -> RetryState:
    return RetryState(attempt, error or errors.ProviderUnavailable("down", status=500), elapsed, draw)


def test_exponential_doubles_and_caps() -> None:
    wait = WaitExponential(initial=0.5, base=2, cap=3)
    assert [wait(state(n)) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert WaitExponential(cap=7)(state(5000)) == 7  # no overflow on absurd attempt counts


def test_full_jitter_spans_zero_to_the_capped_exponential() -> None:
    wait = WaitFullJitter(initial=1, cap=10)
    assert wait(state(3, draw=0.0)) == 0.0
    assert wait(state(3, draw=0.5)) == 2.0
    assert wait(state(3, draw=0.999)) == pytest.approx(3.996)
    assert wait(state(20, draw=0.999)) <= 10


def test_retry_after_is_honoured_and_capped() -> None:
    wait = WaitRetryAfter(max_wait=5, otherwise=WaitFixed(0.25))
    assert wait(state(1, errors.RateLimited("slow", retry_after=2.0))) == 2.0
    assert wait(state(1, errors.RateLimited("slow", retry_after=3600.0))) == 5
    assert wait(state(1, errors.RateLimited("slow"))) == 0.25


def test_retry_after_header_values() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # in the past
    assert parse_retry_after("soon") is None


def test_waits_add_and_stops_combine() -> None:
    assert (WaitFixed(1) + WaitExponential(initial=1))(state(2)) == 3
    stop = StopAfterAttempt(5) | StopAfterDelay(10)
    assert not stop(state(2, elapsed=1), 1)
    assert stop(state(5, elapsed=1), 1)
    assert stop(state(2, elapsed=9.5), 1)  # the next attempt could not start before the deadline


def test_only_retryable_errors_are_retried() -> None:
    strategy = RetryStrategy(WaitFixed(0.1), StopAfterAttempt(10))
    for final in (
        errors.BadRequest("no"),
        errors.AuthenticationFailed("no"),
        errors.PermissionDenied("no"),
        errors.ModelNotFound("no"),
        errors.ContextWindowExceeded("too long"),
        errors.ContentFiltered("refused"),
    ):
        assert strategy.next_wait(state(1, final)) is None, type(final).__name__
    for transient in (
        errors.RateLimited("x"),
        errors.Timeout("x"),
        errors.ConnectionFailed("x"),
        errors.ProviderUnavailable("x"),
    ):
        assert strategy.next_wait(state(1, transient)) == 0.1


def test_attempts_per_error_class() -> None:
    stop = AttemptsPerError({errors.RateLimited: 4, errors.Timeout: 1})
    assert not stop(state(3, errors.RateLimited("x")), 0)
    assert stop(state(4, errors.RateLimited("x")), 0)
    assert stop(state(1, errors.Timeout("x")), 0)
    assert not stop(state(9, errors.ConnectionFailed("x")), 0)  # not listed: not limited here


def test_policy_builds_the_documented_strategy() -> None:
    policy = RetryPolicy(max_attempts=3, initial_wait=1, max_wait=4, attempts_per_error={"RateLimited": 5})
    s = policy.strategy()
    assert s.next_wait(state(2, errors.ProviderUnavailable("x"), draw=1.0)) == 2.0
    assert s.next_wait(state(3, errors.ProviderUnavailable("x"))) is None  # 3 attempts made
    assert s.next_wait(state(4, errors.RateLimited("x", retry_after=60))) == 4  # capped; 5 allowed
    assert s.next_wait(state(5, errors.RateLimited("x"))) is None
    deadline = RetryPolicy(max_attempts=10, deadline=5, jitter=False, initial_wait=1).strategy()
    assert deadline.next_wait(state(2, elapsed=2.5)) == 2.0
    assert deadline.next_wait(state(3, elapsed=2.5)) is None  # 2.5 + 4 s > 5 s


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(errors.ConfigError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(errors.ConfigError, match="BadRequest"):
        RetryPolicy(attempts_per_error={"BadRequest": 3})
    assert RetryPolicy.with_max_retries(2).max_attempts == 3


class FakeTime:
    """A clock that only moves when the wrapper sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def retrying(provider: ScriptedProvider, policy: RetryPolicy, t: FakeTime) -> RetryingProvider:
    return RetryingProvider(provider, policy, sleep=t.sleep, clock=t.clock, draw=lambda: 1.0)


def test_wrapper_retries_then_reports_attempts() -> None:
    t = FakeTime()
    provider = ScriptedProvider(
        [errors.RateLimited("x", retry_after=2), errors.ProviderUnavailable("x"), "ok"]
    )
    result = asyncio.run(retrying(provider, RetryPolicy(max_attempts=3, initial_wait=0.5), t).acomplete(REQ))
    assert result.content == "ok" and result.attempts == 3
    assert t.sleeps == [2.0, 1.0]  # Retry-After, then the exponential's second step at full jitter


def test_wrapper_gives_up_after_max_attempts_with_attempts_on_the_error() -> None:
    t = FakeTime()
    provider = ScriptedProvider([], then=errors.ProviderUnavailable("down", status=503))
    with pytest.raises(errors.ProviderUnavailable) as info:
        asyncio.run(retrying(provider, RetryPolicy(max_attempts=4), t).acomplete(REQ))
    assert provider.calls == 4 and info.value.attempts == 4 and len(t.sleeps) == 3


def test_wrapper_never_retries_a_final_error() -> None:
    t = FakeTime()
    provider = ScriptedProvider([errors.AuthenticationFailed("bad key", status=401)])
    with pytest.raises(errors.AuthenticationFailed):
        asyncio.run(retrying(provider, RetryPolicy(max_attempts=5), t).acomplete(REQ))
    assert provider.calls == 1 and t.sleeps == []


def test_deadline_cuts_each_attempts_timeout() -> None:
    t = FakeTime()
    provider = ScriptedProvider([errors.Timeout("slow"), "ok"])
    policy = RetryPolicy(max_attempts=5, deadline=12, initial_wait=4, jitter=False)
    asyncio.run(retrying(provider, policy, t).acomplete(REQ))
    assert [r.timeout for r in provider.requests] == [10.0, 8.0]  # 12 s deadline, 4 s already waited
