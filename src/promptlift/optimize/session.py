"""From a config to a result: build the client, data, metric and optimizer, run, record.

This is what ``promptlift optimize`` and ``promptlift eval`` call; library users can call
``run_config`` too, or assemble the pieces themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.blocking import run_blocking
from promptlift.client import Client, ClientConfig
from promptlift.client.config import Budget as ClientBudget
from promptlift.client.config import CacheConfig
from promptlift.client.provider_batch import FileJobStore
from promptlift.errors import BudgetExceeded, ConfigError
from promptlift.optimize.config import RunConfig
from promptlift.optimize.dataset import Dataset, Splits, duplicates, split
from promptlift.optimize.evaluation import BatchScoring, Evaluation, Evaluator, check_batch_scoring
from promptlift.optimize.metrics import Metric, metric_fields, metric_from_config
from promptlift.optimize.optimizers import build_optimizer
from promptlift.optimize.optimizers.fewshot import check_demo_answers
from promptlift.optimize.pipeline import Pipeline
from promptlift.optimize.plan import Plan, make_plan, refuse_budget_below_start
from promptlift.optimize.program import Optimizable, Program
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Event, RunSettings
from promptlift.optimize.schema import suggest
from promptlift.optimize.stats import Uncertainty, compare, score_interval, split_advice
from promptlift.optimize.stop import NoImprovement, StopRule
from promptlift.optimize.store import RunStore
from promptlift.paths import check_creatable
from promptlift.secrets import redact


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
    for spec in config.optimizers:
        answer_field = spec.params.get("answer_field", config.metric.get("field"))
        if spec.name == "fewshot" and answer_field and isinstance(config.prompt, Prompt):
            try:
                check_demo_answers(config.prompt, dataset, str(answer_field))
            except ConfigError as exc:
                raise ConfigError(f"{config.path}: {exc}") from None
    for what, path in (("store", _store_file(config.store)), ("cache", config.cache)):
        if isinstance(path, Path):  # not a redis:// URL
            check_sqlite_file(path, f"{config.path}: `{what}`")
    s = config.split
    fractions = float(s["train"]), float(s["validation"]), float(s["test"])
    splits = split(dataset, *fractions, seed=int(s.get("seed", 0)), inputs=config.prompt.fields())
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
        # nothing created: the nearest folder of it that exists must be one this process may write in
        store = "`store`" in what  # a folder, runs.sqlite inside it
        check_creatable(path, what, kind="folder" if store else "file", target=path.parent if store else path)
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
            models=config.client_models,
            api_base=config.api_base,
            allowed_hosts=config.allowed_hosts,
            transport=config.transport,
            prompt_cache=config.prompt_cache,
            timeout=config.timeout,
            concurrency=config.concurrency,
            cache=CacheConfig(path=str(config.cache)) if config.cache else None,
            retry=config.retry,
            rate_limits=config.rate_limits,
            prices=dict(config.prices),
            fallback=config.fallback,
            tracing=config.tracing,
        )
    )
    field = config.metric.get("field")
    values = [str(r[field]) for r in dataset] if field in dataset.fields else []
    metric = metric_from_config(
        config.metric, field_values=values, client=client, base_dir=config.path.parent
    )
    # Every model the run will call, checked before the first call: a reasoning model or a judge
    # without a key must not be found after the task model's calls are paid for.
    judge = config.metric.get("model") if config.metric.get("type") == "llm_judge" else None
    try:
        client.preflight(
            *client.config.chain, config.reasoning_model or config.model, *([judge] if judge else [])
        )
    except BaseException:
        client.close()
        raise
    return Prepared(client, splits, metric)


def run_config(
    config: RunConfig,
    *,
    on_event: Event | None = None,
    resume: str | None = None,
    stop: StopRule | None = None,
    new_run: bool = False,
    plan: Plan | None = None,
) -> OptimizationResult:
    """Run the config's optimizer, or its pipeline (``optimizer:`` as a list) in order: each stage
    starts from the previous stage's best prompt, with what is left of the run's budget, and the
    result keeps every stage (``pipeline.PipelineResult``).

    ``resume`` continues a stored run; a config that changed what the search does since (see
    ``run_identity``) is refused with a ``ConfigError`` naming what changed, unless ``new_run``:
    then a new run starts from this config (recorded with ``resumed_from``).

    ``plan`` (``plan.make_plan(config)``, made here when not given) is what the run's spend is
    watched against: running at twice its high estimate per call raises a ``pace`` alert. It is
    stored with a new run, for plan vs spend; a resumed run keeps the plan it started with."""
    plan = plan or make_plan(config)
    prepared = prepare(config)
    calls_per_row = Evaluator(prepared.client, prepared.metric, config.model).calls_per_row(config.prompt)
    try:
        refuse_budget_below_start(
            config.budget, len(prepared.splits.validation), len(prepared.splits.test), calls_per_row
        )
    except ConfigError:
        prepared.client.close()
        raise
    field = config.metric.get("field")
    optimizers = [
        build_optimizer(s.name, s.params, answer_field=field, base_dir=config.path.parent)
        for s in config.optimizers
    ]
    store = RunStore(config.store) if config.store else None
    first = resume
    if store is not None:
        params = [o.params() for o in optimizers]
        identity = run_identity(config, params)
        if resume:
            changed = _changed(store.run(resume)["config"], identity)  # no such run: a clear error
            if changed and not new_run:
                store.close()
                raise ConfigError(
                    f"run {resume} was started with another config ({', '.join(changed)} changed): "
                    f"resuming it would mix two searches; resume it with its own config, or pass "
                    f"--new-run to start a new run from this one (cached answers are not paid again)"
                )
            first = None if changed else resume
            if first:
                try:  # running again, owned by this process; refused while its own process is alive
                    store.claim_run(first)
                except ConfigError:
                    store.close()
                    prepared.client.close()
                    raise
        if first is None:
            record = {**config.raw, "optimizer_params": params[0], "pipeline": params, "identity": identity}
            first = store.create_run(
                optimizers[0].name,
                {**record, **({"resumed_from": resume} if resume else {})},
                plan=plan.to_dict(),
            )
    settings = RunSettings(
        task_model=config.model,
        reasoning_model=config.reasoning_model,
        budget=config.budget,
        stop=stop or NoImprovement(10**9),
        seed=config.seed,
        on_event=on_event,
        acceptance=config.acceptance,
        planned=(plan.calls.total, plan.cost_usd[1]) if plan.cost_usd else None,
        batch_test=BatchScoring(config.batch_test) if config.batch_test else None,
    )
    try:
        return Pipeline(optimizers).optimize(
            config.prompt,
            prepared.splits,
            prepared.metric,
            client=prepared.client,
            settings=settings,
            store=store,
            run_id=first,
            record=config.raw,
        )
    finally:
        prepared.client.close()
        if store is not None:
            store.close()


# What decides a run's search: the same values and data give the same search. Endpoints, keys,
# timeouts, retries, rate limits, concurrency and the cache only change how calls are made.
IDENTITY_KEYS = (
    "model", "reasoning_model", "prompt", "dataset", "metric", "optimizer", "budget", "seed",
    "acceptance", "prices", "program", "prompts", "calls_per_row",
)  # fmt: skip


def run_identity(config: RunConfig, params: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of ``config`` that decide its search, as stored with the run, plus a digest of the
    dataset's rows (an edited data file changes the search as much as an edited config)."""
    rows = Dataset.load(config.dataset_path).rows
    digest = hashlib.sha256(json.dumps([r.fields for r in rows], sort_keys=True, default=str).encode())
    out = {k: config.raw.get(k) for k in IDENTITY_KEYS}
    for key in ("model", "reasoning_model"):
        out[key] = _search_models(out[key])
    out = {**out, "optimizer_params": params, "dataset_rows": digest.hexdigest()[:20]}
    if isinstance(config.prompt, Program):  # an edited program changes the search as an edited prompt does
        out["program_source"] = config.prompt.source_digest()
    return out


# A `model:` mapping's keys that say where and with which key its calls go, not what they ask (the
# store also redacts an endpoint's query credentials, so a stored one would never compare equal).
_CALL_KEYS = frozenset({"api_base", "api_key_env", "replicas"})
_EXTRA_CALL_KEYS = frozenset({"api_base", "base_url", "api_key", "api_version"})


def _search_models(value: Any) -> Any:
    """``model:`` as the search sees it: each mapping without its endpoint and key."""
    if isinstance(value, list):
        return [_search_models(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    out = {k: v for k, v in value.items() if k not in _CALL_KEYS}
    extra = out.get("extra")
    if isinstance(extra, Mapping):
        out["extra"] = {k: v for k, v in extra.items() if k not in _EXTRA_CALL_KEYS}
    return out["model"] if set(out) <= {"model", "extra"} and not out.get("extra") else out


def _changed(stored: Mapping[str, Any], identity: Mapping[str, Any]) -> list[str]:
    """The identity keys whose value differs from the stored run's (runs stored before identities
    were recorded are compared on their config's keys)."""
    old = stored.get("identity") or {k: stored.get(k) for k in IDENTITY_KEYS}

    def canon(value: Any) -> str:
        if isinstance(value, list) and len(value) == 1:  # `model: [x]` is `model: x`
            value = value[0]
        # The store holds its config redacted (secrets.redact): both sides are compared redacted.
        return redact(json.dumps(value, sort_keys=True, default=str))

    changed = [k for k in identity if k in old and canon(old[k]) != canon(identity[k])]
    if "optimizer_params" in changed and _optimizer_names(old.get("optimizer")) == _optimizer_names(
        identity.get("optimizer")
    ):  # the same optimizers with other params: `optimizer:` differs only by those params
        changed = [k for k in changed if k != "optimizer"]
    return changed


def _optimizer_names(value: Any) -> list[Any]:
    """``optimizer:`` as its names: a name, a ``{name, params}`` mapping, or a list (a pipeline)."""
    items = value if isinstance(value, list) else [value]
    return [item.get("name") if isinstance(item, Mapping) else item for item in items]


def split_warnings(config: RunConfig, gain: float = 0.10) -> list[str]:
    """Before a run: rows that repeat another row's inputs, and the splits too small for a paired
    test to detect ``gain`` (0.10 = 10 points)."""
    dataset, splits = load_splits(config)
    out = [_duplicate_warning(dataset, config.prompt.fields())]
    out += split_advice({"validation": len(splits.validation), "test": len(splits.test)}, gain)
    return [w for w in out if w]


def _duplicate_warning(dataset: Dataset, inputs: list[str]) -> str:
    groups = duplicates(dataset, inputs)
    if not groups:
        return ""
    extra = sum(len(g) - 1 for g in groups)
    rows = " = ".join(f"row {i + 1}" for i in groups[0][:3])
    return (
        f"{dataset.source}: {extra} of {len(dataset)} rows repeat another row's inputs ({rows}"
        f"{', ...' if len(groups) > 1 or len(groups[0]) > 3 else ''}); identical inputs are kept in one "
        f"split so the test score is not inflated, but each still counts as a row: remove the duplicates "
        f"to score each input once"
    )


def evaluate_config(
    config: RunConfig, *, prompt: Optimizable | None = None, batch: BatchScoring | None = None
) -> dict[str, Any]:
    """Score the config's prompt (or ``prompt``) on validation and test; no optimizer, no store.
    ``batch``: the task calls as provider Batch API jobs (``optimize.evaluation.BatchScoring``)."""
    return evaluate_prompts(config, [prompt or config.prompt], batch=batch)[0]


def evaluate_prompts(
    config: RunConfig, prompts: Sequence[Optimizable], *, batch: BatchScoring | None = None
) -> list[dict[str, Any]]:
    """Score each prompt on validation and test, one after another, within the config's one budget
    (calls, dollars and minutes over all of them)."""
    if batch is not None:
        for candidate in prompts:
            check_batch_scoring(candidate, config.model)
    prepared = prepare(config)
    started = time.monotonic()
    evaluator = Evaluator(prepared.client, prepared.metric, config.model)
    budget = config.budget
    rows = len(prepared.splits.validation) + len(prepared.splits.test)
    needed = rows * sum(evaluator.calls_per_row(p) for p in prompts)
    if budget.max_calls is not None and needed > budget.max_calls:
        prepared.client.close()
        each = f"{len(prompts)} prompts × " if len(prompts) > 1 else ""
        raise ConfigError(
            f"eval needs {needed} calls ({each}{len(prepared.splits.validation)} "
            f"validation + {len(prepared.splits.test)} test rows) but budget.max_calls is "
            f"{budget.max_calls:g}; raise it or use smaller splits"
        )

    tracer = prepared.client.tracer

    async def evaluated(prompt: Optimizable, split: str, rows: Dataset) -> Evaluation:
        attrs: dict[str, str | int] = {
            "promptlift.evaluation.split": split,
            "promptlift.evaluation.rows": len(rows),
        }
        with tracer.span("promptlift.evaluation", attrs) as span:
            jobs = eval_job_store(config, prompt, split) if batch is not None else None
            evaluation = await evaluator.evaluate(prompt, rows, batch=batch, job_store=jobs)
            span.update(
                {
                    "promptlift.evaluation.score": evaluation.mean,
                    "promptlift.cost_usd": evaluation.spend.cost_usd,
                }
            )
            return evaluation

    async def every() -> list[tuple[Evaluation, Evaluation, float]]:
        out = []
        with tracer.span("promptlift.eval", {"promptlift.task_model": config.model}):
            for prompt in prompts:
                began = time.monotonic()
                validation = await evaluated(prompt, "validation", prepared.splits.validation)
                test = await evaluated(prompt, "test", prepared.splits.test)
                out.append((validation, test, time.monotonic() - began))
        return out

    async def capped() -> list[tuple[Evaluation, Evaluation, float]]:
        # The same hard dollar cap as a run's: a cost cap on a model with no known price is refused
        # before any call, and no call is sent past the cap.
        cap = budget.max_cost_usd
        with prepared.client.budget_scope(ClientBudget(max_cost_usd=cap), "eval") if cap else nullcontext():
            if budget.max_minutes is None:
                return await every()
            try:
                return await asyncio.wait_for(every(), budget.max_minutes * 60)
            except TimeoutError:
                raise BudgetExceeded(
                    f"eval ran past budget.max_minutes ({budget.max_minutes:g})", limit="max_minutes"
                ) from None

    try:
        scored = run_blocking(capped())
    finally:
        prepared.client.close()
    reports = []
    for prompt, (validation, test, seconds) in zip(prompts, scored, strict=True):
        spend = validation.spend + test.spend
        reports.append(
            {
                "model": config.model,
                "prompt": prompt.to_dict(),
                "validation_score": validation.mean,
                "validation_score_ci": score_interval(validation.scores).to_list(),
                "test_score": test.mean,
                "test_score_ci": score_interval(test.scores).to_list(),
                "validation_rows": len(validation.rows),
                "test_rows": len(test.rows),
                "calls": spend.calls,
                "cost_usd": spend.cost_usd,
                "cached_input_tokens": spend.cached_input_tokens,  # read from the provider's prompt cache
                "cache_saved_usd": spend.cache_saved_usd,
                **({"batch_saved_usd": spend.batch_saved_usd} if batch is not None else {}),
                "duration_s": round(seconds if len(prompts) > 1 else time.monotonic() - started, 3),
                "validation": validation.to_dict(),
                "test": test.to_dict(),
            }
        )
    return reports


def eval_job_store(config: RunConfig, prompt: Optimizable, split: str) -> FileJobStore | None:
    """Where ``eval --provider-batch`` keeps a split's job id until its answers are in: a file in
    the config's run store folder (``eval-batch-<digest>.json``), so a killed eval run again with
    the same config resumes the job instead of paying for a new one. None without a store."""
    if config.store is None:
        return None
    base = Path(config.store)
    folder = base if base.suffix == "" or base.is_dir() else base.parent
    what = [prompt.key(), config.model, split, str(config.dataset_path), dict(config.split)]
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return FileJobStore(str(folder / f"eval-batch-{digest}.json"))


def gate_config(config: RunConfig, baseline: Optimizable, *, alpha: float = 0.05) -> dict[str, Any]:
    """The regression gate: the config's prompt against ``baseline`` on the same test rows, paired
    (exact McNemar for 0/1 scores, a paired bootstrap otherwise). ``regressed`` is true when the
    prompt is significantly worse at ``alpha``; ``fixed`` and ``broken`` count the rows that went
    from below to at-or-above the baseline's score and back."""
    base, candidate = evaluate_prompts(config, [baseline, config.prompt])
    before = [float(r["score"]) for r in base["test"]["rows"]]
    after = [float(r["score"]) for r in candidate["test"]["rows"]]
    comparison = compare(before, after, Uncertainty(level=1.0 - alpha))
    pairs = list(zip(before, after, strict=True))
    broken = [r["index"] for r, (b, a) in zip(candidate["test"]["rows"], pairs, strict=True) if a < b]
    return {
        "baseline": base,
        "candidate": candidate,
        "gain": comparison.to_dict(),
        "alpha": alpha,
        "rows": len(pairs),
        "fixed": sum(1 for b, a in pairs if a > b),
        "broken": len(broken),
        "broken_rows": broken,  # dataset row indices, for a look at what broke
        "regressed": comparison.verdict == "worse",
        "calls": base["calls"] + candidate["calls"],
        "cost_usd": base["cost_usd"] + candidate["cost_usd"],
    }
