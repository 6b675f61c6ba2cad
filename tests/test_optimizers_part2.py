"""The part-2 optimizers: conformance for each, and their algorithms as pure functions."""

from __future__ import annotations

import random

import pytest

from promptlift.errors import ConfigError
from promptlift.optimize import Optimizer
from promptlift.optimize.evaluation import RowResult
from promptlift.optimize.optimizers import (
    Evolutionary,
    FailureModes,
    Parameters,
    Pareto,
    build_optimizer,
)
from promptlift.optimize.optimizers.evolutionary import (
    Member,
    distance,
    diversity,
    pareto_ranks,
    select_survivors,
)
from promptlift.optimize.optimizers.failure_modes import group_failures, parse_modes
from promptlift.optimize.optimizers.parameters import max_tokens_choices
from promptlift.optimize.optimizers.pareto import (
    accepts,
    common_ancestor,
    dominated,
    merge_prompts,
    parent_weights,
    planned_proposals,
    row_fronts,
    sample_parent,
)
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.run import Budget
from promptlift.testing.conformance import OptimizerConformance


class TestEvolutionaryConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=4, generations=3, elites=1)


class TestEvolutionaryMultiObjectiveConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return Evolutionary(population=4, generations=2, elites=1, objectives=["score", "length"])


class TestParetoConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return Pareto(max_metric_calls=120, minibatch=3)


class TestFailureModesConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return FailureModes(rounds=2, sample=8, batch=4, max_modes=2)


class TestParametersConformance(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return Parameters(trials=5)


# -- what each one finds on the synthetic task -------------------------------------------------------
@pytest.mark.parametrize(
    "case", [TestEvolutionaryConformance, TestParetoConformance, TestFailureModesConformance]
)
def test_reflective_optimizers_find_the_instruction(case: type[OptimizerConformance]) -> None:
    result, provider = case().run()
    assert result.initial.score == 0.0
    assert result.best.score == 1.0 and result.best_test.mean == 1.0
    assert "Count the letters" in result.best.prompt.system
    assert any(r.model == "scripted/reasoner" for r in provider.requests)


def test_parameters_tunes_params_and_keeps_the_prompt_text() -> None:
    result, provider = TestParametersConformance().run()
    trials = result.history[1:]
    assert len(trials) == 5
    assert all(c.prompt.system == result.initial.prompt.system for c in trials)
    first = trials[0].prompt.params  # the prompt's own settings come first
    assert first["temperature"] == 0.0 and first["max_tokens"] == 2
    assert len({(c.prompt.params["temperature"], c.prompt.params["top_p"]) for c in trials}) > 1
    assert all(0.5 <= c.prompt.params["top_p"] <= 1.0 for c in trials)
    sent = {r.temperature for r in provider.requests}
    assert len(sent) > 1  # the tuned values really reach the requests
    assert all(c.prompt.params.get("seed") == 0 for c in trials if c.prompt.params["temperature"] > 0)


def test_parameters_rejects_what_a_request_cannot_carry() -> None:
    with pytest.raises(ConfigError, match="frequency_penalty"):
        Parameters(extra={"frequency_penalty": [0.0, 0.5]})
    with pytest.raises(ConfigError, match="temperature"):
        Parameters(temperature=[1.0, 0.5])
    assert max_tokens_choices(4) == [2, 4, 8]
    assert max_tokens_choices(None) == [128, 256, 512]


def test_presets_expand_and_explicit_params_win() -> None:
    light = build_optimizer("pareto", {"preset": "light"})
    assert isinstance(light, Pareto) and light.max_metric_calls == 150
    mixed = build_optimizer("pareto", {"preset": "heavy", "minibatch": 2})
    assert isinstance(mixed, Pareto) and mixed.max_metric_calls == 1200 and mixed.minibatch == 2
    with pytest.raises(ConfigError, match="unknown preset"):
        build_optimizer("pareto", {"preset": "huge"})


# -- pareto: the algorithm as pure functions ----------------------------------------------------------
SCORES = {
    0: [0.0, 0.0, 1.0, 0.0],  # initial: only row 2
    1: [1.0, 1.0, 0.0, 0.0],  # best on average with 2, but shares rows 0-1 with 2
    2: [1.0, 1.0, 1.0, 0.0],  # dominates 0 and 1
    3: [0.0, 0.0, 0.0, 1.0],  # the only one right on row 3
}


def test_row_fronts_hold_every_candidate_tied_for_best() -> None:
    assert row_fronts(SCORES) == [
        frozenset({1, 2}),
        frozenset({1, 2}),
        frozenset({0, 2}),
        frozenset({3}),
    ]
    assert row_fronts({}) == []


def test_dominated_candidates_are_dropped_and_ties_keep_the_stronger() -> None:
    fronts = row_fronts(SCORES)
    assert dominated(fronts, order=[0, 3, 1, 2]) == {0, 1}
    same = [frozenset({5, 6}), frozenset({5, 6})]
    assert dominated(same, order=[5, 6]) == {5}  # weaker first: 5 goes, 6 stays
    assert dominated(same, order=[6, 5]) == {6}


def test_parent_weights_count_the_rows_each_survivor_leads() -> None:
    assert parent_weights(SCORES) == {2: 3, 3: 1}


def test_sample_parent_follows_the_weights_and_the_seed() -> None:
    weights = {2: 3, 3: 1}
    draws = [sample_parent(weights, random.Random(i)) for i in range(2000)]
    share = draws.count(2) / len(draws)
    assert 0.70 < share < 0.80  # 3/4 expected; 2,000 seeded draws
    assert [sample_parent(weights, random.Random(7)) for _ in range(3)] == [
        sample_parent(weights, random.Random(7)) for _ in range(3)
    ]
    assert sample_parent({4: 0, 9: 2}, random.Random(0)) == 9
    with pytest.raises(ValueError):
        sample_parent({}, random.Random(0))


def test_acceptance_needs_a_strict_gain_on_the_minibatch() -> None:
    assert accepts([0, 1, 0], [1, 1, 0])
    assert not accepts([0, 1, 0], [1, 0, 0])  # a different row right is not better
    assert not accepts([1, 1, 1], [1, 1, 1])


def test_common_ancestor_and_merge() -> None:
    parents: dict[int, int | None] = {0: None, 1: 0, 2: 0, 3: 1, 4: 2}
    assert common_ancestor(3, 4, parents) == 0
    assert common_ancestor(1, 2, parents) == 0
    assert common_ancestor(1, 3, parents) is None  # 3 descends from 1
    assert common_ancestor(0, 5, {0: None, 5: None}) is None

    base = Prompt(user="Q: {q}\nA:", system="Answer.")
    demo = (Demo({"q": "1+1"}, "2"),)
    a = base.replace(system="Answer with a number.")  # changed the instruction
    b = base.replace(demos=demo)  # changed the demos
    merged = merge_prompts(base, a, b, prefer_a=True)
    assert merged == base.replace(system="Answer with a number.", demos=demo)
    both = b.replace(system="Answer briefly.")  # both changed the instruction: the preferred side wins
    assert merge_prompts(base, a, both, prefer_a=False) is None  # that is just `both` again
    assert merge_prompts(base, a, both, prefer_a=True) == a.replace(demos=demo)
    assert merge_prompts(base, a, a, prefer_a=True) is None  # nothing new
    assert merge_prompts(base, a, base, prefer_a=True) is None


def test_planned_proposals_counts_full_proposals() -> None:
    assert planned_proposals(100, minibatch=3, validation=26) == 3
    assert planned_proposals(90, minibatch=3, validation=26) == 2
    assert planned_proposals(0, minibatch=3, validation=26) == 0


def test_pareto_warns_when_the_budget_allows_fewer_than_three_proposals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Small(OptimizerConformance):
        def make_optimizer(self) -> Optimizer:
            return Pareto(max_metric_calls=40, minibatch=3)

    class Roomy(OptimizerConformance):
        def make_optimizer(self) -> Optimizer:
            return Pareto(max_metric_calls=1000, minibatch=3)

    with caplog.at_level("WARNING", logger="promptlift"):
        Small().run()
    assert any("allows only 2 full proposal" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="promptlift"):
        Roomy().run()
    assert not caplog.records
    with caplog.at_level("WARNING", logger="promptlift"):
        Roomy().run(budget=Budget(max_calls=60))  # 30 calls left after the driver's scoring
    assert any("allows only 1 full proposal" in r.getMessage() for r in caplog.records)


# -- evolutionary and failure modes -----------------------------------------------------------------
def test_distance_and_diversity() -> None:
    assert distance("Answer in one word.", "answer in ONE word") == 0.0
    assert distance("a b", "c d") == 1.0
    assert distance("a b c", "a b d") == pytest.approx(0.5)
    assert diversity(["x y", "x y", "x y"]) == 0.0
    assert diversity(["a", "b"]) == 1.0


def test_pareto_ranks_sort_fronts() -> None:
    points = [(0.9, -10.0), (0.8, -5.0), (0.7, -12.0), (0.9, -12.0)]
    assert pareto_ranks(points) == [0, 0, 2, 1]


def test_survivors_keep_elites_then_prefer_diversity_on_ties() -> None:
    members = [
        Member(0, (0.9,), "classify the review sentiment"),
        Member(1, (0.5,), "classify the review sentiment please"),
        Member(2, (0.5,), "answer positive or negative only"),
        Member(3, (0.2,), "classify the review"),
    ]
    assert select_survivors(members, 2, elites=1, weight=0.0) == [0, 1]  # ties by age
    assert select_survivors(members, 2, elites=1, weight=0.5) == [0, 2]  # the novel one wins
    assert select_survivors(members, 9, elites=1, weight=0.5) == [0, 1, 2, 3]
    short = [Member(0, (0.9, -40.0), "long"), Member(1, (0.85, -5.0), "short"), Member(2, (0.8, -50.0), "x")]
    assert select_survivors(short, 2, elites=0, weight=0.0) == [0, 1]  # the front, not the top two scores


def test_failure_modes_parse_and_group() -> None:
    reply = (
        "Modes:\n- says neutral for mixed reviews\n2) adds punctuation\n* says neutral for mixed reviews\n"
    )
    assert parse_modes(reply, 5) == ["says neutral for mixed reviews", "adds punctuation"]
    assert parse_modes("no bullets here", 3) == []
    rows = [
        RowResult(1, "Neutral.", 0.0, "expected 'negative', got 'Neutral.'"),
        RowResult(2, "neutral.", 0.0, "expected 'positive', got 'neutral.'"),
        RowResult(3, "", 0.0, ""),
    ]
    modes = group_failures(rows, 5)
    assert modes[0].startswith("answers 'neutral.' on 2 rows") and "expected 'negative'" in modes[0]
    assert modes[1].startswith("answers '(nothing)' on 1 rows")
    assert len(group_failures(rows, 1)) == 1


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Evolutionary(population=3, elites=3)
    with pytest.raises(ConfigError):
        Evolutionary(objectives=["length"])
    with pytest.raises(ConfigError):
        Pareto(parts=["demos"])
    with pytest.raises(ConfigError):
        FailureModes(batch=0)
