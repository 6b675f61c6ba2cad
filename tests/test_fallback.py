"""Circuit breaker as a pure state machine; the fallback chain against scripted and function providers."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import Client, ClientConfig, errors
from promptlift.client.fallback import CircuitBreaker, FallbackPolicy, FallbackProvider
from promptlift.client.retry import RetryPolicy
from promptlift.testing import FunctionProvider, ScriptedProvider
from promptlift.types import CompletionRequest, Message

REQ = CompletionRequest(model="a", messages=(Message("user", "hi"),))


def test_breaker_opens_after_threshold_and_probes_half_open() -> None:
    b = CircuitBreaker(failure_threshold=3, cooldown=10)
    for now in (0, 1):
        assert b.allow(now)
        b.record_failure(now)
    assert b.state == "closed"
    b.record_failure(2)
    assert b.state == "open" and not b.allow(5) and b.seconds_left(5) == 7
    assert b.allow(12) and b.state == "half_open"  # cool-down over: one probe
    assert not b.allow(12.1)  # a second caller waits for the probe
    b.record_failure(13)
    assert b.state == "open" and not b.allow(22)  # the probe failed: a new cool-down from 13
    assert b.allow(23)
    b.record_success()
    assert b.state == "closed" and b.failures == 0 and b.allow(23)


def test_success_resets_consecutive_failures() -> None:
    b = CircuitBreaker(failure_threshold=2, cooldown=10)
    b.record_failure(0)
    b.record_success()
    b.record_failure(1)
    assert b.state == "closed"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def by_model(**replies: object) -> FunctionProvider:
    def answer(request: CompletionRequest) -> object:
        reply = replies[request.model]
        return reply(request) if callable(reply) else reply

    return FunctionProvider(answer)  # type: ignore[arg-type]


def test_falls_back_on_unavailable_and_says_who_served() -> None:
    inner = by_model(a=errors.ProviderUnavailable("down", status=503), b="from b")
    result = asyncio.run(FallbackProvider(inner, ["a", "b"]).acomplete(REQ))
    assert (result.content, result.model, result.fallback_used, result.attempts) == ("from b", "b", True, 2)
    assert [r.model for r in inner.requests] == ["a", "b"]


@pytest.mark.parametrize(
    ("error", "falls_back"),
    [
        (errors.AuthenticationFailed("bad key", status=401), True),
        (errors.RateLimited("slow", status=429), True),
        (errors.ContextWindowExceeded("too long", status=400), True),
        (errors.BadRequest("bad", status=400), False),
        (errors.ContentFiltered("refused", status=400), False),
    ],
)
def test_which_errors_fall_back(error: errors.ProviderError, falls_back: bool) -> None:
    inner = by_model(a=error, b="from b")
    provider = FallbackProvider(inner, ["a", "b"])
    if falls_back:
        assert asyncio.run(provider.acomplete(REQ)).model == "b"
    else:
        with pytest.raises(type(error)):
            asyncio.run(provider.acomplete(REQ))
        assert len(inner.requests) == 1


def test_context_window_fallback_can_be_turned_off() -> None:
    inner = by_model(a=errors.ContextWindowExceeded("too long"), b="from b")
    provider = FallbackProvider(inner, ["a", "b"], FallbackPolicy(on_context_window=False))
    with pytest.raises(errors.ContextWindowExceeded):
        asyncio.run(provider.acomplete(REQ))


def test_breaker_skips_a_dead_model_then_probes_it_after_cooldown() -> None:
    clock = Clock()
    inner = by_model(a=errors.ProviderUnavailable("down", status=500), b="from b")
    provider = FallbackProvider(
        inner, ["a", "b"], FallbackPolicy(failure_threshold=2, cooldown=30), clock=clock
    )
    for _ in range(2):
        asyncio.run(provider.acomplete(REQ))
    assert provider.breaker("a").state == "open"
    before = len(inner.requests)
    result = asyncio.run(provider.acomplete(REQ))
    assert result.model == "b" and result.fallback_used and result.attempts == 1
    assert [r.model for r in inner.requests[before:]] == ["b"]  # a was skipped
    clock.now = 31
    asyncio.run(provider.acomplete(REQ))
    assert [r.model for r in inner.requests[before + 1 :]] == ["a", "b"]  # the half-open probe went to a


def test_every_breaker_open_raises_unavailable_with_retry_after() -> None:
    clock = Clock()
    inner = by_model(a=errors.ProviderUnavailable("down"), b=errors.ProviderUnavailable("down"))
    policy = FallbackPolicy(failure_threshold=1, cooldown=20, wait_for_probe=False)  # fail fast
    provider = FallbackProvider(inner, ["a", "b"], policy, clock=clock)
    with pytest.raises(errors.ProviderUnavailable):
        asyncio.run(provider.acomplete(REQ))
    clock.now = 5
    with pytest.raises(errors.ProviderUnavailable, match="circuit open") as info:
        asyncio.run(provider.acomplete(REQ))
    assert info.value.retry_after == 15 and info.value.attempts == 0
    assert len(inner.requests) == 2


def test_a_model_outside_the_chain_is_called_alone() -> None:
    inner = by_model(c=errors.ProviderUnavailable("down"), a="a", b="b")
    with pytest.raises(errors.ProviderUnavailable):
        asyncio.run(FallbackProvider(inner, ["a", "b"]).acomplete(REQ.replace(model="c")))


def test_client_retries_each_model_then_falls_back_sync_and_async() -> None:
    down = errors.ProviderUnavailable("down", status=500)
    provider = ScriptedProvider([down, down, down, "from b"] * 2)
    config = ClientConfig(models=("a", "b"), retry=RetryPolicy(max_attempts=3, initial_wait=0.001))
    with Client(config, provider=provider) as client:
        sync = client.complete("hi")
        async_ = asyncio.run(client.acomplete("hi"))
    for result in (sync, async_):
        assert (result.model, result.fallback_used, result.attempts) == ("b", True, 4)
    assert [r.model for r in provider.requests] == ["a", "a", "a", "b"] * 2
