"""From a config to a result: build the client, data, metric and optimizer, run, record.

This is what ``promptlift optimize`` and ``promptlift eval`` call; library users can call
``run_config`` too, or assemble the pieces themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.client import Client, ClientConfig
from promptlift.client.config import CacheConfig
from promptlift.errors import ConfigError
from promptlift.optimize.config import RunConfig
from promptlift.optimize.dataset import Dataset, Splits, split
from promptlift.optimize.evaluation import Evaluation, Evaluator
from promptlift.optimize.metrics import Metric, metric_fields, metric_from_config
from promptlift.optimize.optimizers import build_optimizer
from promptlift.optimize.pipeline import combine, remaining_budget, stage_run_id
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Event, RunSettings
from promptlift.optimize.schema import suggest
from promptlift.optimize.stats import score_interval, split_advice
from promptlift.optimize.stop import NoImprovement, StopRule
from promptlift.optimize.store import RunStore


@dataclass(frozen=True)
class Prepared:
    client: Client
    splits: Splits
    metric: Metric


def load_splits(config: RunConfig) -> tuple[Dataset, Splits]:
    """Load the dataset, check the prompt's placeholders and every field the metric and the
    optimizers read against it, split it: no call is made, nothing is written."""
    dataset = Dataset.load(config.dataset_path)
    config.prompt.check(dataset.fields)
    check_fields(config, dataset.fields)
    for what, path in (("store", _store_file(config.store)), ("cache", config.cache)):
        if path is not None:
            check_sqlite_file(path, f"{config.path}: `{what}`")
    s = config.split
    splits = split(
        dataset, float(s["train"]), float(s["validation"]), float(s["test"]), int(s.get("seed", 0))
    )
    return dataset, splits


def check_fields(config: RunConfig, fields: Sequence[str]) -> None:
    """The fields the metric (and a fewshot's ``answer_field``) read must be the dataset's own."""
    used = [(f"metric.{key}", name) for key, name in metric_fields(config.metric)]
    for spec in config.optimizers:
        if "answer_field" in spec.params:
            used.append((f"optimizer {spec.name} answer_field", str(spec.params["answer_field"])))
    for key, name in used:
        if name not in fields:
            raise ConfigError(
                f"{config.path}: `{key}` is {name!r}, which the dataset's rows do not have "
                f"(fields: {', '.join(fields)}){suggest(name, fields)}"
            )


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _store_file(store: Path | None) -> Path | None:
    if store is None:
        return None
    return store / "runs.sqlite" if store.suffix == "" or store.is_dir() else store


def check_sqlite_file(path: Path, what: str) -> None:
    """A store or cache path must be an SQLite file or not exist yet (it is created on first use):
    a text file or a folder there is refused before any call, and never written to."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; name an SQLite file (like cache.sqlite)")
    if not path.exists():
        return
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror})") from None
    if head and head != _SQLITE_MAGIC:
        raise ConfigError(f"{what} {path} is not an SQLite file; name a new file or an SQLite one")


def prepare(config: RunConfig) -> Prepared:
    """Load and check everything before any call is made."""
    dataset, splits = load_splits(config)
    client = Client(
        ClientConfig(
            models=config.models,
            api_base=config.api_base,
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
    metric = metric_from_config(
        config.metric, field_values=values, client=client, base_dir=config.path.parent
    )
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
