"""The evaluator: per-row outputs, scores and reasons; failures kept in place, never lost."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import Client, ClientConfig
from promptlift.client.retry import RetryPolicy
from promptlift.errors import ContentFiltered, ProviderUnavailable, UserError
from promptlift.optimize import Dataset, Evaluator, Prompt
from promptlift.optimize.metrics import ExactMatch, FunctionMetric
from promptlift.testing import FunctionProvider
from promptlift.types import CompletionRequest

DATA = Dataset.from_records([{"q": f"q{i}", "a": "yes" if i % 2 else "no"} for i in range(6)])
PROMPT = Prompt(user="Q: {q}\nA:", system="Answer yes or no.")


def answer(request: CompletionRequest) -> str:
    i = int(request.messages[-1].content.split()[1][1:])
    return "yes" if i % 2 else "no"


def evaluate(fn, metric=None):  # type: ignore[no-untyped-def]
    with Client(ClientConfig(models=("scripted/m",)), provider=FunctionProvider(fn)) as client:
        return asyncio.run(Evaluator(client, metric or ExactMatch("a")).evaluate(PROMPT, DATA))


def test_every_row_is_scored_in_order_with_its_output() -> None:
    evaluation = evaluate(answer)
    assert [r.index for r in evaluation.rows] == list(range(6))
    assert evaluation.mean == 1.0 and evaluation.spend.calls == 6


def test_a_row_the_provider_refuses_scores_zero_and_keeps_the_error() -> None:
    def filtered(request: CompletionRequest) -> str | ContentFiltered:
        if "q3" in request.messages[-1].content:
            return ContentFiltered("refused by policy", provider="scripted", model="m", status=400)
        return answer(request)

    evaluation = evaluate(filtered)
    assert evaluation.mean == pytest.approx(5 / 6)
    assert evaluation.rows[3].error.startswith("ContentFiltered") and evaluation.rows[3].score == 0.0


def test_a_provider_failure_stops_the_evaluation_instead_of_scoring_zero() -> None:
    # A provider down after every retry says nothing about the prompt: scoring the row 0 would
    # corrupt the candidate's score, so the evaluation stops: answered rows stay checkpointed, and
    # no further call is sent (one at a time here, so which rows were answered is fixed).
    seen: list[int] = []
    paid: list[int] = []

    def flaky(request: CompletionRequest) -> str | ProviderUnavailable:
        if "q3" in request.messages[-1].content:
            return ProviderUnavailable("down", provider="scripted", model="m", status=503)
        return answer(request)

    async def run() -> None:
        config = ClientConfig(models=("scripted/m",), retry=RetryPolicy(max_attempts=1), concurrency=1)
        with Client(config, provider=provider) as client:
            await Evaluator(client, ExactMatch("a")).evaluate(
                PROMPT,
                DATA,
                on_row=lambda pos, r, s: seen.append(pos),
                on_spend=lambda s: paid.append(s.calls),
            )

    provider = FunctionProvider(flaky)
    with pytest.raises(ProviderUnavailable):
        asyncio.run(run())
    assert sorted(seen) == [0, 1, 2]  # answered before the failure, handed to the checkpoint
    assert len(provider.requests) == 4 and sum(paid) == 3  # q4, q5 never sent; the failed call cost nothing


def test_a_metric_that_raises_on_one_row_scores_it_zero_with_the_reason() -> None:
    def picky(row: dict, output: str) -> float:  # type: ignore[type-arg]
        if row["q"] == "q2":
            raise ValueError("cannot parse")
        return 1.0

    evaluation = evaluate(answer, FunctionMetric(picky))
    assert evaluation.mean == pytest.approx(5 / 6)
    assert "ValueError: cannot parse" in evaluation.rows[2].reason


def test_a_metric_that_fails_on_every_row_fails_loudly() -> None:
    def broken(row: dict, output: str) -> float:  # type: ignore[type-arg]
        raise KeyError("gold")

    with pytest.raises(UserError, match="failed on every row"):
        evaluate(answer, FunctionMetric(broken))


def test_when_every_call_fails_the_error_is_raised() -> None:
    with pytest.raises(ProviderUnavailable):
        evaluate(lambda r: ProviderUnavailable("down", status=503))


def test_splits_from_separate_files_are_each_really_scored() -> None:
    """Datasets loaded apart all number their rows from 0: a test split the size of the validation
    split must still be sent, not replayed from the validation scores (it was, keyed by index)."""
    from promptlift.optimize import FewShot, RunSettings
    from promptlift.optimize.dataset import Splits
    from promptlift.optimize.run import Budget

    def part(name: str, n: int) -> Dataset:
        return Dataset.from_records([{"q": f"{name}{i}", "a": "yes"} for i in range(n)])

    provider = FunctionProvider(lambda r: "yes" if "val" in r.messages[-1].content else "no")
    splits = Splits(part("train", 6), part("val", 4), part("test", 4))
    with Client(ClientConfig(models=("scripted/m",)), provider=provider) as client:
        settings = RunSettings(
            task_model="scripted/m", reasoning_model="scripted/m", budget=Budget(max_calls=60)
        )
        result = FewShot(answer_field="a", trials=2).optimize(
            PROMPT, splits, ExactMatch("a"), client=client, settings=settings
        )
    sent = [r.messages[-1].content for r in provider.requests]
    assert sum("test" in text for text in sent) >= 4  # the test rows reached the model
    assert result.initial.score == 1.0 and result.initial_test.mean == 0.0  # and were scored as themselves
