"""Every optimizer passes the shipped conformance suite on a program of two prompts, resume
included; the reflective ones change both prompts, and fewshot finds demos for each prompt in the
program's own calls."""

from __future__ import annotations

import asyncio

from promptlift import Client, ClientConfig
from promptlift.optimize import Budget, Dataset, Evaluator, ExactMatch, Optimizer, Prompt, RunSettings, Search
from promptlift.optimize.dataset import Splits, split
from promptlift.optimize.optimizers import Evolutionary, FailureModes, FewShot, MetaPrompt, Parameters, Pareto
from promptlift.optimize.optimizers.pareto import _State
from promptlift.optimize.program import Program
from promptlift.testing import FunctionProvider
from promptlift.testing.conformance import REASONING_MODEL, TASK_MODEL, ProgramConformance
from promptlift.types import CompletionRequest


def changed(result, name: str) -> bool:
    best, start = result.best.prompt, result.initial.prompt
    assert isinstance(best, Program) and isinstance(start, Program)
    return best.prompts[name] != start.prompts[name]


class TestFewShotOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="label", max_demos=3, trials=6)

    def test_demos_come_from_the_programs_own_calls_and_lift_both_prompts(self) -> None:
        result, _ = self.run()
        best = result.best.prompt
        assert isinstance(best, Program)
        assert result.best.score == 1.0 > result.initial.score
        assert changed(result, "measure") and changed(result, "label")
        for demo in best.prompts["measure"].demos:
            assert set(demo.fields) == {"text"} and demo.answer == str(len(demo.fields["text"]))
        for demo in best.prompts["label"].demos:
            assert set(demo.fields) == {"count"} and demo.answer in ("long", "short")


class TestMetaPromptOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return MetaPrompt(rounds=2, candidates_per_round=1, minibatch=4)

    def test_both_prompts_are_rewritten_in_turn(self) -> None:
        result, _ = self.run()
        assert changed(result, "measure") and changed(result, "label")
        assert result.best.score == 1.0


class TestEvolutionaryOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=3, generations=2, elites=1)


class TestParetoOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=80, minibatch=3)

    def test_reflection_reads_the_calls_of_the_prompt_it_rewrites(self) -> None:
        result, provider = self.run()
        asked = [r.messages[-1].text for r in provider.requests if r.model != "scripted/task"]
        assert asked
        assert any("Calls:\n    measure(text=" in text for text in asked)
        assert any("Calls:\n    label(count=" in text for text in asked)
        assert result.best.score > result.initial.score


class TestFailureModesOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return FailureModes(rounds=2, sample=6, batch=3, max_modes=1)


class TestParametersOnAProgram(ProgramConformance):
    def make_optimizer(self) -> Optimizer:
        return Parameters(trials=3)


# -- pareto's merge on a program: two children of one parent that changed different prompts ----------
def router(row, lm):  # type: ignore[no-untyped-def]
    return lm.call(row["kind"], text=row["text"])


def router_model(request: CompletionRequest) -> str:
    """Each prompt answers right only when its instruction says "count"."""
    if request.model == REASONING_MODEL:
        return "Count the letters."
    system = " ".join(m.text for m in request.messages if m.role == "system")
    word = request.messages[-1].text.split()[-1]
    return ("long" if len(word) > 5 else "short") if "count" in system.lower() else "unsure"


def router_splits() -> Splits:
    records = [
        {"kind": "a" if i % 2 else "b", "text": f"w{'x' * (i % 7)}{i}", "label": ""} for i in range(24)
    ]
    records = [{**r, "label": "long" if len(r["text"]) > 5 else "short"} for r in records]
    data = Dataset.from_records(records)
    return split(data, 0.5, 0.25, 0.25, 0)


def test_pareto_merges_two_candidates_that_improved_different_prompts() -> None:
    program = Program(
        {
            "a": Prompt(user="Word: {text}", system="Label it."),
            "b": Prompt(user="Word: {text}", system="Label it."),
        },
        router,
    )

    async def scenario() -> tuple[Search, Client]:
        client = Client(ClientConfig(models=(TASK_MODEL,)), provider=FunctionProvider(router_model))
        settings = RunSettings(
            task_model=TASK_MODEL, reasoning_model=REASONING_MODEL, budget=Budget(max_calls=500)
        )
        ctx = Search(client, Evaluator(client, ExactMatch("label"), TASK_MODEL), router_splits(), settings)
        await ctx.evaluate(program, origin="initial")
        await ctx.evaluate(program.with_component("a.system", "Count the letters."), parent=0)
        await ctx.evaluate(program.with_component("b.system", "Count the letters."), parent=0)
        state = _State(Pareto(minibatch=3), ctx, 0)
        await state.try_merge()
        return ctx, client

    ctx, client = asyncio.run(scenario())
    client.close()
    assert [c.origin for c in ctx.history][-1] == "merge 1+2"
    merged = ctx.history[-1]
    assert isinstance(merged.prompt, Program)
    assert merged.prompt.prompts["a"].system == merged.prompt.prompts["b"].system == "Count the letters."
    assert merged.score == 1.0 > max(ctx.history[1].score, ctx.history[2].score)
    assert merged.parent in (1, 2)


def test_pareto_can_rewrite_every_prompt_in_one_proposal() -> None:
    class AllAtOnce(ProgramConformance):
        def make_optimizer(self) -> Optimizer:
            return Pareto(max_metric_calls=40, minibatch=3, select="all")

    result, _ = AllAtOnce().run()
    origins = [c.origin for c in result.history[1:]]
    assert "reflect measure.system + label.system" in origins, origins
    assert result.best.score == 1.0
