"""Stop rules: small strategies that compose with ``|`` (stop when any says so).

Each rule looks at a ``Progress`` snapshot and returns the reason to stop, or None.
    MaxCalls(500) | NoImprovement(5) | TargetScore(0.95)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    calls: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    rounds: int = 0
    best_score: float = -math.inf
    rounds_without_improvement: int = 0


class StopRule:
    def reason(self, p: Progress) -> str | None:
        raise NotImplementedError

    def __or__(self, other: StopRule) -> StopRule:
        return AnyOf((self, other))


@dataclass(frozen=True)
class AnyOf(StopRule):
    rules: tuple[StopRule, ...]

    def reason(self, p: Progress) -> str | None:
        return next((r for r in (rule.reason(p) for rule in self.rules) if r), None)

    def __or__(self, other: StopRule) -> StopRule:
        return AnyOf((*self.rules, other))


@dataclass(frozen=True)
class MaxCalls(StopRule):
    calls: int

    def reason(self, p: Progress) -> str | None:
        return f"max_calls ({self.calls})" if p.calls >= self.calls else None


@dataclass(frozen=True)
class MaxCost(StopRule):
    usd: float

    def reason(self, p: Progress) -> str | None:
        return f"max_cost (${self.usd:g})" if p.cost_usd >= self.usd else None


@dataclass(frozen=True)
class MaxTime(StopRule):
    seconds: float

    def reason(self, p: Progress) -> str | None:
        return f"max_time ({self.seconds:g} s)" if p.elapsed_s >= self.seconds else None


@dataclass(frozen=True)
class MaxRounds(StopRule):
    rounds: int

    def reason(self, p: Progress) -> str | None:
        return f"max_rounds ({self.rounds})" if p.rounds >= self.rounds else None


@dataclass(frozen=True)
class TargetScore(StopRule):
    score: float

    def reason(self, p: Progress) -> str | None:
        return f"target_score ({self.score:g})" if p.best_score >= self.score else None


@dataclass(frozen=True)
class NoImprovement(StopRule):
    rounds: int

    def reason(self, p: Progress) -> str | None:
        if p.rounds_without_improvement >= self.rounds:
            return f"no_improvement ({self.rounds} rounds)"
        return None


class Never(StopRule):
    def reason(self, p: Progress) -> str | None:
        return None
