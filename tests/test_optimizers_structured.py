"""Every optimizer passes the shipped conformance suite on a prompt with an output schema (JSON
answers, scored by json_fields), alone and on an agent; a reflecting optimizer reads why an answer
was not valid JSON."""

from __future__ import annotations

from promptlift.optimize import Optimizer
from promptlift.optimize.evaluation import NOT_VALID_JSON
from promptlift.optimize.optimizers import Evolutionary, FailureModes, FewShot, MetaPrompt, Parameters, Pareto
from promptlift.testing.conformance import REASONING_MODEL, StructuredAgentConformance, StructuredConformance


class TestFewShotOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="answer", max_demos=3, trials=6)

    def test_the_demos_answer_in_json_and_lift_the_score(self) -> None:
        result, _ = self.run()
        assert result.initial.score < 0.5 < result.best.score, (result.initial.score, result.best.score)
        assert all(d.answer.startswith('{"label": ') for d in result.best.prompt.demos)


class TestMetaPromptOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return MetaPrompt(rounds=2, candidates_per_round=2, minibatch=4)


class TestEvolutionaryOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=3, generations=2, elites=1)


class TestParetoOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=60, minibatch=3)

    def test_reflection_reads_the_schema_and_why_an_answer_was_not_valid(self) -> None:
        result, provider = self.run()
        asked = [r.messages[-1].text for r in provider.requests if r.model == REASONING_MODEL]
        assert asked, "pareto reflected"
        assert any(f"Feedback: {NOT_VALID_JSON}: no JSON object found" in text for text in asked)
        assert all("The model answers with JSON for this schema:" in text for text in asked)
        assert all('"enum": ["long", "short"]' in text for text in asked)
        assert result.best.score > result.initial.score


class TestFailureModesOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return FailureModes(rounds=1, sample=6, batch=3, max_modes=1)


class TestParametersOnAStructuredPrompt(StructuredConformance):
    def make_optimizer(self) -> Optimizer:
        return Parameters(trials=3)


class TestFewShotOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="answer", max_demos=3, trials=6)


class TestMetaPromptOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return MetaPrompt(rounds=2, candidates_per_round=2, minibatch=4)


class TestEvolutionaryOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=3, generations=2, elites=1, objectives=["score", "steps"])


class TestParetoOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=60, minibatch=3, parts=["system", "tools"])

    def test_improves_the_agent_and_its_answers_follow_the_schema(self) -> None:
        result, _ = self.run()
        assert result.initial.score < 0.5 < result.best.score, (result.initial.score, result.best.score)
        schema = result.best.prompt.output_schema
        assert schema is not None
        right = [r for r in result.best.evaluation.rows if r.score == 1.0]
        assert right
        for row in right:  # each found its answer through the tool, and gave it as the schema's JSON
            assert row.trajectory is not None and [s.call.name for s in row.trajectory.tool_calls] == [
                "letters"
            ]
            assert schema.parse(row.output).value in ({"label": "long"}, {"label": "short"})


class TestFailureModesOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return FailureModes(rounds=1, sample=6, batch=3, max_modes=1)


class TestParametersOnAStructuredAgent(StructuredAgentConformance):
    def make_optimizer(self) -> Optimizer:
        return Parameters(trials=3)
