"""Metrics that read an agent's trajectory, and a weighted sum to combine them with answer metrics.

A metric with ``reads_trajectory = True`` is called ``metric(row, output, trajectory)``; the
evaluator gives every row a trajectory (a single-call prompt's is one model step and no tool call),
so these metrics run on any prompt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptlift.errors import ConfigError
from promptlift.optimize.metrics import Metric, Normalize, Score
from promptlift.optimize.prompt import fill, placeholders

if TYPE_CHECKING:
    from promptlift.optimize.agent import Trajectory
    from promptlift.optimize.dataset import Row


def _same(want: Any, got: Any, normalize: Normalize) -> bool:
    if isinstance(want, str) or isinstance(got, str):
        return normalize(str(want)) == normalize(str(got))
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(want), float(got), rel_tol=1e-9, abs_tol=1e-9)
    return bool(want == got)


@dataclass(frozen=True)
class ToolCalled:
    """1 when the agent called ``tool`` at least once with ``arguments`` (each value a template
    filled from the row, compared after normalizing case and whitespace; arguments not named are
    free), else 0 with what it called instead."""

    tool: str
    arguments: Mapping[str, Any] | None = None
    normalize: Normalize = field(default_factory=Normalize)
    name: str = "tool_called"
    reads_trajectory: bool = True

    def expected(self, row: Row) -> dict[str, Any]:
        out = {}
        for key, value in (self.arguments or {}).items():
            if isinstance(value, str) and placeholders(value, f"metric.arguments.{key}"):
                missing = [f for f in placeholders(value) if f not in row.fields]
                if missing:
                    raise ConfigError(
                        f"metric tool_called: arguments.{key} uses {{{missing[0]}}}, which row "
                        f"{row.index + 1} does not have"
                    )
                value = fill(value, row.fields)
            out[key] = value
        return out

    def __call__(self, row: Row, output: str, trajectory: Trajectory | None = None) -> Score:
        want = self.expected(row)
        calls = trajectory.tool_calls if trajectory is not None else ()
        made = []
        for step in calls:
            if step.call.name != self.tool:
                made.append(step.call.name)
                continue
            try:
                args = json.loads(step.call.arguments or "{}")
            except json.JSONDecodeError:
                args = None
            if isinstance(args, dict) and all(
                k in args and _same(v, args[k], self.normalize) for k, v in want.items()
            ):
                return Score(1.0)
            made.append(f"{step.call.name}({step.call.arguments})")
        expected = f"{self.tool}({json.dumps(want, ensure_ascii=False)})" if want else self.tool
        return Score(0.0, f"expected a call to {expected}; it called {', '.join(made) or 'no tool'}")


@dataclass(frozen=True)
class Steps:
    """How quickly the agent got there: 1 within ``max`` model calls, then ``max / calls``."""

    max: int = 1
    name: str = "steps"
    reads_trajectory: bool = True

    def __post_init__(self) -> None:
        if self.max < 1:
            raise ConfigError(f"metric steps: `max` must be at least 1, got {self.max}")

    def __call__(self, row: Row, output: str, trajectory: Trajectory | None = None) -> Score:
        calls = trajectory.model_calls if trajectory is not None else 1
        if calls <= self.max:
            return Score(1.0)
        return Score(self.max / calls, f"took {calls} model calls (aim: at most {self.max})")


@dataclass(frozen=True)
class Weighted:
    """The weighted mean of several metrics' scores (weights need not sum to 1): the answer's
    correctness beside the trajectory's, say. The reason names each part that missed."""

    parts: Sequence[tuple[Metric, float]]
    name: str = "weighted"

    def __post_init__(self) -> None:
        if not self.parts or any(w < 0 for _, w in self.parts) or sum(w for _, w in self.parts) <= 0:
            raise ConfigError("metric weighted: give at least one metric, with weights >= 0 that sum above 0")

    @property
    def reads_trajectory(self) -> bool:
        return any(getattr(m, "reads_trajectory", False) for m, _ in self.parts)

    @property
    def calls_per_row(self) -> int:
        return sum(int(getattr(m, "calls_per_row", 0)) for m, _ in self.parts)

    def _combine(self, scores: Sequence[Score]) -> Score:
        total = sum(w for _, w in self.parts)
        value = sum(s.value * w for s, (_, w) in zip(scores, self.parts, strict=True)) / total
        reasons = [f"{m.name}: {s.reason}" for s, (m, _) in zip(scores, self.parts, strict=True) if s.reason]
        return Score(value, "; ".join(reasons), tuple(c for s in scores for c in s.calls))

    def __call__(self, row: Row, output: str, trajectory: Trajectory | None = None) -> Score:
        return self._combine([_as_score(_call(m, row, output, trajectory)) for m, _ in self.parts])

    async def ascore(self, row: Row, output: str, trajectory: Trajectory | None = None) -> Score:
        scores = []
        for metric, _ in self.parts:
            ascore = getattr(metric, "ascore", None)
            extra = (trajectory,) if getattr(metric, "reads_trajectory", False) else ()
            result = await ascore(row, output, *extra) if ascore is not None else metric(row, output, *extra)
            scores.append(_as_score(result))
        return self._combine(scores)


def _call(metric: Metric, row: Row, output: str, trajectory: Trajectory | None) -> Any:
    if getattr(metric, "reads_trajectory", False):
        return metric(row, output, trajectory)  # type: ignore[call-arg]
    return metric(row, output)


def _as_score(result: Any) -> Score:
    return result if isinstance(result, Score) else Score(float(result))
