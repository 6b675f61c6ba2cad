"""promptlift's own optimizers as systems of the optimizer table.

The run's ``Budget.max_calls`` covers every call a run sends, task and reasoning alike, including
the driver's test scoring; the test scoring (start and best) is added on top of the table's budget
so that, as for the peers, the budget is what the optimization itself may spend.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bench.cell import Cell, Setup
from promptlift import Client
from promptlift.optimize import OPTIMIZERS, Budget, Optimizer, RunSettings


def params_for(name: str, budget: int, n_val: int) -> dict[str, Any]:
    """Settings per optimizer. Searches stop on the budget; the trial and round counts are a bound
    (twice what the budget pays for), since a repeated candidate is free and spends nothing."""
    evaluations = max(1, budget // max(1, n_val))
    if name == "fewshot":
        return {"max_demos": 4, "trials": 2 * evaluations}
    if name == "metaprompt":
        return {"rounds": 2 * evaluations // 3 + 2, "candidates_per_round": 3}
    if name == "evolutionary":
        return {"population": 6, "generations": max(1, 2 * evaluations // 6)}
    if name == "pareto":
        return {"max_metric_calls": budget}
    if name == "failure_modes":
        return {"rounds": max(1, evaluations)}
    return {}


def build(name: str, answer_field: str, budget: int = 300, n_val: int = 20) -> Optimizer:
    cls = OPTIMIZERS[name]
    params = params_for(name, budget, n_val)
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    if "answer_field" in names:
        params["answer_field"] = answer_field
    return cls(**params)


def run(name: str, setup: Setup, client: Client | None = None) -> Cell:
    """Run promptlift's optimizer ``name`` on one cell; ``client`` defaults to a fresh one."""
    cell = Cell(f"promptlift.{name}", setup.task.name, setup.seed, setup.budget)
    own = client is None
    client = client or Client()
    n_test = len(setup.splits.test)
    settings = RunSettings(
        task_model=setup.task_model,
        reasoning_model=setup.reasoning_model,
        budget=Budget(max_calls=setup.budget + 2 * n_test),
        seed=setup.seed,
    )
    started = time.perf_counter()
    try:
        optimizer = build(name, setup.task.answer_field, setup.budget, len(setup.splits.validation))
        result = optimizer.optimize(
            setup.task.prompt, setup.splits, setup.task.metric, client=client, settings=settings
        )
    finally:
        if own:
            client.close()
    cell.wall_s = time.perf_counter() - started
    test_calls = result.initial_test.spend.calls
    if result.best.prompt != result.initial.prompt:
        test_calls += result.best_test.spend.calls
    cell.test_start = result.initial_test.mean
    cell.test_best = result.best_test.mean
    cell.task_calls = result.task_spend.calls - test_calls
    cell.reasoning_calls = result.reasoning_spend.calls
    cell.test_calls = test_calls
    cell.notes = {
        "params": optimizer.params(),
        "validation_start": result.initial.score,
        "validation_best": result.best.score,
        "candidates": len(result.history),
        "stop_reason": result.stop_reason,
        # The prompt without its demos' text: dataset rows are never written to results.
        "best_prompt": {**result.best.prompt.to_dict(), "demos": len(result.best.prompt.demos)},
    }
    return cell
