"""Model choice: one prompt across candidate models, and the cost–quality frontier.

    served = ModelCandidate("openai/small", api_base=url, price=ModelPrice(0.1, 0.4))
    report = compare_models(config, [ModelCandidate("local/gemma-3-270m"), served], target=0.8)
    print(report.render())

Each candidate is scored on the same rows (the test split by default: held out from every
optimizer) through its own client, so its endpoint, price and latency are its own. For each model
the report gives the score, the cost per 1,000 rows (what the calls cost, at the candidate's price,
the price map's, or zero for embedded models), the median latency per call, and whether it is on
the frontier: no other model scores at least as well for no more money, and strictly better on
one. ``cheapest`` is the least costly model meeting ``target`` (ties: the higher score, then the
faster). ``promptlift models compare CONFIG --model A --model B --target 0.8`` is the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from promptlift.blocking import run_blocking
from promptlift.client import Client, ClientConfig
from promptlift.client.config import ModelPrice, ModelSpec
from promptlift.errors import ConfigError
from promptlift.optimize.config import RunConfig
from promptlift.optimize.dataset import Row
from promptlift.optimize.evaluation import Evaluator
from promptlift.optimize.metrics import metric_from_config
from promptlift.optimize.program import Optimizable
from promptlift.optimize.stats import Comparison, compare, score_interval


@dataclass(frozen=True)
class ModelCandidate:
    """``price`` in USD per million tokens, over the price map; ``api_base`` for a served model."""

    model: str
    api_base: str | None = None
    price: ModelPrice | None = None


@dataclass(frozen=True)
class ModelScore:
    model: str
    score: float
    rows: int
    cost_per_1k_rows: float
    latency_p50_s: float
    failed_calls: int
    on_frontier: bool = False
    score_ci: tuple[float, float] | None = None  # the score's interval (95%)
    row_scores: tuple[float, ...] = field(default=(), repr=False)  # per row, for the paired test

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "row_scores"}
        out["score_ci"] = list(self.score_ci) if self.score_ci else None
        return out


def frontier(points: Sequence[tuple[str, float, float]]) -> set[str]:
    """Names of the (name, score, cost) points no other point dominates (score up, cost down)."""

    def beats(p: tuple[str, float, float], q: tuple[str, float, float]) -> bool:
        return p[1] >= q[1] and p[2] <= q[2] and (p[1] > q[1] or p[2] < q[2])

    return {q[0] for q in points if not any(beats(p, q) for p in points if p is not q)}


def cheapest_meeting(scores: Sequence[ModelScore], target: float) -> ModelScore | None:
    meeting = [s for s in scores if s.score >= target]
    return min(meeting, key=lambda s: (s.cost_per_1k_rows, -s.score, s.latency_p50_s), default=None)


@dataclass(frozen=True)
class ModelReport:
    scores: tuple[ModelScore, ...]  # in the order the candidates were given
    target: float | None
    rows: str  # which rows were scored: "test", "validation" or "all"

    @property
    def cheapest(self) -> ModelScore | None:
        return None if self.target is None else cheapest_meeting(self.scores, self.target)

    def top_two(self) -> tuple[ModelScore, ModelScore, Comparison] | None:
        """The two best-scoring models, and the second's score minus the first's on the same rows,
        paired (exact McNemar for 0/1 scores, a paired bootstrap otherwise)."""
        ranked = sorted(self.scores, key=lambda s: -s.score)
        if len(ranked) < 2 or len(ranked[0].row_scores) != len(ranked[1].row_scores):
            return None
        first, second = ranked[0], ranked[1]
        return first, second, compare(list(first.row_scores), list(second.row_scores))

    def render(self) -> str:
        width = max(len(s.model) for s in self.scores)
        head = f"{'model':<{width}}  score  interval        $/1k rows   p50 latency  frontier"
        lines = [f"{head}   ({self.rows} rows)"]
        for s in self.scores:
            mark = "*" if s.on_frontier else ""
            ci = f"[{s.score_ci[0]:.3f}, {s.score_ci[1]:.3f}]" if s.score_ci else "[-]"
            lines.append(
                f"{s.model:<{width}}  {s.score:.3f}  {ci:<14}  {s.cost_per_1k_rows:10.4f}  "
                f"{s.latency_p50_s * 1000:8.0f} ms  {mark:^8}"
                + (f"   {s.failed_calls} failed calls" if s.failed_calls else "")
            )
        if self.target is not None:
            best = self.cheapest
            verdict = best.model if best else "no model reaches it"
            lines.append(f"cheapest meeting {self.target:g}: {verdict}")
        top = self.top_two()
        if top is not None:
            first, second, c = top
            lines.append(
                f"{second.model} - {first.model}: {c.gain:+.3f} [{c.ci.low:+.3f}, {c.ci.high:+.3f}] "
                f"p = {c.p_value:.3g} ({c.method}, paired on {c.rows} rows): {c.verdict}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        best = self.cheapest
        return {
            "rows": self.rows,
            "target": self.target,
            "cheapest": best.model if best else None,
            "models": [s.to_dict() for s in self.scores],
            "top_two": (
                {"first": top[0].model, "second": top[1].model, "second_minus_first": top[2].to_dict()}
                if (top := self.top_two()) is not None
                else None
            ),
        }


def _rows(config: RunConfig, which: str) -> tuple[list[Row], list[str]]:
    """The rows to score, and every value of the metric's field (for metrics that need them)."""
    if which not in ("test", "validation", "all"):
        raise ConfigError(f"rows must be test, validation or all, not {which!r}")
    from promptlift.optimize.session import load_splits  # checks fields and paths before any call

    dataset, parts = load_splits(config)
    field = config.metric.get("field")
    values = [str(r[field]) for r in dataset] if field in dataset.fields else []
    if which == "all":
        return list(dataset), values
    return list(parts.test if which == "test" else parts.validation), values


def _score(
    config: RunConfig, candidate: ModelCandidate, prompt: Optimizable, rows: list[Row], values: list[str]
) -> ModelScore:
    prices = {**config.prices, **({candidate.model: candidate.price} if candidate.price else {})}
    api_base = None if candidate.model.startswith("local/") else (candidate.api_base or config.api_base)
    # A model of the config's chain keeps its own key variable and extra; --api-base overrides its endpoint.
    own = next((m for m in config.chain if isinstance(m, ModelSpec) and m.model == candidate.model), None)
    if own is not None:
        own = replace(own, api_base=candidate.api_base or own.api_base)
    client = Client(
        ClientConfig(
            models=(own or candidate.model,),
            allowed_hosts=config.allowed_hosts,
            transport=config.transport,
            prompt_cache=config.prompt_cache,
            api_base=api_base,
            timeout=config.timeout,
            concurrency=config.concurrency,
            prices=prices,
            retry=config.retry,
            rate_limits=config.rate_limits,
            fallback=config.fallback,
        )
    )
    try:
        metric = metric_from_config(
            config.metric, field_values=values, client=client, base_dir=config.path.parent
        )
        evaluation = run_blocking(Evaluator(client, metric, candidate.model).evaluate(prompt, rows))
        stats = client.metrics_snapshot().total
    finally:
        client.close()
    return ModelScore(
        model=candidate.model,
        score=evaluation.mean,
        score_ci=(iv.low, iv.high) if (iv := score_interval(evaluation.scores)).method != "none" else None,
        row_scores=tuple(evaluation.scores),
        rows=len(rows),
        cost_per_1k_rows=stats.cost_usd / max(1, len(rows)) * 1000,
        latency_p50_s=stats.latency_p50_s,
        failed_calls=sum(1 for r in evaluation.rows if r.error),
    )


def compare_models(
    config: RunConfig,
    candidates: Sequence[ModelCandidate],
    *,
    target: float | None = None,
    prompt: Optimizable | None = None,
    rows: str = "test",
) -> ModelReport:
    """Score ``prompt`` (default: the config's) with every candidate, one after another."""
    if not candidates:
        raise ConfigError("name at least one model to compare")
    data, values = _rows(config, rows)
    scored = [_score(config, c, prompt or config.prompt, data, values) for c in candidates]
    on = frontier([(s.model, s.score, s.cost_per_1k_rows) for s in scored])
    marked = tuple(ModelScore(**{**vars(s), "on_frontier": s.model in on}) for s in scored)
    return ModelReport(marked, target, rows)
