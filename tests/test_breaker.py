"""The breaker's probe slot under every outcome, and calls that wait for a probe instead of failing."""

from __future__ import annotations

import asyncio
import time

import pytest

from promptlift import errors
from promptlift.client.fallback import CircuitBreaker, FallbackPolicy, FallbackProvider
from promptlift.providers.base import Provider
from promptlift.types import Completion, CompletionRequest, Message, Usage

REQ = CompletionRequest(model="a", messages=(Message("user", "hi"),))
DOWN = errors.ProviderUnavailable("down", status=503)


class Held(Provider):
    """Holds the first call (the probe) until ``release(outcome)``: None answers it, an exception is
    raised. Answers every later call at once."""

    name = "held"

    def __init__(self) -> None:
        self.calls = 0
        self.probe_in: asyncio.Event | None = None
        self._gate: asyncio.Future[BaseException | None] | None = None

    def release(self, outcome: BaseException | None = None) -> None:
        assert self._gate is not None
        self._gate.set_result(outcome)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        if self.calls == 1:
            self._gate = asyncio.get_running_loop().create_future()
            assert self.probe_in is not None
            self.probe_in.set()
            outcome = await self._gate
            if outcome is not None:
                raise outcome
        return Completion(
            content=f"answer {self.calls}", model=request.model, provider=self.name, usage=Usage()
        )


def _provider(inner: Provider, **policy: object) -> FallbackProvider:
    settings = {"failure_threshold": 1, "cooldown": 0.0, **policy}
    return FallbackProvider(inner, ["a"], FallbackPolicy(**settings))  # type: ignore[arg-type]


async def _open_then_hold_probe(provider: FallbackProvider, inner: Held) -> asyncio.Task[Completion]:
    """Opens a's breaker (its cool-down over at once), then sends a call: the probe, held."""
    inner.probe_in = asyncio.Event()
    provider.breaker("a").record_failure(time.monotonic())
    probe = asyncio.ensure_future(provider.acomplete(REQ))
    await inner.probe_in.wait()
    assert provider.breaker("a").state == "half_open"
    return probe


async def _settle() -> None:
    for _ in range(20):  # let every ready task run up to its next wait
        await asyncio.sleep(0)


# -- case 1: the probe slot is released however the probe ends ----------------------------------


def test_admit_numbers_the_probe_and_release_frees_only_its_own_slot() -> None:
    b = CircuitBreaker(failure_threshold=1, cooldown=10)
    b.record_failure(0)
    first = b.admit(10)
    assert first is not None and first.probe > 0 and b.admit(10) is None
    b.release(first)  # no verdict: the next caller probes
    second = b.admit(10)
    assert second is not None and second.probe > first.probe
    b.release(first)  # a stale pass does not free the new probe's slot
    assert b.admit(10) is None
    b.record_success()
    b.release(second)  # after its verdict, release changes nothing
    assert b.state == "closed" and b.admit(10) is not None


@pytest.mark.parametrize(
    "outcome",
    [
        "cancelled",
        RuntimeError("a bug below the breaker"),
        errors.ConfigError("host not allowed"),
        errors.Timeout("no answer in time"),
        errors.BadRequest("bad"),
        None,
    ],
    ids=["cancelled", "foreign error", "user error", "timeout", "bad request", "success"],
)
def test_any_end_of_the_probe_lets_the_next_call_through(outcome: BaseException | str | None) -> None:
    async def scenario() -> Completion:
        inner = Held()
        provider = _provider(inner)
        probe = await _open_then_hold_probe(provider, inner)
        if outcome == "cancelled":
            probe.cancel()
        else:
            inner.release(outcome if isinstance(outcome, BaseException) else None)
        await asyncio.gather(probe, return_exceptions=True)
        # A wedged slot fails this call: at once before the fix, after its 1 s wait with it.
        return await provider.acomplete(REQ.replace(timeout=1.0))

    assert asyncio.run(scenario()).content == "answer 2"


# -- case 2: a one-model chain waits for the probe ------------------------------------------------


def test_a_call_waits_for_the_probe_in_flight_and_goes_when_it_succeeds() -> None:
    async def scenario() -> tuple[Completion, Completion]:
        inner = Held()
        provider = _provider(inner)
        probe = await _open_then_hold_probe(provider, inner)
        waiter = asyncio.ensure_future(provider.acomplete(REQ))
        await _settle()
        assert not waiter.done() and inner.calls == 1  # waiting, not failed, nothing sent
        inner.release(None)
        return await probe, await waiter

    probe, waiter = asyncio.run(scenario())
    assert (probe.content, waiter.content, waiter.attempts) == ("answer 1", "answer 2", 1)


def test_when_the_probe_fails_every_waiter_fails_with_its_reason_unsent() -> None:
    async def scenario() -> tuple[Held, list[Completion | BaseException]]:
        inner = Held()
        provider = _provider(inner)
        probe = await _open_then_hold_probe(provider, inner)
        provider.breaker("a").cooldown = 60.0
        waiters = [asyncio.ensure_future(provider.acomplete(REQ)) for _ in range(3)]
        await _settle()
        assert not any(w.done() for w in waiters)
        inner.release(errors.ConnectionFailed("refused again"))
        await asyncio.gather(probe, return_exceptions=True)
        return inner, await asyncio.gather(*waiters, return_exceptions=True)

    inner, results = asyncio.run(scenario())
    assert inner.calls == 1  # one probe answered for all of them
    for result in results:
        assert isinstance(result, errors.ProviderUnavailable) and result.attempts == 0
        assert "circuit open" in str(result) and "refused again" in str(result)


def test_the_wait_is_bounded_by_the_calls_timeout() -> None:
    async def scenario() -> BaseException | Completion:
        inner = Held()
        provider = _provider(inner)
        probe = await _open_then_hold_probe(provider, inner)
        (result,) = await asyncio.gather(
            provider.acomplete(REQ.replace(timeout=0.05)), return_exceptions=True
        )
        inner.release(None)
        await probe
        return result

    result = asyncio.run(scenario())
    assert isinstance(result, errors.ProviderUnavailable) and "circuit open" in str(result)


class Failing(Provider):
    """Raises DOWN for the first ``failures`` calls, then answers "back"."""

    name = "failing"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def acomplete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        if self.calls <= self.failures:
            raise DOWN
        return Completion(content="back", model=request.model, provider=self.name, usage=Usage())


def test_a_call_waits_out_the_cooldown_then_probes() -> None:
    inner = Failing(0)
    provider = _provider(inner, cooldown=0.05)
    provider.breaker("a").record_failure(time.monotonic())
    result = asyncio.run(provider.acomplete(REQ))  # before: "circuit open" at once
    assert (result.content, result.attempts, inner.calls) == ("back", 1, 1)
    assert provider.breaker("a").state == "closed"


def test_the_call_that_opened_the_breaker_is_sent_again_once_after_the_probe() -> None:
    inner = Failing(1)
    result = asyncio.run(_provider(inner, cooldown=0.05).acomplete(REQ))
    assert (result.content, result.attempts, inner.calls) == ("back", 2, 2)

    inner = Failing(10)  # still down when it goes again (as the probe): it fails, and does not wait again
    with pytest.raises(errors.ProviderUnavailable) as info:
        asyncio.run(_provider(inner, cooldown=0.05).acomplete(REQ))
    assert (info.value.attempts, inner.calls) == (2, 2)


def test_no_wait_for_a_model_that_failed_below_its_threshold() -> None:
    inner = Failing(1)
    with pytest.raises(errors.ProviderUnavailable):
        asyncio.run(_provider(inner, failure_threshold=2).acomplete(REQ))
    assert inner.calls == 1


def test_a_chain_with_every_model_paused_waits_for_the_first_probe_back() -> None:
    async def scenario() -> Completion:
        inner = Held()
        provider = FallbackProvider(inner, ["a", "b"], FallbackPolicy(failure_threshold=1, cooldown=0.0))
        provider.breaker("b").cooldown = 60.0
        provider.breaker("b").record_failure(time.monotonic())
        probe = await _open_then_hold_probe(provider, inner)
        provider.breaker("a").cooldown = 60.0
        waiter = asyncio.ensure_future(provider.acomplete(REQ))
        await _settle()
        assert not waiter.done()
        inner.release(None)
        await probe
        return await waiter

    result = asyncio.run(scenario())
    assert (result.content, result.model, result.fallback_used) == ("answer 2", "a", False)
