"""Rate limits: token buckets as pure objects, then rpm/tpm observed in the server's timestamps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from promptlift import Client, ClientConfig, Secret
from promptlift.client.config import RateLimit
from promptlift.client.ratelimit import RateLimiter, TokenBucket
from promptlift.testing.server import LoopbackServer, ok

KEY = Secret("sk-test-ratelimit-000000")
SLACK = 0.03  # seconds: the gap between our send and the server's arrival stamp may shrink by this much


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_queues_in_order_and_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, capacity=2.0, clock=clock)
    waits = [bucket.take(1) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.5, 1.0, 1.5]  # never refused: the deficit is the queue
    clock.now += 10
    assert bucket.take(1) == 0.0


def test_429_halves_the_rate_pauses_and_recovers_additively() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10.0, capacity=1.0, clock=clock)
    bucket.take(1)
    bucket.slow_down(retry_after=2.0)
    assert bucket.rate == 5.0
    assert bucket.take(1) == pytest.approx(2.0 + 1 / 5.0)  # wait out Retry-After, then the halved rate
    for _ in range(3):
        bucket.slow_down(None)
    assert bucket.rate == pytest.approx(1.0)  # floor: a tenth of the configured rate
    bucket.recover()
    assert bucket.rate == pytest.approx(1.5)


def test_scopes_match_model_provider_and_everything() -> None:
    limits = [RateLimit("openai/a", rpm=60), RateLimit("openai", rpm=60), RateLimit("*", tpm=60)]
    limiter = RateLimiter(limits)
    assert len(limiter.for_model("openai/a")) == 3
    assert len(limiter.for_model("openai/b")) == 2
    assert len(limiter.for_model("anthropic/c")) == 1


@pytest.fixture(scope="module")
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


def warm_up(client: Client, srv: LoopbackServer) -> None:
    """One call first, then a quiet spell: the first call imports litellm inside the provider, after
    the limiter let it go, which would bunch the first requests up on the wire."""
    client.complete("warm up", temperature=0)
    time.sleep(0.5)  # let the buckets refill
    srv.reset()


def arrivals(srv: LoopbackServer) -> list[float]:
    return sorted(r.time for r in srv.requests)


def test_rpm_is_observed_at_the_server(srv: LoopbackServer) -> None:
    srv.reset()
    rate, burst = 10.0, 2  # 600 rpm, 0.2 s of burst
    config = ClientConfig(
        models=("openai/x",), api_base=srv.openai_base, api_key=KEY, concurrency=16,
        rate_limits=(RateLimit("openai/x", rpm=rate * 60, burst_s=burst / rate),),
    )  # fmt: skip
    with Client(config) as client:
        warm_up(client, srv)
        results = client.batch([client.request(f"hi {i}", temperature=0) for i in range(12)])
    assert all(not isinstance(r, Exception) for r in results)
    times = arrivals(srv)
    assert len(times) == 12
    for i in range(len(times)):
        for j in range(i + burst, len(times)):
            assert times[j] - times[i] >= (j - i - burst) / rate - SLACK, (i, j)


def test_tpm_is_observed_at_the_server(srv: LoopbackServer) -> None:
    srv.reset()
    config = ClientConfig(
        models=("openai/x",), api_base=srv.openai_base, api_key=KEY, concurrency=16,
        rate_limits=(RateLimit("*", tpm=5700, burst_s=0.2),),  # 95 tokens/s, 19 at once
    )  # fmt: skip
    with Client(config) as client:
        warm_up(client, srv)
        srv.set_default(ok("x", input_tokens=8, output_tokens=11))  # 19 tokens: exactly the estimate
        request = client.request("hi", max_tokens=11, temperature=0)
        from promptlift.client.ratelimit import estimate_tokens

        assert estimate_tokens(request) == 19
        results = client.batch([request.replace(sample=i, temperature=0.5) for i in range(8)])
    assert all(not isinstance(r, Exception) for r in results)
    times = arrivals(srv)
    for i in range(1, len(times)):
        assert times[i] - times[0] >= i * 0.2 - SLACK


def test_a_budgets_ceiling_is_the_answer_estimate_when_max_tokens_is_unset() -> None:
    from promptlift.client.ratelimit import estimate_tokens
    from promptlift.types import CompletionRequest, Message

    request = CompletionRequest("openai/m", (Message("user", "hi"),))
    base = estimate_tokens(request, default_max_tokens=256) - 256
    assert estimate_tokens(request.replace(output_cap=40), default_max_tokens=256) == base + 40
    assert estimate_tokens(request.replace(output_cap=40, max_tokens=7), default_max_tokens=256) == base + 7
