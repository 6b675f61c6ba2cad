"""Every optimizer passes the shipped conformance suite on an agent (a prompt with a tool, run as a
loop), and the rewriting optimizers improve an agent by its instruction or its tool's description."""

from __future__ import annotations

from promptlift.optimize import Optimizer
from promptlift.optimize.optimizers import Evolutionary, FailureModes, FewShot, MetaPrompt, Parameters, Pareto
from promptlift.optimize.optimizers.pareto import merge_prompts
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Budget
from promptlift.optimize.stop import MaxRounds
from promptlift.optimize.tools import Tool
from promptlift.testing.conformance import AGENT_HINT, AgentConformance, letters


class TestFewShotOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="label", max_demos=3, trials=6)


class TestMetaPromptOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return MetaPrompt(rounds=2, candidates_per_round=2, minibatch=4)


class TestEvolutionaryOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=3, generations=2, elites=1, objectives=["score", "steps"])


class TestParetoOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=60, minibatch=3, parts=["system", "tools"])


class TestFailureModesOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return FailureModes(rounds=1, sample=6, batch=3, max_modes=1)


class TestParametersOnAnAgent(AgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Parameters(trials=3)


class _ToolDescriptionOnly(AgentConformance):
    """The instruction is off limits: the only way up is the tool's description."""

    def improved_by_the_tool_description(self) -> None:
        result, provider = self.run(budget=Budget(max_calls=600), stop=MaxRounds(8))
        assert result.initial.score < 0.5 < result.best.score, (result.initial.score, result.best.score)
        best = result.best.prompt
        assert best.system == "Label the word."  # unchanged: the gain came from the description
        assert AGENT_HINT in best.tools[0].description.lower()
        assert best.tools[0].function is letters  # a rewritten description keeps the tool's function
        # and the description reached the provider: the requests of the best prompt carried it
        described = {str(t["function"]["description"]) for r in provider.requests for t in r.tools}
        assert best.tools[0].description in described


class TestParetoRewritesAToolDescription(_ToolDescriptionOnly):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=200, minibatch=3, parts=["tools"])

    def test_improves_the_agent_by_its_tool_description(self) -> None:
        self.improved_by_the_tool_description()


class TestEvolutionaryMutatesAToolDescription(_ToolDescriptionOnly):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=3, generations=2, elites=1, crossover_rate=0.0, parts=["tools"])

    def test_improves_the_agent_by_its_tool_description(self) -> None:
        self.improved_by_the_tool_description()


def test_a_merge_combines_an_instruction_from_one_side_and_a_tool_description_from_the_other() -> None:
    base = Prompt(user="{text}", system="s0", tools=(Tool.from_function(letters),))
    a = base.with_component("system", "s1")
    b = base.with_component("tool:letters", "Counts the letters of a word.")
    merged = merge_prompts(base, a, b, prefer_a=True)
    assert merged is not None
    assert merged.system == "s1" and merged.tools[0].description == "Counts the letters of a word."
