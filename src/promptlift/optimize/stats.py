"""How much a score can be trusted: intervals over rows, paired comparisons, and the rows they need.

Pure functions of their inputs and a seed; no model calls, no global state, standard library only.

Choices, and why:

- **A mean of 0/1 scores is a proportion**, so its interval is the exact Clopper–Pearson interval:
  its coverage is never below the nominal level (it errs wide, typically 95–98% at 95% on 20–100
  rows), and it needs no resampling. Any other score gets a seeded percentile bootstrap over rows.
- **Two prompts scored on the same rows are compared paired.** For 0/1 scores that is the exact
  McNemar test (two-sided: twice the smaller tail of Binomial(b + c, 1/2), b and c the rows only
  one prompt got right), and the interval on the gain is Newcombe's hybrid score interval for
  paired proportions. The test is exact and the interval approximate, so at the margin they can
  disagree; the verdict follows the test. For other scores, a paired bootstrap of the mean
  difference, with the p-value that inverts the same percentile interval, so there the interval
  excludes 0 exactly when ``p < alpha``.
- **Power** is computed for the exact McNemar test on 0/1 scores. It depends on how often the two
  prompts disagree, which nobody knows before a run, so advice is given as a range between the
  favourable case (the new prompt only fixes rows) and prompts that err independently. For scores
  in [0, 1] that are not 0/1 the variance is at most that of a 0/1 score with the same mean, so the
  same numbers are a conservative guide.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["significant", "not distinguishable from no change", "worse"]


@dataclass(frozen=True)
class Uncertainty:
    """How intervals are computed: confidence level, bootstrap resamples, and the bootstrap's seed.

    ``level`` also fixes the significance level of verdicts: alpha = 1 - level, so a "significant"
    gain is one whose interval excludes 0.
    """

    level: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples!r}")

    @property
    def alpha(self) -> float:
        return 1.0 - self.level


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "clopper-pearson", "bootstrap", "wilson", "newcombe", "paired-bootstrap" or "none"

    def to_list(self) -> list[float] | None:
        """``[low, high]`` for JSON; None when there were no rows to compute it from."""
        return None if self.method == "none" else [self.low, self.high]

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


NO_INTERVAL = Interval(math.nan, math.nan, "none")
DEFAULT = Uncertainty()


# -- the binomial distribution, computed directly ------------------------------------------------
def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    log_choose = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_choose + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail(k: int, n: int, p: float, step: int) -> float:
    """P(X <= k) (step -1) or P(X >= k) (step +1), summed from k outward while the terms shrink.

    Called only on the side of the mean where each term is smaller than the last, so the sum can
    stop once the terms no longer matter; no term is ever computed from a vanishing (1 - p)^n.
    """
    odds = p / (1.0 - p)
    total, term, i = 1.0, 1.0, k
    while i > 0 if step < 0 else i < n:
        term *= i / (n - i + 1) / odds if step < 0 else (n - i) / (i + 1) * odds
        total += term
        i += step
        if term < 1e-17 * total:
            break
    return min(1.0, math.exp(_log_pmf(k, n, p)) * total)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _tail(k, n, p, -1) if k <= n * p else 1.0 - _tail(k + 1, n, p, +1)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return _tail(k, n, p, +1) if k >= n * p else 1.0 - _tail(k - 1, n, p, -1)


def _root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The p in [lo, hi] where increasing ``f`` crosses 0, by bisection to ~1e-15."""
    for _ in range(50):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> Interval:
    """The exact interval for a proportion: the p's a two-sided binomial test would not reject."""
    if n <= 0:
        return NO_INTERVAL
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    tail = (1.0 - level) / 2
    # low: P(X >= k | p) rises with p; high: P(X <= k | p) falls with p.
    low = 0.0 if successes == 0 else _root(lambda p: binom_sf(successes, n, p) - tail, 0.0, 1.0)
    high = 1.0 if successes == n else _root(lambda p: tail - binom_cdf(successes, n, p), 0.0, 1.0)
    return Interval(low, high, "clopper-pearson")


# -- one score ------------------------------------------------------------------------------------
def is_binary(scores: Sequence[float]) -> bool:
    return all(s in (0.0, 1.0) for s in scores)


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    values.sort()
    b = len(values)
    tail = (1.0 - level) / 2
    return values[math.floor(tail * b)], values[min(b - 1, math.ceil((1.0 - tail) * b) - 1)]


def _resampled_means(values: Sequence[float], resamples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    return [math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples)]


def bootstrap_interval(scores: Sequence[float], u: Uncertainty = DEFAULT) -> Interval:
    """Percentile bootstrap interval of the mean, resampling rows with replacement."""
    if not scores:
        return NO_INTERVAL
    low, high = _percentiles(_resampled_means(list(scores), u.resamples, u.seed), u.level)
    return Interval(low, high, "bootstrap")


def score_interval(scores: Sequence[float], u: Uncertainty = DEFAULT) -> Interval:
    """The interval of a mean score: exact for 0/1 scores, bootstrap otherwise."""
    if not scores:
        return NO_INTERVAL
    if is_binary(scores):
        return clopper_pearson(int(sum(scores)), len(scores), u.level)
    return bootstrap_interval(scores, u)


# -- two prompts on the same rows -----------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """``after`` minus ``before`` on the same rows, with its interval, p-value and verdict."""

    gain: float
    ci: Interval
    p_value: float
    verdict: Verdict
    method: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.gain,
            "ci": self.ci.to_list(),
            "p_value": self.p_value,
            "verdict": self.verdict,
            "method": self.method,
        }


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value; b and c count the rows only one of the two prompts got right."""
    m = b + c
    return 1.0 if m == 0 else min(1.0, 2.0 * binom_cdf(min(b, c), m, 0.5))


def _verdict(gain: float, p_value: float, alpha: float) -> Verdict:
    if p_value < alpha and gain > 0:
        return "significant"
    if p_value < alpha and gain < 0:
        return "worse"
    return "not distinguishable from no change"


def wilson(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson's score interval for a proportion (used inside ``newcombe``)."""
    if n <= 0:
        return NO_INTERVAL
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    centre = (successes + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(successes * (n - successes) / n + z * z / 4)
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


def newcombe(both: int, before_only: int, after_only: int, neither: int, level: float = 0.95) -> Interval:
    """Newcombe's hybrid score interval (1998, method 10) for a paired difference of proportions.

    The gain is (after_only - before_only) / n. It combines the Wilson intervals of the two
    accuracies, corrected for their (continuity-corrected) correlation. Unlike an interval
    conditioned on the rows where the prompts disagree, it can reach beyond the observed gain.
    """
    n = both + before_only + after_only + neither
    if n == 0:
        return NO_INTERVAL
    after_hits, before_hits = both + after_only, both + before_only
    p_after, p_before = after_hits / n, before_hits / n
    a, b = wilson(after_hits, n, level), wilson(before_hits, n, level)
    margins = (both + before_only) * (after_only + neither) * (both + after_only) * (before_only + neither)
    cross: float = both * neither - before_only * after_only
    if cross > n / 2:  # Newcombe's continuity correction of the correlation
        cross -= n / 2
    elif cross > 0:
        cross = 0
    phi = cross / math.sqrt(margins) if margins else 0.0
    down = math.sqrt(
        max(
            0.0,
            (p_after - a.low) ** 2
            - 2 * phi * (p_after - a.low) * (b.high - p_before)
            + (b.high - p_before) ** 2,
        )
    )
    up = math.sqrt(
        max(
            0.0,
            (a.high - p_after) ** 2
            - 2 * phi * (a.high - p_after) * (p_before - b.low)
            + (p_before - b.low) ** 2,
        )
    )
    gain = p_after - p_before
    return Interval(max(-1.0, gain - down), min(1.0, gain + up), "newcombe")


def _mcnemar(before: Sequence[float], after: Sequence[float], level: float) -> tuple[Interval, float]:
    pairs = list(zip(before, after, strict=True))
    b = sum(1 for x, y in pairs if x > y)
    c = sum(1 for x, y in pairs if y > x)
    both = sum(1 for x, y in pairs if x == y == 1.0)
    return newcombe(both, b, c, len(pairs) - both - b - c, level), mcnemar_p(b, c)


def _paired_bootstrap(
    before: Sequence[float], after: Sequence[float], u: Uncertainty
) -> tuple[Interval, float]:
    diffs = [y - x for x, y in zip(before, after, strict=True)]
    if all(d == 0 for d in diffs):
        return Interval(0.0, 0.0, "paired-bootstrap"), 1.0
    means = _resampled_means(diffs, u.resamples, u.seed)
    below = sum(1 for m in means if m <= 0)
    above = sum(1 for m in means if m >= 0)
    # the smallest alpha whose percentile interval excludes 0, with the usual +1 for a finite sample
    p = min(1.0, 2.0 * (min(below, above) + 1) / (len(means) + 1))
    low, high = _percentiles(means, u.level)
    return Interval(low, high, "paired-bootstrap"), p


def compare(before: Sequence[float], after: Sequence[float], u: Uncertainty = DEFAULT) -> Comparison:
    """Paired comparison of two prompts' per-row scores (same rows, same order), at alpha = 1 - level."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same rows: {len(before)} vs {len(after)}")
    if not before:
        return Comparison(math.nan, NO_INTERVAL, math.nan, "not distinguishable from no change", "none", 0)
    gain = math.fsum(after) / len(after) - math.fsum(before) / len(before)
    if is_binary(before) and is_binary(after):
        ci, p = _mcnemar(before, after, u.level)
        method = "mcnemar-exact"
    else:
        ci, p = _paired_bootstrap(before, after, u)
        method = "paired-bootstrap"
    return Comparison(gain, ci, p, _verdict(gain, p, u.alpha), method, len(before))


# -- how many rows a comparison needs -------------------------------------------------------------
def _discordance(baseline: float, gain: float, discordance: float | None) -> float:
    if discordance is None:  # the prompts err independently of each other
        after = baseline + gain
        discordance = baseline * (1 - after) + (1 - baseline) * after
    if not abs(gain) <= discordance <= 1:
        raise ValueError(
            f"the share of rows the prompts disagree on must be in [|gain|, 1], got {discordance}"
        )
    return discordance


def _critical(m: int, alpha: float) -> int:
    """The largest k with 2 * P(Binomial(m, 1/2) <= k) < alpha (-1 if none): reject when min(b, c) <= k."""
    k, cdf = -1, 0.0
    while k + 1 <= m:
        nxt = cdf + math.exp(_log_pmf(k + 1, m, 0.5))
        if 2 * nxt >= alpha:
            break
        k, cdf = k + 1, nxt
    return k


def mcnemar_power(
    n: int, baseline: float, gain: float, alpha: float = 0.05, discordance: float | None = None
) -> float:
    """Chance that the exact McNemar test on ``n`` rows calls a true ``gain`` significant.

    ``baseline`` is the old prompt's accuracy, ``gain`` the true difference (0.10 = 10 points);
    ``discordance`` the share of rows where exactly one prompt is right (default: as if the
    prompts erred independently; ``discordance=gain`` is the favourable case where the new prompt
    only fixes rows).
    """
    if n <= 0:
        return 0.0
    psi = _discordance(baseline, gain, discordance)
    win = (psi + gain) / (2 * psi) if psi > 0 else 0.5  # P(a disagreement favours the new prompt)
    spread = 10 * math.sqrt(n * psi * (1 - psi)) + 10
    lo, hi = max(0, int(n * psi - spread)), min(n, int(n * psi + spread) + 1)
    power = 0.0
    for m in range(lo, hi + 1):
        weight = math.exp(_log_pmf(m, n, psi))
        k = _critical(m, alpha)
        if weight < 1e-14 or k < 0:
            continue
        # reject when the new prompt's wins c satisfy c <= k or c >= m - k; only the win side counts
        # toward detecting a positive gain.
        power += weight * binom_sf(m - k, m, win)
    return power


def rows_needed(
    baseline: float,
    gain: float,
    alpha: float = 0.05,
    power: float = 0.8,
    discordance: float | None = None,
    limit: int = 20_000,
) -> int:
    """The fewest rows at which ``mcnemar_power`` reaches ``power`` (capped at ``limit``).

    Starts from the normal approximation, then bisects on the exact power. The exact power is
    saw-toothed in n, so a size a few rows above the answer can fall just short of the target.
    """
    psi = _discordance(baseline, gain, discordance)
    z = NormalDist()
    za, zb = z.inv_cdf(1 - alpha / 2), z.inv_cdf(power)
    guess = math.ceil((za * math.sqrt(psi) + zb * math.sqrt(max(psi - gain**2, 0.0))) ** 2 / gain**2)
    if guess > 2_000:  # far beyond small-sample effects; exact enumeration would be slow
        return min(limit, guess)
    lo, hi = max(1, guess // 2), guess
    while mcnemar_power(hi, baseline, gain, alpha, discordance) < power:
        lo, hi = hi, hi * 2
        if hi >= limit:
            return limit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mcnemar_power(mid, baseline, gain, alpha, discordance) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def split_advice(
    splits: dict[str, int], gain: float = 0.10, alpha: float = 0.05, power: float = 0.8, baseline: float = 0.5
) -> list[str]:
    """One warning per split too small to detect ``gain`` with ``power``, whichever way prompts err.

    ``splits`` maps a split's name to its rows, e.g. ``{"validation": 26, "test": 26}``. The
    power is computed at both ends of the range (the new prompt only fixes rows; the prompts err
    independently); a split is flagged when it falls short at both.
    """
    few = rows_needed(baseline, gain, alpha, power, discordance=gain)
    many = rows_needed(baseline, gain, alpha, power)
    out = []
    for name, rows in splits.items():
        chances = sorted(
            (
                mcnemar_power(rows, baseline, gain, alpha, discordance=gain),
                mcnemar_power(rows, baseline, gain, alpha),
            )
        )
        if chances[1] >= power:
            continue
        out.append(
            f"the {name} split has {rows} rows: a true {gain * 100:g}-point gain would be called "
            f"significant (alpha {alpha:g}) only {chances[0]:.0%}-{chances[1]:.0%} of the time; "
            f"{power:.0%} power needs about {few} rows if the new prompt only fixes rows, "
            f"{many} if the two prompts err independently"
        )
    return out
