"""Pipelines: ``optimizer: [metaprompt, fewshot]`` (or ``Pipeline([MetaPrompt(), FewShot(...)])``
from Python) runs the optimizers in order, each stage starting from the previous stage's best
prompt, all stages sharing the run's one budget.

``Pipeline`` drives the stages: the budget left for the next stage, the stage's run id in the
store, and the combined result, which keeps every stage's own result in ``stages`` and one history
renumbered across them.

Each stage scores its starting prompt on validation and test again (its own driver), which costs
one validation and one test pass per extra stage; the plan counts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptlift.blocking import run_blocking
from promptlift.client import Client
from promptlift.errors import ConfigError
from promptlift.optimize.dataset import Splits
from promptlift.optimize.evaluation import Spend
from promptlift.optimize.metrics import Metric
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.program import Optimizable
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, Candidate, RunSettings
from promptlift.optimize.store import RunStore
from promptlift.secrets import redact


def remaining_budget(budget: Budget, done: Sequence[OptimizationResult], needed_calls: int) -> Budget | None:
    """What is left of ``budget`` after the ``done`` stages, or None when the next stage could not
    even do its own scoring (``needed_calls``)."""
    calls = sum(r.spend.work_calls for r in done)  # cache hits count: see ``Spend``
    cost = sum(r.spend.work_cost_usd for r in done)
    minutes = sum(r.duration_s for r in done) / 60
    tokens = sum(r.spend.tokens for r in done)
    left = dataclasses.replace(
        budget,
        max_calls=None if budget.max_calls is None else budget.max_calls - calls,
        max_cost_usd=None if budget.max_cost_usd is None else budget.max_cost_usd - cost,
        max_tokens=None if budget.max_tokens is None else budget.max_tokens - tokens,
        max_minutes=None if budget.max_minutes is None else budget.max_minutes - minutes,
    )
    if left.max_calls is not None and left.max_calls < needed_calls:
        return None
    if left.max_tokens is not None and left.max_tokens <= 0:
        return None
    if (left.max_cost_usd is not None and left.max_cost_usd <= 0) or (
        left.max_minutes is not None and left.max_minutes <= 0
    ):
        return None
    return left


def stage_run_id(first: str, stage: int) -> str:
    """Stage 0 is the run itself; later stages are ``<run>.<stage>`` (so a resume finds them)."""
    return first if stage == 0 else f"{first}.{stage}"


@dataclass(frozen=True)
class PipelineResult(OptimizationResult):
    """The combined result; ``stages`` holds each stage's own result, in order."""

    stages: tuple[OptimizationResult, ...] = ()

    def summary(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = super().summary(*args, **kwargs)
        out["stages"] = [
            {
                "run_id": s.run_id,
                "optimizer": s.optimizer,
                "initial_score": s.initial.score,
                "best_score": s.best.score,
                "test_best_score": s.best_test.mean,
                "calls": s.spend.calls,
                "stop_reason": s.stop_reason,
            }
            for s in self.stages
        ]
        return out


def combine(stages: Sequence[OptimizationResult]) -> PipelineResult:
    """One result for the whole pipeline: candidates renumbered in order, each later stage's initial
    candidate parented on the previous stage's best, origins prefixed with the stage's optimizer."""
    history: list[Candidate] = []
    best_id, owner = 0, 0
    for k, stage in enumerate(stages):
        offset = len(history)
        for c in stage.history:
            parent = None if c.parent is None else c.parent + offset
            if k and c.parent is None:
                parent = best_id
            origin = c.origin if not history else f"{stage.optimizer}: {c.origin}"
            sides = tuple(p + offset for p in c.parents) if c.parent is not None else ()
            history.append(
                dataclasses.replace(
                    c,
                    id=c.id + offset,
                    parent=parent,
                    origin=origin,
                    parents=sides or (() if parent is None else (parent,)),
                )
            )
        # The best is what each stage's own rule accepted, in turn: a stage that kept its start
        # keeps the previous stage's best. Taking the maximum over the joined history would pick
        # a candidate no stage accepted (under ``acceptance: significant``) and pair it with
        # another prompt's test score.
        if k == 0 or stage.best.id != stage.initial.id:
            best_id, owner = stage.best.id + offset, k
    best = history[best_id]
    first, last = stages[0], stages[-1]
    return PipelineResult(
        run_id=first.run_id,
        optimizer=" → ".join(s.optimizer for s in stages),
        task_model=first.task_model,
        reasoning_model=first.reasoning_model,
        initial=history[0],
        best=best,
        initial_test=first.initial_test,
        best_test=stages[owner].best_test,
        history=tuple(history),
        task_spend=sum((s.task_spend for s in stages), Spend()),
        reasoning_spend=sum((s.reasoning_spend for s in stages), Spend()),
        stop_reason=last.stop_reason,
        duration_s=sum(s.duration_s for s in stages),
        alerts=tuple(dict.fromkeys(a for s in stages for a in s.alerts)),
        rejected=tuple(r for s in stages for r in s.rejected),
        call_metrics=last.call_metrics,  # one client for every stage: its snapshot at the end covers all
        stages=tuple(stages),
    )


class Pipeline:
    """Optimizers run one after another, each from the previous one's best, within one budget:
    ``Pipeline([MetaPrompt(), FewShot(answer_field="label")]).optimize(prompt, splits, metric,
    client=client)``. With a store and a run id, the first stage is that run and stage ``k`` the
    run ``<run>.<k>``, so a resumed pipeline finds each stage's steps. A stage whose own scoring no
    longer fits the budget is not started: the pipeline ends with the stages it ran."""

    def __init__(self, stages: Sequence[Optimizer]):
        if isinstance(stages, Optimizer | Pipeline | str) or not isinstance(stages, Sequence):
            raise ConfigError(
                f"Pipeline takes a list of optimizers, got {type(stages).__name__}: "
                "Pipeline([MetaPrompt(), FewShot(...)])"
            )
        if not stages:
            raise ConfigError(
                "a pipeline needs one or more optimizers, like Pipeline([MetaPrompt(), FewShot(...)])"
            )
        for i, stage in enumerate(stages):
            if not isinstance(stage, Optimizer):
                raise ConfigError(
                    f"Pipeline stage {i} is {type(stage).__name__} {stage!r:.40}, not an optimizer "
                    "(FewShot(...), MetaPrompt(), ...; a pipeline's stages are not pipelines)"
                )
        self.stages = tuple(stages)
        self.name = " → ".join(s.name for s in self.stages)

    def params(self) -> list[dict[str, Any]]:
        return [s.params() for s in self.stages]

    def optimize(
        self,
        prompt: Optimizable,
        splits: Splits,
        metric: Metric,
        *,
        client: Client,
        settings: RunSettings | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> OptimizationResult:
        """Blocking form of ``aoptimize`` (a plain script, a notebook cell or a running loop)."""
        return run_blocking(
            self.aoptimize(
                prompt,
                splits,
                metric,
                client=client,
                settings=settings,
                store=store,
                run_id=run_id,
                record=record,
            )
        )

    async def aoptimize(
        self,
        prompt: Optimizable,
        splits: Splits,
        metric: Metric,
        *,
        client: Client,
        settings: RunSettings | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> OptimizationResult:
        """Every stage in order; ``record`` is stored with each later stage's run (a config's raw
        settings). A stage that ends by an error marks its run failed (or interrupted) and raises."""
        settings = (settings or RunSettings()).for_client(client)
        results: list[OptimizationResult] = []
        for stage, optimizer in enumerate(self.stages):
            needed = (len(splits.validation) + 2 * len(splits.test)) * prompt.calls_per_row
            budget = remaining_budget(settings.budget, results, needed) if stage else settings.budget
            if budget is None:
                break  # not even the next stage's own scoring fits: the pipeline ends here
            stage_id = stage_run_id(run_id, stage) if run_id else None
            if store is not None and stage_id and stage:
                if has_run(store, stage_id):
                    store.claim_run(stage_id)
                else:
                    store.create_run(
                        optimizer.name, {**(record or {}), "pipeline_of": run_id, "stage": stage}, stage_id
                    )
            try:
                result = await optimizer.aoptimize(
                    prompt,
                    splits,
                    metric,
                    client=client,
                    settings=dataclasses.replace(settings, budget=budget),
                    store=store,
                    run_id=stage_id,
                )
            except BaseException as exc:
                if store is not None and stage_id:
                    mark_ended(store, stage_id, exc)
                raise
            results.append(result)
            prompt = result.best.prompt
        if len(results) == 1:
            return results[0]
        combined = combine(results)
        if store is not None and run_id:
            # The pipeline's run shows the whole pipeline (its first start, its last best, every
            # stage's run id); each stage's own result stays in its own run, RUN.k.
            store.finish_run(run_id, "finished", combined.to_dict())
        return combined


def mark_ended(store: RunStore, run_id: str, exc: BaseException) -> None:
    """A run that ends by an error says so (``--resume`` continues it), its message redacted."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError) else "failed"
    store.finish_run(run_id, status, {"error": redact(f"{type(exc).__name__}: {exc}")})


def has_run(store: RunStore, run_id: str) -> bool:
    try:
        store.run(run_id)
    except ConfigError:
        return False
    return True
