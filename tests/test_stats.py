"""Intervals, paired tests and power against known values and seeded simulations."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from promptlift.client import Client, ClientConfig
from promptlift.optimize import FewShot, Optimizer
from promptlift.optimize.evaluation import Evaluator
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Acceptance, RunSettings, Search
from promptlift.optimize.stats import (
    Uncertainty,
    binom_cdf,
    binom_sf,
    bootstrap_interval,
    clopper_pearson,
    compare,
    mcnemar_p,
    mcnemar_power,
    newcombe,
    rows_needed,
    score_interval,
    split_advice,
)
from promptlift.testing.conformance import TASK_MODEL, OptimizerConformance, synthetic_splits
from promptlift.testing.doubles import FunctionProvider
from promptlift.types import CompletionRequest


def _pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


# -- exact values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 26, 100])
@pytest.mark.parametrize("p", [0.001, 0.1, 0.5, 0.77, 0.999])
def test_binomial_tails_match_the_direct_sum(n: int, p: float) -> None:
    for k in range(-1, n + 2):
        cdf = sum(_pmf(i, n, p) for i in range(0, min(k, n) + 1))
        assert binom_cdf(k, n, p) == pytest.approx(cdf, abs=1e-12)
        assert binom_sf(k + 1, n, p) == pytest.approx(1 - cdf, abs=1e-12)


def test_clopper_pearson_known_values() -> None:
    # 0/10 and 10/10 have closed forms: 1 - (alpha/2)^(1/n)
    edge = 1 - 0.025 ** (1 / 10)
    assert edge == pytest.approx(0.308497, abs=1e-6)
    zero, ten, five = clopper_pearson(0, 10), clopper_pearson(10, 10), clopper_pearson(5, 10)
    assert (zero.low, zero.high) == (0.0, pytest.approx(edge, abs=1e-12))
    assert (ten.low, ten.high) == (pytest.approx(1 - edge, abs=1e-12), 1.0)
    assert (five.low, five.high) == (pytest.approx(0.187086, abs=1e-6), pytest.approx(0.812914, abs=1e-6))
    # each limit is where the binomial tail equals alpha/2
    iv = clopper_pearson(7, 26)
    assert binom_sf(7, 26, iv.low) == pytest.approx(0.025, abs=1e-10)
    assert binom_cdf(7, 26, iv.high) == pytest.approx(0.025, abs=1e-10)


def test_mcnemar_worked_examples() -> None:
    assert mcnemar_p(1, 6) == pytest.approx(0.125, abs=1e-12)  # 2 * (1 + 7) / 2^7
    assert mcnemar_p(6, 1) == pytest.approx(0.125, abs=1e-12)
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32, abs=1e-12)
    assert mcnemar_p(0, 6) == pytest.approx(2 / 64, abs=1e-12)
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0


def test_newcombe_matches_the_published_paired_example() -> None:
    # Cavo et al. 2012 table (59, 6 / 16, 80), as in Fagerland, Lydersen & Laake ch. 8:
    # difference -0.0621, 95% CI -0.1186 to -0.0046
    iv = newcombe(both=59, before_only=16, after_only=6, neither=80)
    assert (iv.low, iv.high) == (pytest.approx(-0.1186, abs=5e-5), pytest.approx(-0.0046, abs=5e-5))


def test_compare_on_0_1_rows_is_exact_mcnemar() -> None:
    # 26 rows: b = 1 only the old prompt right, c = 6 only the new one, 10 both, 9 neither
    before = [1.0] * 1 + [0.0] * 6 + [1.0] * 10 + [0.0] * 9
    after = [0.0] * 1 + [1.0] * 6 + [1.0] * 10 + [0.0] * 9
    result = compare(before, after)
    assert result.method == "mcnemar-exact" and result.rows == 26
    assert result.gain == pytest.approx(5 / 26)
    assert result.p_value == pytest.approx(0.125)
    assert result.verdict == "not distinguishable from no change"
    assert result.ci.low < 0 < result.ci.high
    assert compare(after, before).verdict == "not distinguishable from no change"
    # 0 vs 8 disagreements: p = 2/256
    strong = compare([0.0] * 8 + [1.0] * 4, [1.0] * 12)
    assert strong.p_value == pytest.approx(2 / 256) and strong.verdict == "significant"
    assert strong.ci.low > 0
    assert compare([1.0] * 12, [0.0] * 8 + [1.0] * 4).verdict == "worse"


def test_identical_scores_are_no_change() -> None:
    for scores in ([1.0, 0.0, 1.0], [0.2, 0.9, 0.4]):
        result = compare(scores, scores)
        assert result.gain == 0 and result.p_value == 1.0
        assert result.verdict == "not distinguishable from no change"


def test_non_binary_scores_use_a_seeded_paired_bootstrap() -> None:
    rng = random.Random(5)
    before = [rng.random() for _ in range(30)]
    after = [min(1.0, x + 0.3) for x in before]
    u = Uncertainty(resamples=1000, seed=3)
    result = compare(before, after, u)
    assert result.method == "paired-bootstrap" and result.verdict == "significant"
    assert result.ci.low > 0 and result.gain in result.ci
    assert compare(before, after, u) == result  # seeded
    assert bootstrap_interval(before, u) == bootstrap_interval(before, u)
    assert bootstrap_interval(before, u) != bootstrap_interval(before, Uncertainty(resamples=1000, seed=4))
    with pytest.raises(ValueError, match="same rows"):
        compare(before, after[:-1])


def test_score_interval_is_exact_for_proportions_and_empty_for_no_rows() -> None:
    assert score_interval([1.0, 0.0, 1.0, 1.0]) == clopper_pearson(3, 4)
    assert score_interval([0.5, 1.0]).method == "bootstrap"
    assert score_interval([]).to_list() is None


# -- simulations -----------------------------------------------------------------------------------
def test_clopper_pearson_covers_95_percent_of_simulated_bernoulli_samples() -> None:
    rng = random.Random(20261125)
    n, p, sims = 40, 0.3, 1000
    covered = 0
    for _ in range(sims):
        k = sum(rng.random() < p for _ in range(n))
        covered += p in clopper_pearson(k, n)
    assert 0.93 <= covered / sims <= 0.97


@pytest.mark.parametrize(("n", "p"), [(10, 0.1), (26, 0.5), (26, 0.8), (40, 0.3), (100, 0.95)])
def test_clopper_pearson_exact_coverage_never_falls_below_nominal(n: int, p: float) -> None:
    coverage = sum(_pmf(k, n, p) for k in range(n + 1) if p in clopper_pearson(k, n))
    assert 0.95 <= coverage < 0.995


def test_bootstrap_covers_near_95_percent_on_graded_scores() -> None:
    rng = random.Random(11)
    n, sims, truth = 40, 1000, 2 / 7  # Beta(2, 5) scores: mean 2/7
    covered = 0
    for i in range(sims):
        scores = [rng.betavariate(2, 5) for _ in range(n)]
        covered += truth in bootstrap_interval(scores, Uncertainty(resamples=300, seed=i))
    assert 0.93 <= covered / sims <= 0.97


def test_mcnemar_false_positive_rate_on_equally_good_prompts_stays_below_alpha() -> None:
    # two prompts with the same accuracy; their errors are correlated through each row's difficulty
    rng = random.Random(2)
    sims, n, hits = 2000, 40, 0
    for _ in range(sims):
        difficulty = [rng.random() for _ in range(n)]
        a = [float(rng.random() < 0.3 + 0.6 * d) for d in difficulty]
        b = [float(rng.random() < 0.3 + 0.6 * d) for d in difficulty]
        hits += compare(a, b).verdict != "not distinguishable from no change"
    rate = hits / sims
    assert 0.01 <= rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)  # exact, hence conservative


def test_paired_bootstrap_false_positive_rate_is_near_alpha() -> None:
    rng = random.Random(4)
    sims, n, hits = 400, 40, 0
    for i in range(sims):
        base = [rng.betavariate(2, 2) for _ in range(n)]
        a = [min(1.0, max(0.0, x + rng.gauss(0, 0.2))) for x in base]
        b = [min(1.0, max(0.0, x + rng.gauss(0, 0.2))) for x in base]
        hits += compare(a, b, Uncertainty(resamples=300, seed=i)).p_value < 0.05
    assert 0.015 <= hits / sims <= 0.09  # 0.05 ± 3 standard errors of 400 simulations


def test_power_matches_simulated_rejections() -> None:
    rng = random.Random(9)
    n, before, gain, sims = 60, 0.4, 0.25, 1500
    hits = 0
    for _ in range(sims):
        a = [float(rng.random() < before) for _ in range(n)]
        b = [float(rng.random() < before + gain) for _ in range(n)]
        hits += compare(a, b).verdict == "significant"
    expected = mcnemar_power(n, before, gain)
    assert abs(hits / sims - expected) <= 3 * math.sqrt(expected * (1 - expected) / sims)


# -- power and advice ------------------------------------------------------------------------------
def test_power_in_the_favourable_case_has_a_closed_form() -> None:
    # the new prompt only fixes rows: every disagreement favours it, and McNemar rejects once there
    # are 6 of them (2/2^6 < 0.05 < 2/2^5), so power = P(Binomial(n, gain) >= 6)
    for n in (26, 60, 120):
        assert mcnemar_power(n, 0.5, 0.1, discordance=0.1) == pytest.approx(binom_sf(6, n, 0.1), abs=1e-12)


def test_rows_needed_is_where_power_first_reaches_the_target() -> None:
    for discordance in (0.1, 0.3, None):
        n = rows_needed(0.5, 0.1, discordance=discordance)
        assert mcnemar_power(n, 0.5, 0.1, discordance=discordance) >= 0.8
        assert mcnemar_power(n - 1, 0.5, 0.1, discordance=discordance) < 0.8
    assert rows_needed(0.5, 0.1, discordance=0.1) == 78
    with pytest.raises(ValueError, match="disagree"):
        rows_needed(0.5, 0.2, discordance=0.1)


def test_split_advice_flags_small_splits_and_suggests_sizes() -> None:
    advice = split_advice({"validation": 26, "test": 500})
    assert len(advice) == 1
    assert advice[0].startswith("the validation split has 26 rows")
    assert "78 rows" in advice[0] and "408" in advice[0]
    assert split_advice({"test": 120}) == []


# -- where the rest of promptlift uses it ----------------------------------------------------------
def _task(request: CompletionRequest) -> str:
    """Right on every row with "all"; with "one more", right on the first 3 rows; else on 2 rows."""
    system = request.messages[0].content
    word = request.messages[-1].content.split()[-2]
    right = "long" if len(word) > 5 else "short"
    index = int(word.lstrip("wx"))
    if "all" in system or index in RIGHT_BY_DEFAULT[: 3 if "one more" in system else 2]:
        return right
    return "unsure"


RIGHT_BY_DEFAULT: list[int] = []


def _best_after_each_candidate(rule: Acceptance) -> tuple[list[float], list[int]]:
    splits = synthetic_splits(40)
    RIGHT_BY_DEFAULT[:] = [int(r["text"].lstrip("wx")) for r in splits.validation][:3]
    client = Client(ClientConfig(models=(TASK_MODEL,)), provider=FunctionProvider(_task))
    evaluator = Evaluator(client, ExactMatch("label"), TASK_MODEL)
    ctx = Search(client, evaluator, splits, RunSettings(TASK_MODEL, TASK_MODEL, acceptance=rule))
    best: list[int] = []

    async def run() -> None:
        for system in ("Label.", "Label, one more.", "Label all."):
            await ctx.evaluate(Prompt(user="Word: {text}\nLength:", system=system))
            best.append(ctx.best.id)

    try:
        asyncio.run(run())
    finally:
        client.close()
    return [c.score for c in ctx.history], best


def test_acceptance_rule_significant_ignores_a_one_row_win() -> None:
    scores, best = _best_after_each_candidate(Acceptance())
    assert scores == [0.2, 0.3, 1.0]  # 10 validation rows: 2 right, then one more, then all
    assert best == [0, 1, 2]  # the default: any higher score wins
    _, best = _best_after_each_candidate(Acceptance("significant", alpha=0.05))
    assert best == [0, 0, 2]  # one row (p = 1) is noise; eight rows to none (p = 2/256) is not


class _FewShotRun(OptimizerConformance):
    def make_optimizer(self) -> Optimizer:
        return FewShot(answer_field="label", max_demos=3, trials=8)


def test_summary_carries_intervals_and_the_test_gain() -> None:
    result, _ = _FewShotRun().run()
    summary = result.summary()
    json.dumps(summary)  # plain JSON
    for key in ("initial_score", "best_score", "test_initial_score", "test_best_score"):
        low, high = summary[f"{key}_ci"]
        assert low <= summary[key] <= high
    gain = summary["test_gain"]
    assert set(gain) == {"value", "ci", "p_value", "verdict", "method"}
    assert gain["value"] == pytest.approx(summary["test_best_score"] - summary["test_initial_score"])
    assert gain["method"] == "mcnemar-exact" and gain["verdict"] == "significant"
    assert all("score_ci" in c for c in result.to_dict()["history"])
