"""A conformance suite every optimizer must pass, shipped so a new optimizer is tested by subclassing.

    class TestMyOptimizer(OptimizerConformance):
        def make_optimizer(self) -> Optimizer:
            return MyOptimizer(...)

It runs the optimizer against a ``FunctionProvider`` on a small synthetic task, with no network
and no model, and checks the contract of ``promptlift.optimize.optimizers.base``: every stop rule
and budget is respected, the test split is never shown to the optimizer, a seed reproduces the run,
and the history is complete. Plain ``assert``s: any test runner that collects ``Test*`` classes runs it.
"""

from __future__ import annotations

from promptlift.client import Client, ClientConfig
from promptlift.optimize.dataset import Dataset, Splits, split
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, RunSettings
from promptlift.optimize.stop import MaxRounds, StopRule
from promptlift.testing.doubles import FunctionProvider
from promptlift.types import CompletionRequest

TASK_MODEL = "scripted/task"
REASONING_MODEL = "scripted/reasoner"
TEST_MARK = "HELD-OUT"


def synthetic_splits(n: int = 40, seed: int = 0) -> Splits:
    """Words labelled by their length; test rows carry a marker so any leak is visible."""
    words = [f"w{'x' * (i % 7)}{i}" for i in range(n)]
    data = Dataset.from_records(
        [{"text": w, "label": "long" if len(w) > 5 else "short"} for w in words], "synthetic"
    )
    parts = split(data, 0.5, 0.25, 0.25, seed)
    marked = Dataset.from_records(
        [{"text": f"{TEST_MARK} {r['text']}", "label": r["label"]} for r in parts.test], "synthetic-test"
    )
    return Splits(parts.train, parts.validation, marked)


def synthetic_model(request: CompletionRequest) -> str:
    """A task model that answers right only when shown at least two demos or told to count letters.

    The reasoning model proposes the instruction that works; optimizers that select demos or
    rewrite instructions can both find a gain.
    """
    if request.model == REASONING_MODEL:
        return "Count the letters of the word: more than 5 is long, otherwise short."
    demos = sum(1 for m in request.messages if m.role == "assistant")
    system = " ".join(m.text for m in request.messages if m.role == "system")
    word = request.messages[-1].text.split()[-2]  # "Word: <word>\nLength:"
    if demos >= 2 or "Count the letters" in system:
        return "long" if len(word) > 5 else "short"
    return "unsure"


class OptimizerConformance:
    """Subclass and implement ``make_optimizer``; every ``test_*`` method is one promise."""

    seed = 0

    def make_optimizer(self) -> Optimizer:
        raise NotImplementedError

    def run(
        self, *, budget: Budget | None = None, stop: StopRule | None = None, seed: int | None = None
    ) -> tuple[OptimizationResult, FunctionProvider]:
        provider = FunctionProvider(synthetic_model)
        client = Client(ClientConfig(models=(TASK_MODEL,), concurrency=4), provider=provider)
        settings = RunSettings(
            task_model=TASK_MODEL,
            reasoning_model=REASONING_MODEL,
            budget=budget or Budget(max_calls=400),
            stop=stop or MaxRounds(6),
            seed=self.seed if seed is None else seed,
        )
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        try:
            result = self.make_optimizer().optimize(
                prompt, synthetic_splits(), ExactMatch("label"), client=client, settings=settings
            )
        finally:
            client.close()
        return result, provider

    def test_respects_the_call_budget(self) -> None:
        for cap in (60, 150):
            result, provider = self.run(budget=Budget(max_calls=cap), stop=MaxRounds(1000))
            assert len(provider.requests) <= cap, (cap, len(provider.requests))
            assert result.spend.calls == len(provider.requests)
            assert result.best_test.rows, "a run always ends with test scores"

    def test_respects_stop_rules(self) -> None:
        result, _ = self.run(stop=MaxRounds(2), budget=Budget(max_calls=10_000))
        assert result.stop_reason in ("max_rounds (2)", "completed"), result.stop_reason
        assert max(c.round for c in result.history) <= 2

    def test_never_shows_the_test_split_to_the_optimizer(self) -> None:
        result, provider = self.run()
        shown = [r for r in provider.requests if any(TEST_MARK in m.text for m in r.messages)]
        test_rows = len(result.initial_test.rows)
        scorings = 1 if result.best.prompt == result.initial.prompt else 2
        assert len(shown) == test_rows * scorings  # the driver's start and end scoring only
        for request in shown:  # and never inside a demo, an instruction or a reasoning call
            assert request.model == TASK_MODEL
            assert all(TEST_MARK not in m.text for m in request.messages[:-1])

    def test_is_reproducible_with_a_seed(self) -> None:
        first, _ = self.run()
        second, _ = self.run()
        assert [c.prompt for c in first.history] == [c.prompt for c in second.history]
        assert [c.score for c in first.history] == [c.score for c in second.history]
        assert first.best.prompt == second.best.prompt

    def test_records_a_complete_history(self) -> None:
        result, _ = self.run()
        assert result.history[0].origin == "initial"
        assert [c.id for c in result.history] == list(range(len(result.history)))
        n_validation = len(result.initial.evaluation.rows)
        for candidate in result.history:
            assert len(candidate.evaluation.rows) == n_validation
            assert candidate.parent is None or 0 <= candidate.parent < candidate.id
        assert result.best.score == max(c.score for c in result.history)
        assert result.best.score >= result.initial.score
        assert result.task_spend.calls + result.reasoning_spend.calls == result.spend.calls
