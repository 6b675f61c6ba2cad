"""Every optimizer passes the shipped conformance suite on a program of two prompts, resume
included; the reflective ones change both prompts, and fewshot finds demos for each prompt in the
program's own calls."""

from __future__ import annotations

from promptlift.optimize import Optimizer
from promptlift.optimize.optimizers import Evolutionary, FailureModes, FewShot, MetaPrompt, Parameters, Pareto
from promptlift.optimize.program import Program
from promptlift.testing.conformance import ProgramConformance


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
