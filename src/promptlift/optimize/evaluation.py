"""Scoring a prompt on rows: every row's output, score and reason, and what it cost.

The evaluator sends one request per row through the client's batch API, so the client's
concurrency limit, rate limits, cache and budget all apply. Requests for one prompt are sent
together and in row order: on the embedded model they share the prompt's prefix (system text and
demos) and run back to back on its single worker, so the KV cache is reused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptlift.client import Client
from promptlift.errors import BudgetExceeded, PromptliftError, UserError
from promptlift.optimize.dataset import Dataset, Row
from promptlift.optimize.metrics import Metric, Score
from promptlift.optimize.prompt import Prompt
from promptlift.types import Completion


@dataclass(frozen=True)
class RowResult:
    index: int  # the row's index in the dataset file
    output: str
    score: float
    reason: str = ""
    error: str = ""  # "ErrorType: message" when the call failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "output": self.output,
            "score": self.score,
            "reason": self.reason,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RowResult:
        return cls(
            int(d["index"]),
            str(d["output"]),
            float(d["score"]),
            str(d.get("reason", "")),
            str(d.get("error", "")),
        )


@dataclass(frozen=True)
class Spend:
    """Calls actually sent (cache hits excluded), their tokens and their cost."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.calls + other.calls, self.tokens + other.tokens, self.cost_usd + other.cost_usd)

    @classmethod
    def of(cls, completions: Sequence[Completion]) -> Spend:
        sent = [c for c in completions if not c.cached]
        return cls(len(sent), sum(c.usage.total_tokens for c in sent), sum(c.cost_usd for c in sent))

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "tokens": self.tokens, "cost_usd": self.cost_usd}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Spend:
        return cls(int(d["calls"]), int(d["tokens"]), float(d["cost_usd"]))


@dataclass(frozen=True)
class Evaluation:
    rows: tuple[RowResult, ...]
    spend: Spend = Spend()

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.rows]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.rows) if self.rows else math.nan

    @property
    def failures(self) -> list[RowResult]:
        return [r for r in self.rows if r.score < 1.0]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "rows": [r.to_dict() for r in self.rows], "spend": self.spend.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        return cls(tuple(RowResult.from_dict(r) for r in d["rows"]), Spend.from_dict(d["spend"]))


def _score(metric: Metric, row: Row, output: str) -> tuple[Score, str]:
    try:
        result: Any = metric(row, output)
    except UserError:
        raise
    except Exception as exc:  # a metric bug on one row scores it 0, with the reason kept
        return Score(0.0), f"metric raised {type(exc).__name__}: {exc}"
    if not isinstance(result, Score):
        result = Score(float(result))
    return result, ""


class Evaluator:
    """Scores prompts with one metric and one task model through one client."""

    def __init__(self, client: Client, metric: Metric, model: str | None = None):
        self.client = client
        self.metric = metric
        self.model = model or client.model

    async def evaluate(self, prompt: Prompt, data: Dataset | Sequence[Row]) -> Evaluation:
        rows = list(data)
        params = {"temperature": 0.0, **dict(prompt.params)}
        requests = [
            self.client.request(prompt.messages(row.fields), model=self.model, **params) for row in rows
        ]
        results = await self.client.abatch(requests)
        out: list[RowResult] = []
        metric_errors = 0
        call_errors: list[PromptliftError] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BudgetExceeded):
                raise result
            if isinstance(result, PromptliftError):
                call_errors.append(result)
                out.append(
                    RowResult(row.index, "", 0.0, "the call failed", f"{type(result).__name__}: {result}")
                )
                continue
            score, error = _score(self.metric, row, result.content)
            metric_errors += bool(error)
            out.append(RowResult(row.index, result.content, score.value, score.reason or error, error))
        if rows and len(call_errors) == len(rows):
            raise call_errors[0]
        if rows and metric_errors == len(rows):
            raise UserError(f"the metric {self.metric.name!r} failed on every row: {out[0].error}")
        spend = Spend.of([r for r in results if isinstance(r, Completion)])
        return Evaluation(tuple(out), spend)
