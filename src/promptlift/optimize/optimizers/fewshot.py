"""Few-shot selection: which training examples to show, how many, in which order.

Bayesian search with Optuna's TPE sampler over (number of demos, which train row fills each demo
slot, and optionally which instruction). The first trial is a label-balanced pick, a strong
default the search then improves on. Each trial's prompt is scored on the validation split.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.dataset import Row
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.prompt import Demo
from promptlift.optimize.run import Candidate, Search


def balanced_order(rows: list[Row], answer_field: str) -> list[int]:
    """Row positions interleaved by answer value (a, b, c, a, b, c, ...), stable within a value."""
    by_answer: dict[str, list[int]] = defaultdict(list)
    for pos, row in enumerate(rows):
        by_answer[str(row[answer_field])].append(pos)
    queues = [by_answer[k] for k in sorted(by_answer)]
    out: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


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
            demos = tuple(Demo(dict(pool[p].fields), str(pool[p][self.answer_field])) for p in chosen)
            prompt = start.prompt.replace(demos=demos, system=instructions[which])
            candidate = await ctx.evaluate(prompt, parent=start.id, origin=f"fewshot trial {trial.number}")
            study.tell(trial, candidate.score)
            ctx.next_round()
