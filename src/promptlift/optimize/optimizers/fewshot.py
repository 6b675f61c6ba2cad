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
from promptlift.log import get_logger
from promptlift.optimize.dataset import Row
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.program import Program, trace_demos
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.run import Candidate, Search

log = get_logger("optimize.fewshot")


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
    bootstrap_rows: int = 16  # a program's: train rows run to collect its calls as demos
    name: ClassVar[str] = "fewshot"

    def __post_init__(self) -> None:
        if self.trials < 1 or self.max_demos < 1 or not 0 <= self.min_demos <= self.max_demos:
            raise ConfigError("fewshot: needs trials >= 1, max_demos >= 1 and 0 <= min_demos <= max_demos")
        if self.bootstrap_rows < 1:
            raise ConfigError("fewshot: `bootstrap_rows` must be at least 1")

    def params(self) -> dict[str, Any]:
        return {
            "answer_field": self.answer_field,
            "max_demos": self.max_demos,
            "min_demos": self.min_demos,
            "trials": self.trials,
            "instructions": self.instructions,
            "bootstrap_rows": self.bootstrap_rows,
        }

    async def search(self, ctx: Search, start: Candidate) -> None:
        import optuna

        if isinstance(start.prompt, Program):
            return await self._search_program(ctx, start, start.prompt)
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

    async def _search_program(self, ctx: Search, start: Candidate, program: Program) -> None:
        """Demos per prompt, from the program's own calls: the starting program runs on up to
        ``bootstrap_rows`` train rows, and each call it made on a row that scored well (1, or the
        best score seen when none reached 1) is a demo for that call's prompt; then trials choose
        how many and which for each prompt at once."""
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        sample = ctx.rng.sample(list(ctx.train), min(self.bootstrap_rows, len(ctx.train)))
        scored = await ctx.score(program, sorted(sample, key=lambda r: r.index))
        top = max(scored.scores, default=0.0)
        if top <= 0:
            message = "fewshot: no train row scored above 0 with the starting program: no demos to show"
            log.warning(message)
            ctx.emit("warning", message=message)
            return
        traces = [(r.score, r.trace) for r in scored.rows]
        pools = {name: trace_demos(traces, name, threshold=min(1.0, top)) for name in program.prompts}
        pools = {name: pool for name, pool in pools.items() if pool}
        sampler = optuna.samplers.TPESampler(seed=ctx.settings.seed, n_startup_trials=5)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial(
            {
                key: value
                for name, pool in pools.items()
                for key, value in [
                    (f"{name}.k", min(self.max_demos, len(pool))),
                    *((f"{name}.demo_{i}", i) for i in range(min(self.max_demos, len(pool)))),
                ]
            }
        )
        for _ in range(self.trials):
            trial = study.ask()
            candidate_program = program
            for name, pool in pools.items():
                hi = min(self.max_demos, len(pool))
                k = trial.suggest_int(f"{name}.k", min(self.min_demos, hi), hi)
                picks = [
                    trial.suggest_categorical(f"{name}.demo_{i}", list(range(len(pool)))) for i in range(hi)
                ]
                chosen = tuple(pool[p] for p in dict.fromkeys(picks[:k]))
                candidate_program = candidate_program.with_prompt(
                    name, program.prompts[name].replace(demos=chosen)
                )
            candidate = await ctx.evaluate(
                candidate_program, parent=start.id, origin=f"fewshot trial {trial.number}"
            )
            study.tell(trial, candidate.score)
            ctx.next_round()
