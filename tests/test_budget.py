"""Budgets: reserve the worst case before sending, reconcile after, never cross a cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from promptlift import BudgetExceeded, Client, ClientConfig, Completion, Secret, Usage
from promptlift.client.budget import BudgetLedger, Reservation
from promptlift.client.config import Budget, CacheConfig, ModelPrice
from promptlift.errors import ConfigError
from promptlift.testing import FunctionProvider, GatedProvider, ScriptedProvider
from promptlift.testing.server import LoopbackServer, ok

PRICE = {"openai/m": ModelPrice(input_per_mtok=1_000_000.0, output_per_mtok=1_000_000.0)}  # $1 a token


def test_ledger_refuses_what_would_cross_and_counts_in_flight() -> None:
    ledger = BudgetLedger(Budget(max_cost_usd=1.0, max_calls=3))
    ledger.reserve(Reservation(0.6, 10))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Reservation(0.5, 10))  # 0.6 in flight + 0.5 > 1.0
    assert info.value.limit == "cost_usd"
    ledger.release(Reservation(0.6, 10), cost_usd=0.1, tokens=3)  # it really cost 0.1
    ledger.reserve(Reservation(0.5, 10))
    snap = ledger.snapshot()
    assert (round(snap.spent_usd, 6), snap.spent_tokens, snap.calls, snap.in_flight, snap.refused) == (
        0.1,
        3,
        1,
        1,
        1,
    )
    ledger.reserve(Reservation(0.0, 0))
    with pytest.raises(BudgetExceeded) as calls:
        ledger.reserve(Reservation(0.0, 0))
    assert calls.value.limit == "calls"


def test_a_call_that_would_cross_is_not_sent() -> None:
    provider = ScriptedProvider([], then="ok")
    config = ClientConfig(models=("openai/m",), budget=Budget(max_tokens=100))
    with Client(config, provider=provider) as client, pytest.raises(BudgetExceeded):
        client.complete("hello", max_tokens=500)
    assert provider.calls == 0


def test_64_in_flight_never_cross_the_cap() -> None:
    """Each call is reserved at $18 (8 input tokens estimated + 10 output at $1) and really costs
    that; the cap is $1400, so 77 calls fit. The first 64 are held in flight until all 64 are there."""
    worst = Completion("x " * 10, "openai/m", "f", Usage(8, 10))  # the worst case
    provider = GatedProvider(lambda r: worst, until=64)
    budget = Budget(max_cost_usd=1400.0)
    config = ClientConfig(models=("openai/m",), concurrency=64, budget=budget, prices=PRICE)

    async def run(client: Client) -> list[Completion | Exception]:
        requests = [client.request("a", max_tokens=10, temperature=0) for _ in range(200)]
        return list(await client.abatch(requests))

    client = Client(config, provider=provider)
    reserved = client.parts["budget"].estimate(client.request("a", max_tokens=10))  # type: ignore[attr-defined]
    results = asyncio.run(run(client))
    ledger = client.budget
    client.close()
    assert ledger is not None
    ok = [r for r in results if isinstance(r, Completion)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert provider.peak == 64
    assert reserved.cost_usd == pytest.approx(18.0)
    assert len(ok) == len(provider.requests) == 77 and len(refused) == 123
    assert ledger.spent_usd == pytest.approx(77 * 18.0) and ledger.spent_usd <= 1400.0
    assert ledger.snapshot().in_flight == 0


def test_cached_answers_are_free_even_when_the_budget_is_spent(tmp_path: object) -> None:
    provider = ScriptedProvider([Completion("x", "openai/m", "f", Usage(1, 1))])
    config = ClientConfig(
        models=("openai/m",),
        budget=Budget(max_calls=1),
        cache=CacheConfig(path=None),
    )
    with Client(config, provider=provider) as client:
        client.complete("q", temperature=0)
        again = client.complete("q", temperature=0)  # the one allowed call is spent; a hit is free
        assert again.cached
        with pytest.raises(BudgetExceeded):
            client.complete("other", temperature=0)
        ledger = client.budget
    assert ledger is not None and ledger.calls == 1 and provider.calls == 1


def test_run_scope_caps_calls_across_sync_and_async() -> None:
    provider = FunctionProvider(lambda r: "ok")
    with Client(ClientConfig(models=("openai/m",)), provider=provider) as client:
        with client.budget_scope(Budget(max_calls=3)) as run:
            client.complete("a")

            async def two() -> list[object]:
                return [await client.acomplete("b"), await client.acomplete("c")]

            asyncio.run(two())
            with pytest.raises(BudgetExceeded):
                client.complete("d")
        client.complete("outside the run")  # no cap outside the scope
    assert run.calls == 3 and len(provider.requests) == 4


def test_unknown_cost_is_priced_from_the_table() -> None:
    provider = ScriptedProvider([Completion("x", "openai/m", "f", Usage(2, 3))])
    config = ClientConfig(models=("openai/m",), budget=Budget(max_cost_usd=1e9), prices=PRICE)
    with Client(config, provider=provider) as client:
        done = client.complete("q", max_tokens=3)
        ledger = client.budget
    assert done.cost_usd == pytest.approx(5.0)
    assert ledger is not None and ledger.spent_usd == pytest.approx(5.0)


@pytest.mark.parametrize("scope", ["client", "run"])
def test_a_budgeted_call_without_max_tokens_is_sent_capped(loopback: LoopbackServer, scope: str) -> None:
    """Unset, LiteLLM sends Anthropic the model's maximum (128k tokens for this one): one answer could
    spend far past a cap that reserved the budget's default. Under a budget the default is what is sent."""
    loopback.script(ok("one"), ok("two"), ok("three"))
    cap = Budget(max_calls=10, default_max_tokens=300)
    model = "anthropic/claude-3-5-haiku-20241022"
    base = ClientConfig(models=(model,), api_base=loopback.url, api_key=Secret("sk-ant-budget-test-0123"))
    with Client(base) as free:
        free.complete("hi")
    with Client(replace(base, budget=cap if scope == "client" else None)) as client:
        if scope == "client":
            client.complete("hi")
        else:
            with client.budget_scope(cap):
                client.complete("hi")
        client.complete("hi", max_tokens=7)  # a request's own max_tokens is kept
    unbudgeted, budgeted, own = (r.json["max_tokens"] for r in loopback.requests)
    assert unbudgeted > 4096 and budgeted == 300 and own == 7


def test_the_budgets_ceiling_does_not_split_the_cache(loopback: LoopbackServer) -> None:
    """The ceiling a budget adds is sent, but is not part of the cache key: an answer bought without
    a budget serves the same request under one. An answer the ceiling cut short is not stored."""
    loopback.script(ok("full answer"), ok("cut short", finish_reason="length"), ok("full again"))
    config = ClientConfig(
        models=("openai/m",),
        api_base=loopback.openai_base,
        api_key=Secret("sk-cache-budget-0123"),
        cache=CacheConfig(),
    )
    cap = Budget(max_calls=10, default_max_tokens=300)
    with Client(config) as client:
        first = client.complete("hi", temperature=0)
        with client.budget_scope(cap):
            again = client.complete("hi", temperature=0)  # a hit: the same request as keyed
            cut = client.complete("tell me everything", temperature=0)
        later = client.complete("tell me everything", temperature=0)  # the cut answer was not stored
    assert (first.content, again.content, again.cached) == ("full answer", "full answer", True)
    assert (cut.content, cut.finish_reason, later.content, later.cached) == (
        "cut short",
        "length",
        "full again",
        False,
    )
    sent = [r.json for r in loopback.requests]
    assert len(sent) == 3 and sent[1]["max_tokens"] == 300 and "max_tokens" not in sent[2]


def test_a_cost_cap_refuses_a_model_with_no_known_price_before_any_call(loopback: LoopbackServer) -> None:
    """Its calls would count as $0, so the cap could never bind (an Azure deployment's name, a
    custom model): the call is refused with the fix, before anything is sent or spent."""
    config = ClientConfig(
        models=("azure/my-deployment",),
        api_base=loopback.url,
        api_key=Secret("sk-azure-budget-0123"),
        extra={"api_version": "2024-06-01"},
        budget=Budget(max_cost_usd=5.0),
    )
    with Client(config) as client, pytest.raises(ConfigError, match="no price is known") as info:
        client.complete("hi", max_tokens=5)
    assert "azure/my-deployment" in str(info.value) and "prices" in str(info.value)
    assert loopback.requests == []
    priced = replace(config, prices={"azure/my-deployment": ModelPrice(0.15, 0.60)})
    loopback.script(ok("fine"))
    with Client(priced) as client:
        assert client.complete("hi", max_tokens=5).content == "fine"


def test_a_cost_cap_checks_every_model_of_the_fallback_chain(loopback: LoopbackServer) -> None:
    """The priced first model is down: its unpriced fallback would answer at $0, past any cap."""
    config = ClientConfig(
        models=("openai/priced", "openai/unpriced"),
        api_base=loopback.openai_base,
        api_key=Secret("sk-chain-budget-0123"),
        prices={"openai/priced": ModelPrice(1.0, 1.0)},
        budget=Budget(max_cost_usd=5.0),
    )
    with Client(config) as client, pytest.raises(ConfigError, match="cannot hold for openai/unpriced"):
        client.complete("hi", max_tokens=5)
    assert loopback.requests == []


def test_an_unpriced_models_cached_answer_is_still_served_under_a_cost_cap(loopback: LoopbackServer) -> None:
    loopback.script(ok("paid for once"))
    base = ClientConfig(
        models=("openai/unpriced",),
        api_base=loopback.openai_base,
        api_key=Secret("sk-cached-budget-0123"),
        cache=CacheConfig(),
    )
    with Client(base) as client:
        client.complete("hi", max_tokens=5, temperature=0)
        with client.budget_scope(Budget(max_cost_usd=1.0)):
            hit = client.complete("hi", max_tokens=5, temperature=0)  # free: no price needed
            with pytest.raises(ConfigError, match="no price is known"):
                client.complete("something new", max_tokens=5, temperature=0)
    assert hit.cached and hit.content == "paid for once" and len(loopback.requests) == 1


def test_the_embedded_models_ceiling_is_its_own_default() -> None:
    """Under a budget, a local call without max_tokens keeps the embedded model's 64-token default
    (4,096 would not fit its 4,096-token window beside the prompt)."""
    provider = ScriptedProvider([], then="ok")
    with Client(
        ClientConfig(models=("local/gemma-3-270m",), budget=Budget(max_calls=5)), provider=provider
    ) as c:
        c.complete("hi")
        c.complete("hi", model="openai/m")
    local, remote = provider.requests
    assert (local.output_cap, local.max_tokens, remote.output_cap) == (64, None, 4096)
