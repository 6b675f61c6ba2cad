"""The run config (YAML): parsed into typed objects, every mistake named with its key and fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptlift.client.config import ModelPrice, ModelSpec, RateLimit
from promptlift.client.retry import RetryPolicy
from promptlift.errors import ConfigError
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Acceptance, Budget

DEFAULT_MODEL = "local/gemma-3-270m"
TOP_KEYS = {
    "model",
    "reasoning_model",
    "api_base",
    "prompt",
    "dataset",
    "metric",
    "optimizer",
    "budget",
    "seed",
    "store",
    "concurrency",
    "timeout",
    "cache",
    "acceptance",
    "retry",
    "rate_limits",
    "prices",
    "allowed_hosts",
}
RETRY_KEYS = ("max_attempts", "initial_wait", "max_wait", "deadline", "attempts_per_error")
RATE_KEYS = ("scope", "rpm", "tpm", "burst_s")
MODEL_KEYS = ("model", "api_base", "api_key_env", "extra")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    path: Path
    models: tuple[str, ...]
    reasoning_model: str
    api_base: str | None
    prompt: Prompt
    dataset_path: Path
    split: Mapping[str, float]
    metric: Mapping[str, Any]
    optimizers: tuple[OptimizerSpec, ...]
    budget: Budget
    seed: int
    store: Path | None
    cache: Path | None  # the response cache file: a resumed run re-pays no answered call
    concurrency: int
    timeout: float
    raw: Mapping[str, Any]
    acceptance: Acceptance = field(default_factory=Acceptance)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # per model, before falling back
    rate_limits: tuple[RateLimit, ...] = ()
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)  # USD per 1M tokens, over the price map
    # The chain as given: a name, or a ModelSpec where `model:` gave a mapping (its own endpoint...).
    chain: tuple[str | ModelSpec, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None  # the only hosts calls may go to; None: any

    @property
    def client_models(self) -> tuple[str | ModelSpec, ...]:
        """The chain for ``ClientConfig.models``: each model with its own settings."""
        return self.chain or self.models

    @property
    def model(self) -> str:
        return self.models[0]


def _need(mapping: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}: missing `{key}`")
    value = mapping[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: `{key}` must be a {names}, got {type(value).__name__} {value!r}")
    return value


def _optimizers(value: Any, where: str) -> tuple[OptimizerSpec, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: `optimizer` is an empty list; name at least one optimizer")
    specs = []
    for item in items:
        if isinstance(item, str):
            specs.append(OptimizerSpec(item))
        elif isinstance(item, Mapping):
            name = _need(item, "name", f"{where}: optimizer", str)
            params = item.get("params") or {}
            if not isinstance(params, Mapping):
                raise ConfigError(f"{where}: optimizer `params` must be a mapping, got {params!r}")
            specs.append(OptimizerSpec(name, dict(params)))
        else:
            raise ConfigError(f"{where}: `optimizer` must be a name, {{name, params}} or a list of them")
    return tuple(specs)


def _budget(value: Any, where: str) -> Budget:
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: `budget` must be a mapping like {{max_calls: 400}}")
    _only(value, ("max_calls", "max_cost_usd", "max_minutes"), "budget", where)
    for key, v in value.items():
        _positive(v, f"budget `{key}`", where)
    return Budget(value.get("max_calls"), value.get("max_cost_usd"), value.get("max_minutes"))


def _prompt(value: Any, where: str) -> Prompt:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: `prompt` must be a mapping with `user:` (and optionally `system:`)")
    user = _need(value, "user", f"{where}: prompt", str)
    system = value.get("system") or ""
    params = value.get("params") or {}
    if not isinstance(system, str) or not isinstance(params, Mapping):
        raise ConfigError(f"{where}: prompt `system` must be text and `params` a mapping")
    return Prompt(user=user, system=system, params=dict(params))


def _model_chain(value: Any, where: str) -> tuple[str | ModelSpec, ...]:
    """``model:`` as a name, a mapping ``{model, api_base, api_key_env, extra}``, or a list of
    either (a fallback chain, each model with its own endpoint, key variable and parameters)."""
    models = value if isinstance(value, list) else [value or DEFAULT_MODEL]
    if not models:
        raise ConfigError(f"{where}: `model` is an empty list; name at least one model")
    chain: list[str | ModelSpec] = []
    for i, item in enumerate(models):
        at = f"{where}: model[{i}]" if isinstance(value, list) else f"{where}: model"
        if isinstance(item, str) and item:
            chain.append(item)
        elif isinstance(item, Mapping):
            chain.append(model_spec(item, at))
        else:
            raise ConfigError(
                f"{at} must be a model name or a mapping like {{model: openai/gpt-4o-mini, "
                f"api_base: URL, api_key_env: MY_KEY}}, got {type(item).__name__}"
            )
    return tuple(chain)


def model_spec(item: Mapping[str, Any], where: str) -> ModelSpec:
    """One `model:` mapping (of a config, or of `--model`) as a ModelSpec; a key in it is refused."""
    if "api_key" in item:  # never quoted: the value is a key
        raise ConfigError(
            f"{where}: a key in the config file would be stored with every run; put it in an "
            "environment variable and name it with `api_key_env`"
        )
    _only(item, MODEL_KEYS, "model", where)
    name = _need(item, "model", where, str)
    for key in ("api_base", "api_key_env"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise ConfigError(f"{where}: `{key}` must be text, got {type(item[key]).__name__}")
    extra = item.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(
            f"{where}: `extra` must be a mapping of LiteLLM parameters, like {{api_version: v}}"
        )
    try:
        return ModelSpec(
            name, api_base=item.get("api_base"), api_key_env=item.get("api_key_env"), extra=extra
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _allowed_hosts(
    value: Any, raw: Mapping[str, Any], chain: tuple[str | ModelSpec, ...], where: str
) -> tuple[str, ...] | None:
    """``allowed_hosts: [api.openai.com, .openai.azure.com]``: the only hosts calls may go to. The
    config's own endpoints are checked here, before any call (a dry run says so too)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(h, str) and h.strip() for h in items):
        raise ConfigError(
            f"{where}: `allowed_hosts` must be a list of host names, like [api.openai.com, .openai.azure.com]"
        )
    hosts = tuple(h.strip() for h in items)
    from promptlift.providers.credentials import check_host

    if isinstance(raw.get("api_base"), str):
        check_host(raw["api_base"], hosts)
    for spec in chain:
        if isinstance(spec, ModelSpec) and spec.api_base:
            check_host(spec.api_base, hosts, what=f"the api_base of {spec.model}")
    return hosts


def _cache(value: Any, path: Path, store: Any) -> Path | None:
    """``cache: false`` turns it off; ``cache: FILE`` names it; by default it lives in the store."""
    if value is False or value is None:
        return None
    if isinstance(value, str):
        return path.parent / value
    if value is True:
        return (path.parent / str(store) / "cache.sqlite") if store else None
    raise ConfigError(f"{path}: `cache` must be a file path, true or false, got {value!r}")


def _only(mapping: Mapping[str, Any], keys: tuple[str, ...], what: str, where: str) -> None:
    unknown = set(mapping) - set(keys)
    if unknown:
        raise ConfigError(f"{where}: unknown {what} key `{sorted(unknown)[0]}`; use {', '.join(keys)}")


def _positive(value: Any, what: str, where: str, *, whole: bool = False) -> float | None:
    if value is None:
        return None
    bad = isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    if bad or value <= 0 or (whole and value % 1):
        kind = "a positive whole number" if whole else "a positive number"
        raise ConfigError(f"{where}: {what} must be {kind} or null, got {value!r}")
    return float(value)


def _retry(value: Any, where: str) -> RetryPolicy:
    """``retry: {max_attempts: 6, initial_wait: 1, max_wait: 60, deadline: 600}``: per model."""
    if value is None:
        return RetryPolicy()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: `retry` must be a mapping like {{max_attempts: 6, max_wait: 60}}")
    _only(value, RETRY_KEYS, "retry", where)
    numbers = {
        k: _positive(v, f"retry `{k}`", where, whole=k == "max_attempts")
        for k, v in value.items()
        if k != "attempts_per_error"
    }
    per_error = value.get("attempts_per_error") or {}
    if not isinstance(per_error, Mapping):
        raise ConfigError(
            f"{where}: retry `attempts_per_error` must map error names to attempts, like {{RateLimited: 8}}"
        )
    for name, n in per_error.items():
        if _positive(n, f"retry attempts for {name}", where, whole=True) is None:
            raise ConfigError(f"{where}: retry attempts for {name} must be a positive whole number, got null")
    kwargs: dict[str, Any] = {k: v for k, v in numbers.items() if v is not None}
    if "max_attempts" in kwargs:
        kwargs["max_attempts"] = int(kwargs["max_attempts"])
    try:
        return RetryPolicy(**kwargs, attempts_per_error={str(k): int(n) for k, n in per_error.items()})
    except ConfigError as exc:
        raise ConfigError(f"{where}: retry: {exc}") from None


def _rate_limits(value: Any, where: str) -> tuple[RateLimit, ...]:
    """``rate_limits: [{scope: openai/gpt-4o-mini, rpm: 500, tpm: 200000}]`` (or one mapping); calls
    over a limit wait their turn."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    limits = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{where}: each of `rate_limits` must be a mapping like {{scope: openai, rpm: 500}}"
            )
        _only(item, RATE_KEYS, "rate_limits", where)
        scope = item.get("scope", "*")
        if not isinstance(scope, str) or not scope:
            raise ConfigError(f"{where}: rate_limits `scope` must be a model, a provider or *, got {scope!r}")
        rpm, tpm = (_positive(item.get(k), f"rate_limits `{k}`", where) for k in ("rpm", "tpm"))
        if rpm is None and tpm is None:
            raise ConfigError(f"{where}: a rate limit for {scope!r} needs `rpm` or `tpm`")
        burst = _positive(item.get("burst_s"), "rate_limits `burst_s`", where) or 1.0
        limits.append(RateLimit(scope, rpm, tpm, burst))
    return tuple(limits)


def _prices(value: Any, where: str) -> dict[str, ModelPrice]:
    """``prices: {azure/my-deployment: [0.15, 0.60]}``: USD per million input and output tokens,
    for models the price map does not know (a deployment name, a fine-tune, a server of your own)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: `prices` must map models to [input, output] USD per 1M tokens")
    out = {}
    for model, price in value.items():
        pair = [price.get("input"), price.get("output")] if isinstance(price, Mapping) else price
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or any(
                isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x < 0
                for x in pair
            )
        ):
            raise ConfigError(
                f"{where}: the price of {model} must be [input, output] USD per 1M tokens, like [0.15, 0.60] "
                f"(0 for a free server), got {price!r}"
            )
        out[str(model)] = ModelPrice(float(pair[0]), float(pair[1]))
    return out


def _scoped(
    limits: tuple[RateLimit, ...], raw: Mapping[str, Any], models: tuple[str, ...], where: str
) -> tuple[RateLimit, ...]:
    """Every limit must apply to a model of the run: a misspelt scope would silently limit nothing."""
    metric: Mapping[str, Any] = raw["metric"] if isinstance(raw.get("metric"), Mapping) else {}
    used = {*models, str(raw.get("reasoning_model") or models[0])}
    if metric.get("model"):
        used.add(str(metric["model"]))
    for limit in limits:
        if limit.scope != "*" and not any(m == limit.scope or m.startswith(limit.scope + "/") for m in used):
            raise ConfigError(
                f"{where}: the rate limit scope {limit.scope!r} matches none of the run's models "
                f"({', '.join(sorted(used))}); use one of them, its provider (like openai) or *"
            )
    return limits


def _acceptance(value: Any, where: str) -> Acceptance:
    """``acceptance: {rule: significant, alpha: 0.05}``: see ``promptlift.optimize.run.Acceptance``."""
    if value is None:
        return Acceptance()
    if not isinstance(value, Mapping) or set(value) - {"rule", "alpha"}:
        raise ConfigError(f"{where}: `acceptance` must be a mapping like {{rule: significant, alpha: 0.05}}")
    rule, alpha = value.get("rule", "best"), value.get("alpha", 0.05)
    if rule not in ("best", "significant"):
        raise ConfigError(f"{where}: acceptance `rule` must be best or significant, got {rule!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise ConfigError(f"{where}: acceptance `alpha` must be a number between 0 and 0.5, got {alpha!r}")
    return Acceptance(rule, float(alpha))


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    where = str(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key `{sorted(unknown)[0]}`; known keys: {', '.join(sorted(TOP_KEYS))}"
        )
    dataset = _need(raw, "dataset", where, Mapping)
    split = dataset.get("split") or {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 0}
    if not isinstance(split, Mapping) or not {"train", "validation", "test"} <= set(split):
        raise ConfigError(f"{where}: dataset `split` needs train, validation and test fractions")
    metric = _need(raw, "metric", where, Mapping)
    _need(metric, "type", f"{where}: metric", str)
    chain = _model_chain(raw.get("model"), where)
    models = tuple(m.model if isinstance(m, ModelSpec) else m for m in chain)
    store = raw.get("store")
    return RunConfig(
        path=path,
        models=models,
        reasoning_model=str(raw.get("reasoning_model") or models[0]),
        api_base=raw.get("api_base"),
        prompt=_prompt(raw.get("prompt"), where),
        dataset_path=(path.parent / str(_need(dataset, "path", f"{where}: dataset", str))),
        split=dict(split),
        metric=dict(metric),
        optimizers=_optimizers(raw.get("optimizer") or "fewshot", where),
        budget=_budget(raw.get("budget"), where),
        seed=int(raw.get("seed") or 0),
        store=(path.parent / str(store)) if store else None,
        cache=_cache(raw.get("cache", True), path, store),
        concurrency=int(raw.get("concurrency") or 8),
        timeout=float(raw.get("timeout") or 120.0),
        raw=raw,
        acceptance=_acceptance(raw.get("acceptance"), where),
        retry=_retry(raw.get("retry"), where),
        rate_limits=_scoped(_rate_limits(raw.get("rate_limits"), where), raw, models, where),
        prices=_prices(raw.get("prices"), where),
        chain=chain if any(isinstance(m, ModelSpec) for m in chain) else (),
        allowed_hosts=_allowed_hosts(raw.get("allowed_hosts"), raw, chain, where),
    )
