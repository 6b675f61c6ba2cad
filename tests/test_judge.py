"""The LLM judge: its reply read as a score, its calls run side by side and counted in the spend."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import Client, ClientConfig, Completion, Secret
from promptlift.client.config import ModelPrice
from promptlift.errors import BudgetExceeded, ProviderUnavailable
from promptlift.optimize import Dataset, Evaluator, FewShot, Prompt, RunSettings
from promptlift.optimize.metrics import LLMJudge, metric_from_config
from promptlift.optimize.run import Budget as RunBudget
from promptlift.testing import FunctionProvider, GatedProvider
from promptlift.testing.conformance import TASK_MODEL, synthetic_model, synthetic_splits
from promptlift.testing.server import LoopbackServer, ok
from promptlift.types import CompletionRequest, Usage

DATA = Dataset.from_records([{"q": f"question {i}", "a": f"answer {i}"} for i in range(8)])
PROMPT = Prompt(user="{q}")
RUBRIC = "The answer names the right number."


def is_judge(request: CompletionRequest) -> bool:
    return request.messages[-1].content.startswith("You grade an answer")


def run(provider: FunctionProvider, judge_model: str | None = None, **config: object) -> object:
    with Client(ClientConfig(models=("scripted/task",), **config), provider=provider) as client:  # type: ignore[arg-type]
        judge = LLMJudge(client, RUBRIC, judge_model, input_field="q", expected_field="a")
        return asyncio.run(Evaluator(client, judge).evaluate(PROMPT, DATA))


@pytest.mark.parametrize(
    ("reply", "score", "reason"),
    [
        ("7\nIt names the number.", 0.7, "7\nIt names the number."),
        ("Score: 10 - exact", 1.0, "Score: 10 - exact"),
        ("15", 1.0, "15"),  # clipped to the scale
        ("looks fine to me", 0.0, "the judge gave no score: 'looks fine to me'"),
    ],
)
def test_the_judges_reply_is_read_as_a_score_out_of_ten(reply: str, score: float, reason: str) -> None:
    provider = FunctionProvider(lambda r: reply if is_judge(r) else "an answer")
    evaluation = run(provider)
    assert [r.score for r in evaluation.rows] == [score] * 8  # type: ignore[attr-defined]
    assert evaluation.rows[0].reason == reason  # type: ignore[attr-defined]


def test_the_judge_sees_the_input_the_expected_answer_and_the_output_on_its_own_model() -> None:
    provider = FunctionProvider(lambda r: "9 yes" if is_judge(r) else f"out for {r.messages[-1].content}")
    run(provider, judge_model="scripted/judge")
    judged = [r for r in provider.requests if is_judge(r)]
    assert len(judged) == 8 and {r.model for r in judged} == {"scripted/judge"}
    text = next(r.messages[-1].content for r in judged if "question 3" in r.messages[-1].content)
    assert "Expected: answer 3" in text and "Answer: out for question 3" in text and RUBRIC in text
    assert all(r.temperature == 0 and r.max_tokens == 64 for r in judged)


def test_judge_calls_run_side_by_side() -> None:
    """Each judge call waits until four are in flight. Scored one at a time (the metric blocking the
    batch, as it once did), the wait times out and the row scores 0."""
    provider = GatedProvider(
        lambda r: "8" if is_judge(r) else "an answer", until=4, gate=is_judge, timeout=3.0, on_timeout="0"
    )
    evaluation = run(provider, concurrency=8)
    assert provider.peak >= 4
    assert evaluation.mean == pytest.approx(0.8)  # type: ignore[attr-defined]


def test_judge_calls_count_in_the_evaluations_spend() -> None:
    def reply(request: CompletionRequest) -> Completion:
        cost = 0.02 if is_judge(request) else 0.01
        return Completion(content="6", model=request.model, provider="f", usage=Usage(10, 2), cost_usd=cost)

    evaluation = run(FunctionProvider(reply))
    spend = evaluation.spend  # type: ignore[attr-defined]
    assert (spend.calls, spend.tokens, round(spend.cost_usd, 6)) == (16, 16 * 12, 0.24)


def test_a_judge_call_refused_by_the_budget_stops_the_evaluation_instead_of_scoring_zero() -> None:
    """A refused judge call says nothing about the answer: scoring the row 0 would corrupt the
    candidate's score. The evaluation stops (a run resumes from its checkpoint) with the reason."""

    def reply(request: CompletionRequest) -> str | BudgetExceeded:
        if is_judge(request) and "question 5" in request.messages[-1].content:
            return BudgetExceeded("the run's budget is spent", limit="cost_usd")
        return "5"

    with pytest.raises(BudgetExceeded):
        run(FunctionProvider(reply))


def test_rows_judged_before_a_failure_are_checkpointed() -> None:
    seen: list[int] = []

    def reply(request: CompletionRequest) -> str | ProviderUnavailable:
        if is_judge(request) and "question 7" in request.messages[-1].content:
            return ProviderUnavailable("judge down", model=request.model)
        return "4"

    with Client(
        ClientConfig(models=("scripted/task",), concurrency=1), provider=FunctionProvider(reply)
    ) as c:
        judge = LLMJudge(c, RUBRIC, input_field="q")
        with pytest.raises(ProviderUnavailable):
            asyncio.run(Evaluator(c, judge).evaluate(PROMPT, DATA, on_row=lambda pos, r, s: seen.append(pos)))
    assert sorted(seen) == list(range(7))


def test_judge_from_config_on_the_wire(loopback: LoopbackServer) -> None:
    """Real LiteLLM over real HTTP: task calls to one model, judge calls to another, both priced."""
    loopback.set_default(ok("the answer is 4", output_tokens=5), model="task")
    loopback.set_default(ok("9\ncorrect", output_tokens=3), model="judge")
    prices = {
        "openai/task": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0),
        "openai/judge": ModelPrice(input_per_mtok=3.0, output_per_mtok=6.0),
    }
    config = ClientConfig(
        models=("openai/task",),
        api_base=loopback.openai_base,
        api_key=Secret("sk-judge-0123456789"),
        prices=prices,
    )
    with Client(config) as client:
        metric = metric_from_config(
            {
                "type": "llm_judge",
                "rubric": RUBRIC,
                "model": "openai/judge",
                "input_field": "q",
                "field": "a",
            },
            client=client,
        )
        evaluation = asyncio.run(Evaluator(client, metric).evaluate(PROMPT, DATA))
    assert evaluation.mean == pytest.approx(0.9)
    judged = [r for r in loopback.requests if r.model == "judge"]
    assert len(judged) == 8 and len(loopback.requests) == 16
    assert all(r.json["max_tokens"] == 64 and r.json["temperature"] == 0 for r in judged)
    assert evaluation.spend.calls == 16 and evaluation.spend.cost_usd > 0


def synthetic_with_judge(request: CompletionRequest) -> str:
    if is_judge(request):  # a judge whose grade depends on the whole text it reads
        return str(sum(request.messages[-1].content.encode()) % 11)
    return synthetic_model(request)


@pytest.mark.parametrize("max_calls", [101, 113, 157])
def test_a_run_with_a_judge_stays_within_max_calls_and_test_scores_its_best(max_calls: int) -> None:
    """Each scored row costs two calls: the run's reservations and checks count both (they counted
    one, and runs went past max_calls, or ran out of room to test-score the best prompt)."""
    provider = FunctionProvider(synthetic_with_judge)
    with Client(ClientConfig(models=(TASK_MODEL,), concurrency=4), provider=provider) as client:
        settings = RunSettings(
            task_model=TASK_MODEL, reasoning_model=TASK_MODEL, budget=RunBudget(max_calls=max_calls), seed=0
        )
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        judge = LLMJudge(client, "Is the label right?", None, "text", "label")
        result = FewShot(answer_field="label", max_demos=3, trials=200).optimize(
            prompt, synthetic_splits(), judge, client=client, settings=settings
        )
    assert len(provider.requests) <= max_calls
    assert result.spend.calls == len(provider.requests)  # every call sent is in the result's ledger
    assert "could not be test-scored" not in result.stop_reason
    assert len(result.best_test.rows) == len(synthetic_splits().test)


def test_a_failing_judge_stops_the_batch_and_its_paid_calls_are_reported() -> None:
    """One at a time: the judge fails on the fourth row, so the fifth task call is never sent, and
    the four task calls and three judge calls that were paid all reach ``on_spend``."""
    paid: list[int] = []

    def reply(request: CompletionRequest) -> str | ProviderUnavailable:
        if is_judge(request) and "question 3" in request.messages[-1].content:
            return ProviderUnavailable("judge down", model=request.model)
        return "6"

    provider = FunctionProvider(reply)
    with Client(ClientConfig(models=("scripted/task",), concurrency=1), provider=provider) as client:
        judge = LLMJudge(client, RUBRIC, input_field="q")
        with pytest.raises(ProviderUnavailable):
            asyncio.run(
                Evaluator(client, judge).evaluate(PROMPT, DATA, on_spend=lambda s: paid.append(s.calls))
            )
    task_calls = [r for r in provider.requests if not is_judge(r)]
    assert len(task_calls) == 4 and sum(paid) == 4 + 3


def test_no_scoring_outlives_a_failed_evaluation() -> None:
    """A checkpoint that fails on one row ends the evaluation with its error; the other worker is
    cancelled with it, not left running (sending task and judge calls) afterwards."""
    provider = FunctionProvider(lambda r: "7" if is_judge(r) else "an answer", delay=0.02)

    def checkpoint(pos: int, row: object, spend: object) -> None:
        if pos == 2:
            raise OSError("disk full")

    async def scenario() -> int:
        with Client(ClientConfig(models=("scripted/task",), concurrency=2), provider=provider) as client:
            with pytest.raises(OSError, match="disk full"):
                await Evaluator(client, LLMJudge(client, RUBRIC)).evaluate(PROMPT, DATA, on_row=checkpoint)
            sent = len(provider.requests)
            await asyncio.sleep(0.3)  # anything still running would send its judge call by now
            return len(provider.requests) - sent

    assert asyncio.run(scenario()) == 0
