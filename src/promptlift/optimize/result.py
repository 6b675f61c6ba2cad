"""What a run returns: the initial and best prompts, their scores, and everything that was tried.

Every score comes with its interval (``promptlift.optimize.stats``), computed from the per-row
scores the result keeps, so a stored result can be re-summarized at another level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlift.optimize import stats
from promptlift.optimize.evaluation import Evaluation, Spend
from promptlift.optimize.run import Candidate, Rejected
from promptlift.optimize.stats import Comparison, Uncertainty, compare, score_interval


def calls_split(calls: int, cached: int) -> str:
    """How a run's calls (sent and cached alike, as the progress line and budgets count them) were
    answered: "598 sent, 0 from the cache". The summary, ``runs show`` and plan vs actual say it
    the same way."""
    return f"{calls - cached} sent, {cached} from the cache"


@dataclass(frozen=True)
class OptimizationResult:
    run_id: str | None
    optimizer: str
    task_model: str
    reasoning_model: str
    initial: Candidate
    best: Candidate
    initial_test: Evaluation
    best_test: Evaluation
    history: tuple[Candidate, ...]
    task_spend: Spend
    reasoning_spend: Spend
    stop_reason: str
    duration_s: float
    alerts: tuple[str, ...] = ()  # suspicious activity during the run (promptlift.client.alerts)
    rejected: tuple[Rejected, ...] = ()  # proposals dropped before validation, with why
    # The Pareto front of a multi-objective or per-row Pareto run (``Optimizer.front``), else None.
    front: Mapping[str, Any] | None = None
    # The client's call metrics at the end of the run (``MetricsSnapshot.to_dict``: latency
    # percentiles, errors by type, retries, cache hits); a client shared with other work counts it too.
    call_metrics: Mapping[str, Any] | None = None

    @property
    def spend(self) -> Spend:
        return self.task_spend + self.reasoning_spend

    def test_gain(self, u: Uncertainty = stats.DEFAULT) -> Comparison:
        """Best minus initial on the test split, paired row by row."""
        return compare(self.initial_test.scores, self.best_test.scores, u)

    def summary(self, u: Uncertainty = stats.DEFAULT) -> dict[str, Any]:
        """The flat JSON the CLI prints with ``--json``; each ``*_ci`` is ``[low, high]`` at ``u.level``."""

        def ci(evaluation: Evaluation) -> list[float] | None:
            return score_interval(evaluation.scores, u).to_list()

        return {
            "run_id": self.run_id,
            "optimizer": self.optimizer,
            "model": self.task_model,
            "reasoning_model": self.reasoning_model,
            "initial_score": self.initial.score,
            "initial_score_ci": ci(self.initial.evaluation),
            "best_score": self.best.score,
            "best_score_ci": ci(self.best.evaluation),
            "test_initial_score": self.initial_test.mean,
            "test_initial_score_ci": ci(self.initial_test),
            "test_best_score": self.best_test.mean,
            "test_best_score_ci": ci(self.best_test),
            "test_gain": self.test_gain(u).to_dict(),
            "ci_level": u.level,
            "initial_prompt": self.initial.prompt.to_dict(),
            "best_prompt": self.best.prompt.to_dict(),
            "candidates": len(self.history),
            "rejected": len(self.rejected),  # proposals dropped before validation
            "calls": self.spend.calls,
            "task_calls": self.task_spend.calls,
            "reasoning_calls": self.reasoning_spend.calls,
            "cached_calls": self.spend.cached_calls,  # answered by the cache: counted by budgets, not paid
            # every call the search made, sent or answered by the cache: what the progress line and
            # budgets count (``calls``, ``task_calls`` and ``reasoning_calls`` are those sent)
            "work_calls": self.spend.work_calls,
            "task_work_calls": self.task_spend.work_calls,
            "reasoning_work_calls": self.reasoning_spend.work_calls,
            "tokens": self.spend.tokens,
            "cost_usd": self.spend.cost_usd,
            # as the providers reported: input read from their prompt caches, and what that saved
            # (the cost at the full input price minus cost_usd)
            "cached_input_tokens": self.spend.cached_input_tokens,
            "cache_saved_usd": self.spend.cache_saved_usd,
            # what provider batch scoring saved: the same reported usage at the list price, minus cost
            "batch_saved_usd": self.spend.batch_saved_usd,
            "stop_reason": self.stop_reason,
            "alerts": list(self.alerts),
            "duration_s": round(self.duration_s, 3),
        }

    def to_dict(self, u: Uncertainty = stats.DEFAULT) -> dict[str, Any]:
        """Everything, for the run store and reports."""
        out = self.summary(u)
        out["initial_test"] = self.initial_test.to_dict()
        out["best_test"] = self.best_test.to_dict()
        out["history"] = [
            {
                "id": c.id,
                "parent": c.parent,
                "parents": list(c.parents),
                "round": c.round,
                "origin": c.origin,
                "score": c.score,
                "score_ci": score_interval(c.evaluation.scores, u).to_list(),
                "prompt": c.prompt.to_dict(),
                "spend": c.spend.to_dict(),
            }
            for c in self.history
        ]
        out["rejected_proposals"] = [r.to_dict() for r in self.rejected]
        out["front"] = dict(self.front) if self.front is not None else None
        out["call_metrics"] = dict(self.call_metrics) if self.call_metrics is not None else None
        return out
