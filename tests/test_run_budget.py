"""A run's dollar cap is hard: enforced by the client before each call, test scoring included."""

from __future__ import annotations

import pytest

from promptlift import Client, ClientConfig
from promptlift.client.config import ModelPrice
from promptlift.errors import BudgetExceeded
from promptlift.optimize import Budget, FewShot, Prompt, RunSettings
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.stop import MaxRounds
from promptlift.testing import FunctionProvider
from promptlift.testing.conformance import TASK_MODEL, synthetic_model, synthetic_splits

PRICE = {TASK_MODEL: ModelPrice(input_per_mtok=1_000.0, output_per_mtok=1_000.0)}  # $0.001 a token


def run(cap: float):  # type: ignore[no-untyped-def]
    provider = FunctionProvider(synthetic_model)
    client = Client(ClientConfig(models=(TASK_MODEL,), prices=PRICE, concurrency=4), provider=provider)
    settings = RunSettings(
        task_model=TASK_MODEL,
        reasoning_model=TASK_MODEL,
        budget=Budget(max_cost_usd=cap),
        stop=MaxRounds(1000),
        seed=0,
    )
    prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
    try:
        return FewShot(answer_field="label", max_demos=3, trials=200).optimize(
            prompt, synthetic_splits(), ExactMatch("label"), client=client, settings=settings
        ), provider
    finally:
        client.close()


def test_a_run_never_spends_past_its_dollar_cap_and_still_ends_with_test_scores() -> None:
    result, provider = run(cap=0.60)
    assert 0 < result.spend.cost_usd <= 0.60
    assert result.stop_reason.startswith("budget")
    assert len(result.best_test.rows) == len(result.initial_test.rows) == 10
    assert result.spend.calls == len(provider.requests)


def test_a_cap_too_small_for_the_starting_scores_is_a_clear_error() -> None:
    with pytest.raises(BudgetExceeded, match="does not cover scoring the starting prompt"):
        run(cap=0.01)
