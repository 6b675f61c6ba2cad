"""What a run returns: the initial and best prompts, their scores, and everything that was tried."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptlift.optimize.evaluation import Evaluation, Spend
from promptlift.optimize.run import Candidate


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

    @property
    def spend(self) -> Spend:
        return self.task_spend + self.reasoning_spend

    def summary(self) -> dict[str, Any]:
        """The flat JSON the CLI prints with ``--json``."""
        return {
            "run_id": self.run_id,
            "optimizer": self.optimizer,
            "model": self.task_model,
            "reasoning_model": self.reasoning_model,
            "initial_score": self.initial.score,
            "best_score": self.best.score,
            "test_initial_score": self.initial_test.mean,
            "test_best_score": self.best_test.mean,
            "initial_prompt": self.initial.prompt.to_dict(),
            "best_prompt": self.best.prompt.to_dict(),
            "candidates": len(self.history),
            "calls": self.spend.calls,
            "task_calls": self.task_spend.calls,
            "reasoning_calls": self.reasoning_spend.calls,
            "tokens": self.spend.tokens,
            "cost_usd": self.spend.cost_usd,
            "stop_reason": self.stop_reason,
            "duration_s": round(self.duration_s, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, for the run store and reports."""
        out = self.summary()
        out["initial_test"] = self.initial_test.to_dict()
        out["best_test"] = self.best_test.to_dict()
        out["history"] = [
            {
                "id": c.id,
                "parent": c.parent,
                "round": c.round,
                "origin": c.origin,
                "score": c.score,
                "prompt": c.prompt.to_dict(),
                "spend": c.spend.to_dict(),
            }
            for c in self.history
        ]
        return out
