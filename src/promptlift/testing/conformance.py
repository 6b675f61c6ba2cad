"""A conformance suite every optimizer must pass, shipped so a new optimizer is tested by subclassing.

    class TestMyOptimizer(OptimizerConformance):
        def make_optimizer(self) -> Optimizer:
            return MyOptimizer(...)

It runs the optimizer against a ``FunctionProvider`` on a small synthetic task, with no network
and no model, and checks the contract of ``promptlift.optimize.optimizers.base``: every stop rule
and budget is respected, the test split is never shown to the optimizer, a seed reproduces the run,
and the history is complete. Plain ``assert``s: any test runner that collects ``Test*`` classes runs it.

``AgentConformance`` runs the same promises on an agent: the prompt has a tool, the task model
calls it only when the instruction or the tool's description says what it is for, and every row
is a tool loop of two model calls.
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
from promptlift.optimize.tools import Tool
from promptlift.testing.doubles import FunctionProvider
from promptlift.types import Completion, CompletionRequest, ToolCall

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


def letters(word: str) -> int:
    """A tool."""
    return len(word)


AGENT_HINT = "count the letters"


def synthetic_agent(request: CompletionRequest) -> str | Completion:
    """The agent's task model: it calls ``letters`` only when the instruction or the tool's
    description says to count letters (the reasoning model proposes that text for either), then
    answers from the tool's result; without the hint it answers "unsure"."""
    if request.model == REASONING_MODEL:
        return "Count the letters of the word: more than 5 is long, otherwise short."
    last = request.messages[-1]
    if last.role == "tool":
        return "long" if int(last.text) > 5 else "short"
    system = " ".join(m.text for m in request.messages if m.role == "system")
    described = " ".join(str(t.get("function", {}).get("description", "")) for t in request.tools)
    if AGENT_HINT in (system + " " + described).lower():
        word = last.text.split()[-2]
        call = ToolCall("letters", f'{{"word": "{word}"}}', f"call_{len(request.messages)}")
        return Completion("", request.model, "function", tool_calls=(call,))
    return "unsure"


class OptimizerConformance:
    """Subclass and implement ``make_optimizer``; every ``test_*`` method is one promise."""

    seed = 0
    agent = False  # AgentConformance: the same promises on a prompt with a tool

    def make_optimizer(self) -> Optimizer:
        raise NotImplementedError

    def make_prompt(self) -> Prompt:
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        if self.agent:
            return prompt.replace(tools=(Tool.from_function(letters),), max_steps=3)
        return prompt

    def run(
        self, *, budget: Budget | None = None, stop: StopRule | None = None, seed: int | None = None
    ) -> tuple[OptimizationResult, FunctionProvider]:
        provider = FunctionProvider(synthetic_agent if self.agent else synthetic_model)
        client = Client(ClientConfig(models=(TASK_MODEL,), concurrency=4), provider=provider)
        settings = RunSettings(
            task_model=TASK_MODEL,
            reasoning_model=REASONING_MODEL,
            budget=budget or Budget(max_calls=400),
            stop=stop or MaxRounds(6),
            seed=self.seed if seed is None else seed,
        )
        prompt = self.make_prompt()
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
        firsts = [
            r for r in shown if TEST_MARK in r.messages[-1].text
        ]  # a row's first call (an agent's loop goes on)
        assert len(firsts) == test_rows * scorings  # the driver's start and end scoring only
        for request in shown:  # and never inside a demo, an instruction or a reasoning call
            assert request.model == TASK_MODEL
            user_turns = [i for i, m in enumerate(request.messages) if m.role == "user"]
            marked = [i for i, m in enumerate(request.messages) if TEST_MARK in m.text]
            assert marked == user_turns[-1:], "the test row appears only as the input being answered"

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


class AgentConformance(OptimizerConformance):
    """The same promises on an agent (a tool, a loop of two model calls per row); a subclass also
    checks that the optimizer finds the gain the instruction or the tool's description gives."""

    agent = True

    def test_an_agent_run_keeps_every_rows_trajectory(self) -> None:
        result, provider = self.run()
        for candidate in result.history:
            for row in candidate.evaluation.rows:
                assert row.trajectory is not None and row.trajectory.model_calls >= 1
        assert result.spend.calls == len(provider.requests)
