"""Few-shot selection: which training examples to show, how many, in which order.

Bayesian search with Optuna's TPE sampler over (number of demos, which train row fills each demo
slot, and optionally which instruction). The first trial is a label-balanced pick, a strong
default the search then improves on. Each trial's prompt is scored on the validation split.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.dataset import Row
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.run import Candidate, Search


def balanced_order(rows: list[Row], answer_field: str) -> list[int]:
    """Row positions interleaved by answer value (a, b, c, a, b, c, ...), stable within a value."""
    by_answer: dict[str, list[int]] = defaultdict(list)
    for pos, row in enumerate(rows):
        by_answer[demo_answer(row[answer_field])].append(pos)
    queues = [by_answer[k] for k in sorted(by_answer)]
    out: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def demo_answer(value: Any) -> str:
    """A dataset value as a demo's answer: an object or a list (a JSONL row's native JSON) as JSON."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def check_demo_answers(prompt: Prompt, rows: Iterable[Row], answer_field: str) -> None:
    """A prompt with an output schema shows demo answers that must follow it: a field holding a
    bare label would teach the model the wrong format. Raises before any call."""
    schema = prompt.output_schema
    if schema is None:
        return
    for row in rows:
        parsed = schema.parse(demo_answer(row.get(answer_field, "")))
        if not parsed.ok:
            raise ConfigError(
                f"fewshot shows `{answer_field}` as each demo's answer, but row {row.index + 1}'s is not "
                f"valid JSON for the prompt's output_schema ({parsed.error}); name a field holding the "
                "whole JSON answer (fewshot's `answer_field`, or the metric's `field`)"
            )


@dataclass
class FewShot(Optimizer):
    """``answer_field``: the dataset field whose value is shown as each demo's answer."""

    answer_field: str
    max_demos: int = 4
    min_demos: int = 1
    trials: int = 30
    instructions: list[str] = field(default_factory=list)  # alternatives to the initial system text
    name: ClassVar[str] = "fewshot"

    def __post_init__(self) -> None:
        if self.trials < 1 or self.max_demos < 1 or not 0 <= self.min_demos <= self.max_demos:
            raise ConfigError("fewshot: needs trials >= 1, max_demos >= 1 and 0 <= min_demos <= max_demos")

    def params(self) -> dict[str, Any]:
        return {
            "answer_field": self.answer_field,
            "max_demos": self.max_demos,
            "min_demos": self.min_demos,
            "trials": self.trials,
            "instructions": self.instructions,
        }

    async def search(self, ctx: Search, start: Candidate) -> None:
        import optuna

        if self.answer_field not in ctx.train.fields:
            raise ConfigError(
                f"fewshot: answer_field {self.answer_field!r} is not a dataset field "
                f"({', '.join(ctx.train.fields)})"
            )
        check_demo_answers(start.prompt, ctx.train, self.answer_field)
        optuna.logging.set_verbosity(logging.WARNING)
        pool = list(ctx.train)
        hi = min(self.max_demos, len(pool))
        lo = min(self.min_demos, hi)
        instructions = [start.prompt.system, *self.instructions]
        sampler = optuna.samplers.TPESampler(seed=ctx.settings.seed, n_startup_trials=5)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        balanced = balanced_order(pool, self.answer_field)
        study.enqueue_trial({"k": hi, **{f"demo_{i}": balanced[i] for i in range(hi)}, "instruction": 0})
        for _ in range(self.trials):
            trial = study.ask()
            k = trial.suggest_int("k", lo, hi)
            picks = [trial.suggest_categorical(f"demo_{i}", list(range(len(pool)))) for i in range(hi)]
            which = trial.suggest_categorical("instruction", list(range(len(instructions))))
            chosen = list(dict.fromkeys(picks[:k]))  # a row shown twice is shown once
            demos = tuple(Demo(dict(pool[p].fields), demo_answer(pool[p][self.answer_field])) for p in chosen)
            prompt = start.prompt.replace(demos=demos, system=instructions[which])
            candidate = await ctx.evaluate(prompt, parent=start.id, origin=f"fewshot trial {trial.number}")
            study.tell(trial, candidate.score)
            ctx.next_round()
