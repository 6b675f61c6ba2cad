"""From a config to a result: build the client, data, metric and optimizer, run, record.

This is what ``promptlift optimize`` and ``promptlift eval`` call; library users can call
``run_config`` too, or assemble the pieces themselves.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from promptlift.client import Client, ClientConfig
from promptlift.client.config import CacheConfig
from promptlift.errors import ConfigError
from promptlift.optimize.config import RunConfig
from promptlift.optimize.dataset import Dataset, Splits, split
from promptlift.optimize.evaluation import Evaluation, Evaluator
from promptlift.optimize.metrics import Metric, metric_from_config
from promptlift.optimize.optimizers import build_optimizer
from promptlift.optimize.pipeline import combine, remaining_budget, stage_run_id
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Event, RunSettings
from promptlift.optimize.stats import score_interval, split_advice
from promptlift.optimize.stop import NoImprovement, StopRule
from promptlift.optimize.store import RunStore


@dataclass(frozen=True)
class Prepared:
    client: Client
    splits: Splits
    metric: Metric


def load_splits(config: RunConfig) -> tuple[Dataset, Splits]:
    """Load the dataset, check the prompt's placeholders against it, split it: no call is made."""
    dataset = Dataset.load(config.dataset_path)
    config.prompt.check(dataset.fields)
    s = config.split
    splits = split(
        dataset, float(s["train"]), float(s["validation"]), float(s["test"]), int(s.get("seed", 0))
    )
    return dataset, splits


def prepare(config: RunConfig) -> Prepared:
    """Load and check everything before any call is made."""
    dataset, splits = load_splits(config)
    client = Client(
        ClientConfig(
            models=config.client_models,
            api_base=config.api_base,
            allowed_hosts=config.allowed_hosts,
            timeout=config.timeout,
            concurrency=config.concurrency,
            cache=CacheConfig(path=str(config.cache)) if config.cache else None,
            retry=config.retry,
            rate_limits=config.rate_limits,
            prices=dict(config.prices),
        )
    )
    field = config.metric.get("field")
    values = [str(r[field]) for r in dataset] if field in dataset.fields else []
    metric = metric_from_config(config.metric, field_values=values, client=client)
    return Prepared(client, splits, metric)


def run_config(
    config: RunConfig,
    *,
    on_event: Event | None = None,
    resume: str | None = None,
    stop: StopRule | None = None,
) -> OptimizationResult:
    """Run the config's optimizer, or its pipeline (``optimizer:`` as a list) in order: each stage
    starts from the previous stage's best prompt, with what is left of the run's budget, and the
    result keeps every stage (``pipeline.PipelineResult``)."""
    prepared = prepare(config)
    field = config.metric.get("field")
    optimizers = [build_optimizer(s.name, s.params, answer_field=field) for s in config.optimizers]
    store = RunStore(config.store) if config.store else None
    first = resume
    if store is not None:
        if resume:
            store.run(resume)  # raises a clear error when there is no such run
        else:
            params = [o.params() for o in optimizers]
            first = store.create_run(
                optimizers[0].name, {**config.raw, "optimizer_params": params[0], "pipeline": params}
            )
    splits = prepared.splits
    results: list[OptimizationResult] = []
    prompt = config.prompt
    try:
        for stage, optimizer in enumerate(optimizers):
            needed = len(splits.validation) + 2 * len(splits.test)
            budget = remaining_budget(config.budget, results, needed) if stage else config.budget
            if budget is None:
                break  # not even the next stage's own scoring fits: the pipeline ends here
            run_id = stage_run_id(first, stage) if first else None
            if store is not None and run_id and stage and not _has_run(store, run_id):
                store.create_run(optimizer.name, {**config.raw, "pipeline_of": first, "stage": stage}, run_id)
            settings = RunSettings(
                task_model=config.model,
                reasoning_model=config.reasoning_model,
                budget=budget,
                stop=stop or NoImprovement(10**9),
                seed=config.seed,
                on_event=on_event,
                acceptance=config.acceptance,
            )
            result = optimizer.optimize(
                prompt,
                splits,
                prepared.metric,
                client=prepared.client,
                settings=settings,
                store=store,
                run_id=run_id,
            )
            results.append(result)
            prompt = result.best.prompt
        return results[0] if len(results) == 1 else combine(results)
    finally:
        prepared.client.close()
        if store is not None:
            store.close()


def _has_run(store: RunStore, run_id: str) -> bool:
    try:
        store.run(run_id)
    except ConfigError:
        return False
    return True


def split_warnings(config: RunConfig, gain: float = 0.10) -> list[str]:
    """Before a run: the splits too small for a paired test to detect ``gain`` (0.10 = 10 points)."""
    _, splits = load_splits(config)
    return split_advice({"validation": len(splits.validation), "test": len(splits.test)}, gain)


def evaluate_config(config: RunConfig) -> dict[str, Any]:
    """Score the config's prompt on validation and test; no optimizer, no store."""
    prepared = prepare(config)
    started = time.monotonic()
    evaluator = Evaluator(prepared.client, prepared.metric, config.model)

    async def both() -> tuple[Evaluation, Evaluation]:
        return (
            await evaluator.evaluate(config.prompt, prepared.splits.validation),
            await evaluator.evaluate(config.prompt, prepared.splits.test),
        )

    try:
        validation, test = asyncio.run(both())
    finally:
        prepared.client.close()
    spend = validation.spend + test.spend
    return {
        "model": config.model,
        "prompt": config.prompt.to_dict(),
        "validation_score": validation.mean,
        "validation_score_ci": score_interval(validation.scores).to_list(),
        "test_score": test.mean,
        "test_score_ci": score_interval(test.scores).to_list(),
        "validation_rows": len(validation.rows),
        "test_rows": len(test.rows),
        "calls": spend.calls,
        "cost_usd": spend.cost_usd,
        "duration_s": round(time.monotonic() - started, 3),
        "validation": validation.to_dict(),
        "test": test.to_dict(),
    }
