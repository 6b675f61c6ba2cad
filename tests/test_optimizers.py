"""Every optimizer passes the shipped conformance suite, plus what is specific to each."""

from __future__ import annotations

from promptlift.optimize import FewShot, MetaPrompt, Optimizer
from promptlift.optimize.dataset import Dataset
from promptlift.optimize.optimizers.fewshot import balanced_order
from promptlift.optimize.optimizers.metaprompt import clean_instruction
from promptlift.testing.conformance import OptimizerConformance


class TestFewShotConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="label", max_demos=3, trials=8)


class TestMetaPromptConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return MetaPrompt(rounds=3, candidates_per_round=2, minibatch=4)


def test_fewshot_finds_the_gain_on_the_synthetic_task() -> None:
    result, _ = TestFewShotConformance().run()
    assert result.initial.score == 0.0
    assert result.best.score == 1.0 and result.best_test.mean == 1.0
    assert len(result.best.prompt.demos) >= 2


def test_metaprompt_finds_the_instruction_on_the_synthetic_task() -> None:
    result, provider = TestMetaPromptConformance().run()
    assert result.best.score == 1.0
    assert "Count the letters" in result.best.prompt.system
    assert result.reasoning_spend.calls >= 1
    assert any(r.model == "scripted/reasoner" for r in provider.requests)


def test_balanced_order_interleaves_answers() -> None:
    data = Dataset.from_records([{"y": v} for v in "aaabbc"])
    order = balanced_order(list(data), "y")
    assert [data[i]["y"] for i in order] == list("abcaba")


def test_clean_instruction_takes_the_first_paragraph_without_labels() -> None:
    assert clean_instruction('Rewritten: "Answer in one word."\n\nOriginal: x') == "Answer in one word."
    assert clean_instruction("  \n") == ""
