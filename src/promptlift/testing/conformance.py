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

``StructuredConformance`` runs them on a prompt with an output schema: the task model answers JSON
(fenced or bare, as models do) when it knows the label and a sentence when it does not, which the
evaluator scores 0 with its reason; a ``json_fields`` metric scores the rest.
``StructuredAgentConformance`` is both at once: an agent whose final answer follows the schema.

``ProgramConformance`` runs them on a program of two prompts (``two_step``: ``measure`` counts a
word's letters, ``label`` turns the count into the label): each prompt needs its own fix (an
instruction, or demos) before every row is right, so a joint gain changes both.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptlift.client import Client, ClientConfig
from promptlift.client.config import CacheConfig
from promptlift.errors import AuthenticationFailed, PromptliftError
from promptlift.optimize.dataset import Dataset, Splits, split
from promptlift.optimize.evaluation import NOT_VALID_JSON
from promptlift.optimize.json_metrics import FieldMatch, JsonFields
from promptlift.optimize.metrics import ExactMatch, Metric
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.program import Calls, Optimizable, Program
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, RunSettings
from promptlift.optimize.stop import MaxRounds, StopRule
from promptlift.optimize.store import RunStore
from promptlift.optimize.structured import OutputSchema
from promptlift.optimize.tools import Tool
from promptlift.testing.doubles import FunctionProvider
from promptlift.types import Completion, CompletionRequest, ToolCall

TASK_MODEL = "scripted/task"
REASONING_MODEL = "scripted/reasoner"
TEST_MARK = "HELD-OUT"


def synthetic_splits(n: int = 40, seed: int = 0, *, structured: bool = False) -> Splits:
    """Words labelled by their length; test rows carry a marker so any leak is visible. With
    ``structured``, each row also has its whole JSON ``answer`` (what fewshot shows as a demo)."""
    words = [f"w{'x' * (i % 7)}{i}" for i in range(n)]
    records: list[dict[str, Any]] = [{"text": w, "label": "long" if len(w) > 5 else "short"} for w in words]
    if structured:
        records = [{**r, "answer": json.dumps({"label": r["label"]})} for r in records]
    data = Dataset.from_records(records, "synthetic")
    parts = split(data, 0.5, 0.25, 0.25, seed)
    marked = Dataset.from_records(
        [{**r.fields, "text": f"{TEST_MARK} {r['text']}"} for r in parts.test], "synthetic-test"
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


LABEL_SCHEMA = OutputSchema(
    "verdict",
    {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["long", "short"]}},
        "required": ["label"],
        "additionalProperties": False,
    },
    strict=True,
)


def in_json(
    model: Callable[[CompletionRequest], str | Completion],
) -> Callable[[CompletionRequest], str | Completion]:
    """``model`` (``synthetic_model`` or ``synthetic_agent``) answering in JSON: ``{"label": ...}``
    (in a fence with prose around it for odd-length words, as models do) when it knows, a sentence
    that is no JSON when it does not. Tool calls and the reasoning model's text pass through."""

    def answer(request: CompletionRequest) -> str | Completion:
        reply = model(request)
        if request.model == REASONING_MODEL or not isinstance(reply, str):
            return reply
        if reply == "unsure":
            return "I am not sure about this word."
        obj = json.dumps({"label": reply})
        word = next(m.text for m in reversed(request.messages) if m.role == "user").split()[-2]
        return f"Here it is:\n```json\n{obj}\n```" if len(word) % 2 else obj

    return answer


MEASURE_HINT, LABEL_HINT = "count the letters", "more than 5"


def synthetic_program_model(request: CompletionRequest) -> str:
    """The task model of ``two_step``'s prompts. ``measure`` ("Word: ...") counts a word's letters
    when told to count them or shown two demos, and otherwise only for words of three letters or
    fewer ("unsure" else); ``label`` ("Letters: N") says long above 5 when told "more than 5" or
    shown two demos, and otherwise above 7 (wrong for 6 and 7 letters)."""
    if request.model == REASONING_MODEL:
        return "Count the letters of the word: more than 5 is long, otherwise short."
    demos = sum(1 for m in request.messages if m.role == "assistant")
    system = " ".join(m.text for m in request.messages if m.role == "system").lower()
    user = request.messages[-1].text
    if user.startswith("Word:"):
        word = user.split()[-2]
        if MEASURE_HINT in system or demos >= 2 or len(word) <= 3:
            return str(len(word))
        return "unsure"
    count = user.split()[1] if len(user.split()) > 1 else ""
    if not count.isdigit():
        return "unsure"
    threshold = 5 if LABEL_HINT in system or demos >= 2 else 7
    return "long" if int(count) > threshold else "short"


def two_step(row: Mapping[str, Any], lm: Calls) -> str:
    """A program of two prompts: the word's letters counted, then the count labelled."""
    count = lm.call("measure", text=row["text"])
    return lm.call("label", count=count.strip())


def two_step_program() -> Program:
    return Program(
        {
            "measure": Prompt(
                user="Word: {text}\nLetters:", system="Look at the word.", params={"max_tokens": 4}
            ),
            "label": Prompt(
                user="Letters: {count}\nLabel:", system="Label the count.", params={"max_tokens": 2}
            ),
        },
        two_step,
    )


class OptimizerConformance:
    """Subclass and implement ``make_optimizer``; every ``test_*`` method is one promise."""

    seed = 0
    agent = False  # AgentConformance: the same promises on a prompt with a tool
    structured = False  # StructuredConformance: the same promises on a prompt with an output schema
    program = False  # ProgramConformance: the same promises on a program of two prompts

    def make_optimizer(self) -> Optimizer:
        raise NotImplementedError

    def make_prompt(self) -> Optimizable:
        if self.program:
            return two_step_program()
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        if self.agent:
            prompt = prompt.replace(tools=(Tool.from_function(letters),), max_steps=3)
        if self.structured:
            prompt = prompt.replace(output_schema=LABEL_SCHEMA, params={"max_tokens": 16})
        return prompt

    def make_metric(self) -> Metric:
        if self.structured:
            return JsonFields({"label": FieldMatch("label")}, field="answer")
        return ExactMatch("label")

    def model(self, request: CompletionRequest) -> str | Completion:
        if self.program:
            return synthetic_program_model(request)
        base = synthetic_agent if self.agent else synthetic_model
        return in_json(base)(request) if self.structured else base(request)

    def run(
        self,
        *,
        budget: Budget | None = None,
        stop: StopRule | None = None,
        seed: int | None = None,
        model: Callable[[CompletionRequest], str | Completion] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        cache: str | Path | None = None,
    ) -> tuple[OptimizationResult, FunctionProvider]:
        provider = FunctionProvider(model or self.model)
        config = ClientConfig(
            models=(TASK_MODEL,),
            concurrency=4,
            cache=CacheConfig(path=str(cache)) if cache is not None else None,
        )
        client = Client(config, provider=provider)
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
                prompt,
                synthetic_splits(structured=self.structured),
                self.make_metric(),
                client=client,
                settings=settings,
                store=store,
                run_id=run_id,
            )
        finally:
            client.close()
        return result, provider

    def test_resumes_after_a_crash_without_sending_an_answered_call_again(self) -> None:
        """A run that dies half-way (here: every call refused from the middle on, as a revoked key
        would be) resumes from its store to the uninterrupted run's result, and no answered call
        reaches the model again. With the cache on, as runs have it: the steps an agent's row had
        paid before the crash (the row itself unfinished) come back from the cache; everything
        finished is replayed from the store, so the cache serves no more than those."""
        answered: list[CompletionRequest] = []
        with tempfile.TemporaryDirectory() as folder:
            whole, reference = self.run(cache=Path(folder) / "reference.sqlite")

            def dies_half_way(request: CompletionRequest) -> str | Completion:
                if len(answered) >= len(reference.requests) // 2:
                    raise AuthenticationFailed(
                        "the key was revoked", provider="scripted", model=request.model
                    )
                answered.append(request)
                return self.model(request)

            store = RunStore(Path(folder) / "runs.sqlite")
            cache = Path(folder) / "cache.sqlite"
            try:
                run_id = store.create_run(self.make_optimizer().name, {"conformance": True})
                try:
                    self.run(model=dies_half_way, store=store, run_id=run_id, cache=cache)
                except PromptliftError:
                    pass
                else:
                    raise AssertionError("the run was meant to fail half-way")
                resumed, again = self.run(store=store, run_id=run_id, cache=cache)
            finally:
                store.close()
        assert resumed.best.prompt == whole.best.prompt
        assert resumed.best_test.scores == whole.best_test.scores
        assert [c.prompt for c in resumed.history] == [c.prompt for c in whole.history]
        sent = (len(answered), len(again.requests), len(reference.requests))
        assert sent[0] + sent[1] == sent[2], sent
        # the rows under way at the crash (4 workers) times their steps, and the step's reasoning call;
        # beyond the hits the uninterrupted run had itself (a program's candidates share calls)
        in_flight = 4 * (3 if self.agent else 2 if self.program else 1) + 1
        extra = resumed.spend.cached_calls - whole.spend.cached_calls
        assert extra <= in_flight, (resumed.spend.cached_calls, whole.spend.cached_calls, in_flight)

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


class StructuredConformance(OptimizerConformance):
    """The same promises on a prompt with an output schema (``LABEL_SCHEMA``), scored by
    ``json_fields``: every candidate keeps the schema, every task call asks for it, and an answer
    that is not valid JSON for it scores 0 with the reason."""

    structured = True

    def test_every_candidate_keeps_the_schema_and_every_task_call_asks_for_it(self) -> None:
        result, provider = self.run()
        assert all(
            isinstance(c.prompt, Prompt) and c.prompt.output_schema == LABEL_SCHEMA for c in result.history
        )
        assert isinstance(result.best.prompt, Prompt) and result.best.prompt.output_schema == LABEL_SCHEMA
        wanted = LABEL_SCHEMA.response_format()
        for request in provider.requests:
            if request.model == TASK_MODEL:
                assert request.response_format == wanted
            else:  # a reasoning call asks for text: the schema is the task's, not the optimizer's
                assert request.response_format is None

    def test_an_answer_that_is_not_json_scores_0_with_the_reason(self) -> None:
        result, _ = self.run()
        rows = result.initial.evaluation.rows
        broken = [r for r in rows if not r.output.lstrip().startswith(("{", "Here it is"))]
        assert broken, "the starting prompt gets answers that are not JSON"
        for row in broken:
            assert row.score == 0.0 and row.reason.startswith(NOT_VALID_JSON), row
        for row in rows:
            if row not in broken:
                assert row.score == 1.0 and row.reason == "", row  # fenced or bare, the JSON is read


class StructuredAgentConformance(StructuredConformance, AgentConformance):
    """An agent with an output schema: every promise of both (the schema is asked for on every
    call of the loop, and the final answer is the one validated)."""


class ProgramConformance(OptimizerConformance):
    """The same promises on a program of two prompts (``two_step``), and those of programs: every
    row keeps the program's calls (its trace), and every task call is one of the program's prompts."""

    program = True

    def test_every_row_keeps_the_programs_calls(self) -> None:
        result, provider = self.run()
        for candidate in result.history:
            assert isinstance(candidate.prompt, Program)
            assert set(candidate.prompt.prompts) == {"measure", "label"}
            for row in candidate.evaluation.rows:
                assert [c.prompt for c in row.trace] == ["measure", "label"], row
                assert row.trace[-1].output == row.output
        task = [r for r in provider.requests if r.model == TASK_MODEL]
        assert all(r.messages[-1].text.startswith(("Word:", "Letters:")) for r in task)
        assert result.spend.calls == len(provider.requests)
