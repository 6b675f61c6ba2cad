"""Pricing (registered → LiteLLM's offline map → 0 for local), token estimates, host allow-list."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import pricing
from promptlift.client.config import ModelPrice
from promptlift.errors import ConfigError
from promptlift.providers.credentials import Credentials, check_host
from promptlift.types import CompletionRequest, Message, Usage


def test_registered_price_wins_over_the_map_and_accepts_per_million() -> None:
    prices = {"openai/gpt-4o-mini": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)}
    assert pricing.price_of("openai/gpt-4o-mini", prices) == pricing.ModelPrice.per_million(1.0, 2.0)
    assert pricing.cost_usd("openai/gpt-4o-mini", Usage(1_000_000, 500_000), prices) == pytest.approx(2.0)


def test_map_price_with_cached_input() -> None:
    price = pricing.price_of("openai/gpt-4o-mini")
    assert price is not None and price.input_per_token == pytest.approx(0.15e-6)
    usage = Usage(input_tokens=1000, output_tokens=0, cached_tokens=400)
    assert price.cost(usage) == pytest.approx(600 * 0.15e-6 + 400 * 0.075e-6)


def test_local_is_free_and_unknown_is_zero() -> None:
    assert pricing.price_of("local/gemma-3-270m") == pricing.FREE
    assert pricing.price_of("openai/no-such-model-xyz") is None
    # LiteLLM 1.110.2's map has this paid model at $0 both ways: a gap, so unknown (a cost cap refuses
    # it instead of never binding)
    assert pricing.price_of("anthropic/claude-sonnet-4-20250514") is None
    assert pricing.cost_usd("openai/no-such-model-xyz", Usage(10, 10)) == 0.0


def test_estimates() -> None:
    request = CompletionRequest("openai/gpt-4o-mini", (Message("user", "hello " * 100),), max_tokens=50)
    tokens = pricing.estimate_input_tokens(request)
    # No tokenizer: it leans high (GPT-4o's tokenizer counts 100 tokens, plus framing), never low.
    assert 110 <= tokens <= 2 * 110
    worst = pricing.estimate_cost_usd(request)
    assert worst == pytest.approx(tokens * 0.15e-6 + 50 * 0.6e-6)


def test_host_allow_list() -> None:
    check_host("https://api.openai.com/v1", None)
    check_host("https://api.openai.com/v1", ("api.openai.com",))
    check_host("https://mine.openai.azure.com", (".openai.azure.com",))
    check_host("http://127.0.0.1:8000/v1", ("127.0.0.1:8000",))
    for bad in ("https://evil.example/v1", "https://openai.azure.com.evil.example", "http://127.0.0.1:9/v1"):
        with pytest.raises(ConfigError):
            check_host(bad, ("api.openai.com", ".openai.azure.com", "127.0.0.1:8000"))


def test_credentials_order_and_shared_refresh() -> None:
    env = {"OPENAI_API_KEY": "sk-env-00000001"}
    assert asyncio.run(Credentials("sk-explicit-01", env=env).key_for("openai")).reveal() == "sk-explicit-01"
    assert asyncio.run(Credentials(env=env).key_for("openai")).reveal() == "sk-env-00000001"  # type: ignore[union-attr]
    assert asyncio.run(Credentials(env={}).key_for("ollama_chat")) is None
    calls: list[str] = []

    async def source(provider: str) -> str:
        calls.append(provider)
        await asyncio.sleep(0.01)
        return f"token-{len(calls):08d}"

    creds = Credentials(source=source)

    async def scenario() -> list[str]:
        first = await creds.key_for("azure")
        assert first is not None
        fresh = await asyncio.gather(*(creds.refresh("azure", stale=first) for _ in range(5)))
        return [k.reveal() for k in fresh]

    assert asyncio.run(scenario()) == ["token-00000002"] * 5  # five failures, one refresh
    assert calls == ["azure", "azure"]
