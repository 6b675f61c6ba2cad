"""The run config (YAML): parsed into typed objects, every mistake named with its key and fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptlift.client.catalog import route_problem
from promptlift.client.config import ModelPrice, ModelSpec, RateLimit, TracingConfig
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.provider_batch import PollPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.client.shared import is_redis_url
from promptlift.errors import ConfigError, TemplateError, UserError
from promptlift.optimize.agent import DEFAULT_MAX_STEPS
from promptlift.optimize.metrics import check_metric
from promptlift.optimize.program import Optimizable, Program, load_program
from promptlift.optimize.prompt import Demo, Prompt, Turn, check_params, placeholders
from promptlift.optimize.run import Acceptance, Budget
from promptlift.optimize.schema import (
    At,
    Check,
    Schema,
    any_text,
    choice,
    flag,
    mapping,
    number,
    optional,
    refuse_unknown,
    suggest,
    text,
    whole,
)
from promptlift.optimize.structured import config_output_schema
from promptlift.optimize.tools import Tool

DEFAULT_MODEL = "local/gemma-3-270m"
TOP_KEYS = {
    "model",
    "reasoning_model",
    "api_base",
    "prompt",
    "program",
    "prompts",
    "calls_per_row",
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
    "fallback",
    "transport",
    "prompt_cache",
    "tracing",
    "provider_batch",
}
RETRY_KEYS = ("max_attempts", "initial_wait", "max_wait", "deadline", "attempts_per_error")
RATE_KEYS = ("scope", "rpm", "tpm", "burst_s", "shared", "key_prefix", "on_unreachable")
MODEL_KEYS = ("model", "api_base", "api_key_env", "extra", "replicas")


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
    prompt: Optimizable  # `prompt:`, or a `program:` over named `prompts:`
    dataset_path: Path
    split: Mapping[str, float]
    metric: Mapping[str, Any]
    optimizers: tuple[OptimizerSpec, ...]
    budget: Budget
    seed: int
    store: Path | None
    # the response cache: a file or a redis:// URL; a resumed run re-pays no answered call
    cache: Path | str | None
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
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)  # the chain's breakers
    transport: str = "litellm"  # "native": OpenAI-compatible servers without LiteLLM (ClientConfig)
    prompt_cache: bool = True  # mark the shared prefix and warm the provider's cache (ClientConfig)
    tracing: TracingConfig | None = None  # OpenTelemetry spans (the otel extra); None: the OTEL_ variables
    # The final test scoring through a provider Batch API (optimize.evaluation.BatchScoring): how
    # to poll its job; None: scored live.
    batch_test: PollPolicy | None = None

    @property
    def client_models(self) -> tuple[str | ModelSpec, ...]:
        """The chain for ``ClientConfig.models``: each model with its own settings."""
        return self.chain or self.models

    @property
    def model(self) -> str:
        return self.models[0]


DEMO = Schema(
    {"fields": mapping, "answer": any_text},
    required=("fields", "answer"),
    example='{fields: {text: "..."}, answer: "..."}',
)


def _demos(value: Any, at: At) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        at.fail(f"a list of demos like {DEMO.example}", value)
    return [DEMO(item, at / i) for i, item in enumerate(value)]


TURN = Schema(
    {"role": choice("system", "user", "assistant"), "content": any_text, "history": text},
    example='{role: user, content: "Review: {text}"} or {history: conversation}',
)


def _turns(value: Any, at: At) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        at.fail(f"a list of messages like {TURN.example}", value)
    out = []
    for i, item in enumerate(value):
        turn = TURN(item, at / i)
        if "history" in turn and len(turn) > 1:
            raise (at / i).error(f"`{(at / i).path}`: a history slot is `{{history: FIELD}}` alone")
        if "history" not in turn and "content" not in turn:
            raise (at / i).error(f"`{(at / i).path}` needs `content:` (or is a `{{history: FIELD}}` slot)")
        out.append(turn)
    return out


TOOL = Schema(
    {
        "function": text,
        "name": text,
        "description": any_text,
        "parameters": mapping,
        "timeout_s": number(0.0, above=True),
    },
    example='{function: "tools:lookup"}',
)


def _tools(value: Any, at: At) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        at.fail(f"a list of tools like {TOOL.example}", value)
    return [TOOL(item, at / i) for i, item in enumerate(value)]


PROMPT = Schema(
    {
        "system": any_text,
        "user": text,
        # a multi-turn prompt: templated messages and {history: FIELD} slots, before `user`
        "messages": _turns,
        # what a run exports (Prompt.to_dict) loads back: the best prompt pastes into the next config
        "turns": _turns,
        "demos": _demos,
        "params": lambda value, at: check_params(value, at),
        "tools": _tools,
        "max_steps": whole(1),
        # a JSON schema, or {schema, name, strict}: sent as response_format, each answer validated
        "output_schema": config_output_schema,
    },
    example='{system: "...", user: "Review: {text}"}',
)
SPLIT = Schema(
    {
        # each split gets at least one row, so a fraction of 0 could only be ignored
        "train": number(0.0, above=True),
        "validation": number(0.0, above=True),
        "test": number(0.0, above=True),
        "seed": whole(None),
    },
    required=("train", "validation", "test"),
    example="{train: 0.5, validation: 0.25, test: 0.25, seed: 0}",
    defaults={"seed": 0},
)
DEFAULT_SPLIT = {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 0}
SPLIT_TOLERANCE = 0.02  # 0.33/0.33/0.33 is a third each; 0.9/0.5/0.5 is a mistake


def _split(value: Any, at: At) -> dict[str, Any]:
    """The three fractions, each above 0, summing to 1: they are not silently rescaled."""
    if value is None:
        return dict(DEFAULT_SPLIT)
    checked = SPLIT(value, at)
    total = sum(float(checked[k]) for k in ("train", "validation", "test"))
    if abs(total - 1.0) > SPLIT_TOLERANCE:
        raise at.error(
            f"`{at.path}` fractions sum to {total:g} (train {checked['train']:g} + validation "
            f"{checked['validation']:g} + test {checked['test']:g}); make them sum to 1"
        )
    return checked


DATASET = Schema(
    {"path": text, "split": _split},
    required=("path",),
    example="{path: reviews.jsonl}",
    defaults={"split": DEFAULT_SPLIT},
)
BUDGET = Schema(
    {
        "max_calls": optional(whole(1)),
        "max_cost_usd": optional(number(0.0, above=True)),
        "max_minutes": optional(number(0.0, above=True)),
        "max_tokens": optional(whole(1)),  # input + output tokens over every call of the run
    },
    example="{max_calls: 400}",
)
ACCEPTANCE = Schema(
    {"rule": choice("best", "significant"), "alpha": number(0.0, 0.5, above=True)},
    example="{rule: significant, alpha: 0.05}",
)
FALLBACK = Schema(
    {"failure_threshold": whole(0), "cooldown": number(0.0), "wait_for_probe": flag},
    example="{failure_threshold: 5, cooldown: 30, wait_for_probe: true}",
)
TRACING = Schema(
    {"otlp_endpoint": text, "capture_content": flag, "service_name": text},
    example="{otlp_endpoint: http://localhost:4318}",
)
PROVIDER_BATCH = Schema(
    {"test_scoring": flag, "poll_interval": number(0.0, above=True), "max_wait": number(0.0, above=True)},
    example="{test_scoring: true, poll_interval: 30, max_wait: 86400}",
)
# USD per 1M tokens; a rate left out is charged at the input (cache rates) or output (reasoning) rate.
PRICE = Schema(
    {
        "input": number(0.0),
        "output": number(0.0),
        "cached_input": number(0.0),
        "cache_write": number(0.0),
        "reasoning": number(0.0),
    },
    required=("input", "output"),
    example="{input: 0.15, output: 0.6, cached_input: 0.075}",
)
OPTIMIZER = Schema({"name": text, "params": mapping}, required=("name",), example="{name: fewshot}")
# The run-wide scalars; `model` and `api_base` are the endpoint part's shape and checked there.
SCALARS: dict[str, tuple[Check, Any]] = {
    "reasoning_model": (optional(text), None),
    "seed": (whole(None), 0),
    "concurrency": (whole(1), 8),
    "timeout": (number(0.0, above=True), 120.0),
    "store": (optional(text), None),
    "api_base": (optional(text), None),
    "transport": (choice("litellm", "native"), "litellm"),
    "prompt_cache": (flag, True),
}


def _check_tool_names(prompt: Prompt, metric: Mapping[str, Any], top: At) -> None:
    """A tool the metric or ``tool_choice`` names must be one of the prompt's: a misspelt one would
    score 0 on every row, or be refused by the provider on every call."""
    names = [tool.name for tool in prompt.tools]

    def check(name: Any, at: At) -> None:
        if name not in names:
            offered = f"the prompt's tools are {', '.join(names)}" if names else "the prompt has no tools"
            raise at.error(f"`{at.path}` names the tool {name!r}, which {offered}{suggest(str(name), names)}")

    def walk(spec: Mapping[str, Any], at: At) -> None:
        if spec.get("type") == "tool_called":
            check(spec.get("tool"), at / "tool")
        for i, part in enumerate(spec.get("parts") or ()):
            walk(part, at / "parts" / i)

    walk(metric, top / "metric")
    _check_schema_paths(prompt, metric, top / "metric")
    choice = prompt.params.get("tool_choice")
    if isinstance(choice, Mapping):
        check(
            (choice.get("function") or {}).get("name"),
            top / "prompt" / "params" / "tool_choice" / "function" / "name",
        )


def _check_schema_paths(prompt: Prompt, metric: Mapping[str, Any], at: At) -> None:
    """A json_fields path must be one the prompt's output schema lists (``properties``), level by
    level: a misspelt path would score 0 on every row. A level without ``properties``, or that
    allows others explicitly (``additionalProperties: true`` or a schema), is not checked."""
    if prompt.output_schema is None:
        return
    for i, part in enumerate(metric.get("parts") or ()):
        _check_schema_paths(prompt, part, at / "parts" / i)
    if metric.get("type") != "json_fields":
        return
    for path in metric.get("fields") or {}:
        node: Any = prompt.output_schema.schema
        for step in str(path).split("."):
            properties = node.get("properties") if isinstance(node, Mapping) else None
            if not isinstance(properties, Mapping) or node.get("additionalProperties", False) is not False:
                break  # the schema does not close this level: any name may be there
            if step not in properties:
                raise at.error(
                    f"`{(at / 'fields' / path).path}`: the output schema has no {step!r} there "
                    f"(it has {', '.join(properties) or 'no properties'}){suggest(step, properties)}"
                )
            node = properties[step]


def _optimizers(
    value: Any, at: At, answer_field: str | None, base_dir: Path | None = None
) -> tuple[OptimizerSpec, ...]:
    """Each optimizer is built once here, so a bad name or param is found before any call."""
    from promptlift.optimize.optimizers import build_optimizer

    if value is None:
        value = "fewshot"
    items = value if isinstance(value, list) else [value]
    if not items:
        raise at.error("`optimizer` is an empty list; name at least one optimizer (like fewshot)")
    specs = []
    for i, item in enumerate(items):
        where = at / i if isinstance(value, list) else at
        if not isinstance(item, str | Mapping):
            where.fail("an optimizer name, {name, params} or a list of them", item)
        spec = OPTIMIZER({"name": item} if isinstance(item, str) else item, where)
        build_optimizer(
            spec["name"], spec.get("params", {}), answer_field=answer_field, at=where, base_dir=base_dir
        )
        specs.append(OptimizerSpec(spec["name"], spec.get("params", {})))
    return tuple(specs)


def _budget(value: Any, where: str) -> Budget:
    checked = BUDGET(value, At(where, "budget"))
    return Budget(
        max_calls=checked.get("max_calls"),
        max_cost_usd=checked.get("max_cost_usd"),
        max_minutes=checked.get("max_minutes"),
        max_tokens=checked.get("max_tokens"),
    )


def _subject(raw: Mapping[str, Any], where: str, base_dir: Path) -> Optimizable:
    """``prompt:`` (one prompt), or ``program: module:function`` with its named ``prompts:`` (and
    optionally the ``calls_per_row`` it makes at most)."""
    top = At(where)
    if "program" not in raw:
        for key in ("prompts", "calls_per_row"):
            if key in raw:
                raise (top / key).error(
                    f"`{key}` belongs to a program: add `program: module:function` (the code that calls "
                    f"the prompts), or write one `prompt:`"
                )
        return _prompt(raw.get("prompt"), where, base_dir)
    if "prompt" in raw:
        raise (top / "prompt").error(
            "give `prompt:` (one prompt) or `program:` with `prompts:`, not both; move the prompt under "
            "`prompts:` with a name"
        )
    ref = raw["program"]
    if not isinstance(ref, str) or ":" not in ref:
        (top / "program").fail("'module:function' (a Python file beside the config works)", ref)
    prompts = raw.get("prompts")
    if prompts is not None and not isinstance(prompts, Mapping):
        (top / "prompts").fail("a mapping of named prompts like {answer: {user: '{question}'}}", prompts)
    if not prompts:
        raise (top / "prompts").error(
            "`prompts` is missing: a program names its prompts, like "
            "{answer: {system: ..., user: '{question}'}}"
        )
    declared = raw.get("calls_per_row")
    if declared is not None and not (
        isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1
    ):
        (top / "calls_per_row").fail(
            "a whole number of at least 1 (model calls a row makes at most)", declared
        )
    members: dict[str, Prompt] = {}
    for name, value in prompts.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise (top / "prompts").error(f"`prompts`: name {name!r} is not a plain name like `answer`")
        members[name] = _prompt(value, where, base_dir, At(where, "prompts") / name)
    fn = load_program(ref, base_dir=base_dir)
    try:
        return Program(members, fn, ref, declared)
    except ConfigError as exc:
        raise top.error(f"`program`: {exc}") from None


PROMPT_KEYS = frozenset(PROMPT.keys)
PROGRAM_KEYS = ("program", "prompts", "calls_per_row")


def prompt_from_file(data: Mapping[str, Any], where: str, base_dir: Path) -> Optimizable:
    """A prompt given outside a run config (``eval --baseline FILE``: a prompt as a run exports it,
    or one written like a config's ``prompt:``; a program with its ``prompts:``), checked by the
    validators of a config's ``prompt:``: unknown keys (with the nearest name), malformed braces,
    demos that miss a placeholder. The dataset's fields are the caller's to check (``check``)."""
    if "program" in data or "prompts" in data:
        refuse_unknown(data, PROGRAM_KEYS, At(where))
        return _subject(data, where, base_dir)
    return _prompt(dict(data), where, base_dir, At(where, ""))


def _prompt(value: Any, where: str, base_dir: Path, at: At | None = None) -> Prompt:
    at = at or At(where, "prompt")
    if value is None:
        raise ConfigError(f"{where}: `{at.path}` is missing; add one like {PROMPT.example}")
    checked = PROMPT(value, at)
    if "messages" in checked and "turns" in checked:
        raise at.error(f"`{at.path}`: give `messages:` or `turns:`, not both (they are the same list)")
    turns = [dict(t) for t in checked.get("messages") or checked.get("turns") or ()]
    user = checked.get("user")
    if user is None and turns and turns[-1].get("role") == "user":
        user = turns.pop()["content"]  # a conversation's last user message is the input template
    if not user and not any("history" in t for t in turns):
        raise at.error(
            f"`{(at / 'user').path}` is missing; add the input template, like {PROMPT.example}, "
            "or end `messages:` with a user message or a {history: FIELD} slot"
        )
    tools = []
    for i, spec in enumerate(checked.get("tools") or ()):
        try:
            tools.append(Tool.from_dict(spec, base_dir=base_dir))
        except ConfigError as exc:
            raise (at / "tools" / i).error(f"`{(at / 'tools' / i).path}`: {exc}") from None
    checked["user"] = user or ""
    if "output_schema" in checked and "response_format" in (checked.get("params") or {}):
        raise (at / "params" / "response_format").error(
            f"`{(at / 'params' / 'response_format').path}`: the prompt has an `output_schema`, which is "
            "sent as the response_format; drop the param"
        )
    demos = tuple(Demo(d["fields"], d["answer"]) for d in checked.get("demos") or ())
    slots = placeholders(checked["user"], f"{where}: {(at / 'user').path}")
    for i, demo in enumerate(demos):
        missing = [name for name in slots if name not in demo.fields]
        if missing:
            raise (at / "demos" / i / "fields").error(
                f"`{(at / 'demos' / i / 'fields').path}` has no {', '.join(missing)} for the user "
                f"template's {{{'}, {'.join(missing)}}}; add the field(s) to the demo"
            )
    try:
        return Prompt(
            user=checked["user"],
            system=checked.get("system") or "",
            demos=demos,
            params=dict(value.get("params") or {}),
            turns=tuple(Turn.from_dict(t) for t in turns),
            tools=tuple(tools),
            max_steps=checked.get("max_steps", DEFAULT_MAX_STEPS),
            output_schema=checked.get("output_schema"),
        )
    except TemplateError as exc:
        raise at.error(f"`{at.path}`: {exc}" if at.path else str(exc)) from None


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
    name = item.get("model")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: missing `model` (a model name, like openai/gpt-4o-mini)")
    for key in ("api_base", "api_key_env"):
        if item.get(key) is not None and not isinstance(item[key], str | list):
            raise ConfigError(f"{where}: `{key}` must be text, got {type(item[key]).__name__}")
    if isinstance(item.get("api_key_env"), list):
        raise ConfigError(f"{where}: `api_key_env` must be text, got list")
    replicas = item.get("replicas") or ()
    if not isinstance(replicas, list | tuple):
        raise ConfigError(
            f"{where}: `replicas` must be a list of endpoint URLs, got {type(replicas).__name__}"
        )
    extra = item.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(
            f"{where}: `extra` must be a mapping of LiteLLM parameters, like {{api_version: v}}"
        )
    try:
        return ModelSpec(
            name,
            api_base=item.get("api_base"),
            api_key_env=item.get("api_key_env"),
            extra=extra,
            replicas=tuple(replicas),
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
        if isinstance(spec, ModelSpec):
            for replica in spec.replicas[1:]:  # the first is its api_base
                check_host(replica, hosts, what=f"a replica of {spec.model}")
    return hosts


def _cache(value: Any, path: Path, store: Any) -> Path | str | None:
    """``cache: false`` turns it off; ``cache: FILE`` names it; ``cache: redis://host:6379/0`` keeps
    it in Redis (shared by every run on that server; ``client.shared``); by default it lives in the
    store."""
    if value is False or value is None:
        return None
    if is_redis_url(value):
        return str(value)
    if isinstance(value, str) and value.strip():
        return _relative(path, value)
    if value is True:
        return (_relative(path, str(store)) / "cache.sqlite") if store else None
    raise ConfigError(f"{path}: `cache` must be a file path, true or false, got {value!r}")


def _relative(config: Path, value: str) -> Path:
    """A path from the config: ``~`` is the home folder; a relative path is from the config's folder."""
    given = Path(value).expanduser()
    return given if given.is_absolute() else config.parent / given


def _only(mapping: Mapping[str, Any], keys: tuple[str, ...], what: str, where: str) -> None:
    refuse_unknown(mapping, keys, At(where, what))


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
        shared = {k: item[k] for k in ("shared", "key_prefix", "on_unreachable") if k in item}
        try:
            limits.append(RateLimit(scope, rpm, tpm, burst, **shared))
        except ConfigError as exc:
            raise ConfigError(f"{where}: rate_limits: {exc}") from None
    return tuple(limits)


def _prices(value: Any, where: str) -> dict[str, ModelPrice]:
    """``prices: {azure/my-deployment: [0.15, 0.60]}``: USD per million input and output tokens,
    for models the price map does not know (a deployment name, a fine-tune, a server of your own);
    or a mapping ``{input, output, cached_input, cache_write, reasoning}`` for the other rates."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: `prices` must map models to [input, output] USD per 1M tokens")
    out = {}
    for model, price in value.items():
        if isinstance(price, Mapping):
            rates = PRICE(price, At(where, "prices") / model)
            out[str(model)] = ModelPrice(
                rates["input"],
                rates["output"],
                cached_input_per_mtok=rates.get("cached_input"),
                cache_write_per_mtok=rates.get("cache_write"),
                reasoning_per_mtok=rates.get("reasoning"),
            )
            continue
        if (
            not isinstance(price, list)
            or len(price) != 2
            or any(
                isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x < 0
                for x in price
            )
        ):
            raise ConfigError(
                f"{where}: the price of {model} must be [input, output] USD per 1M tokens, like [0.15, 0.60] "
                f"(0 for a free server), or a mapping like {PRICE.example}, got {price!r}"
            )
        out[str(model)] = ModelPrice(float(price[0]), float(price[1]))
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
    checked = ACCEPTANCE(value, At(where, "acceptance"))
    return Acceptance(checked.get("rule", "best"), checked.get("alpha", 0.05))


def _fallback(value: Any, where: str) -> FallbackPolicy:
    """``fallback: {failure_threshold: 5, cooldown: 30, wait_for_probe: true}``: the chain's breakers."""
    checked = FALLBACK(value, At(where, "fallback"))
    return FallbackPolicy(**checked)


def _tracing(value: Any, where: str) -> TracingConfig | None:
    """``tracing: {otlp_endpoint: http://localhost:4318, capture_content: false}``: OpenTelemetry
    spans of the run over OTLP/HTTP (``promptlift.tracing``; the otel extra)."""
    if value is None:
        return None
    checked = TRACING(value, At(where, "tracing"))
    try:
        return TracingConfig(**checked)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _provider_batch(value: Any, where: str) -> PollPolicy | None:
    """``provider_batch: {test_scoring: true, poll_interval: 30, max_wait: 86400}``: the test
    split scored as a provider Batch API job (half price, within 24 h)."""
    if value is None:
        return None
    checked = PROVIDER_BATCH(value, At(where, "provider_batch"))
    if not checked.get("test_scoring", False):
        return None
    interval = float(checked.get("poll_interval", 30.0))
    return PollPolicy(interval, interval * 10, max_wait_s=checked.get("max_wait"))


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None


def load_config(path: str | Path) -> RunConfig:
    """Parse and check every level of the config; whatever a run would refuse before its first call
    (a misspelt key at any depth, a bad value, an unknown metric or optimizer param) is refused here."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = _read(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level")
    refuse_unknown(raw, sorted(TOP_KEYS), At(where))
    top = At(where)
    scalars = {k: check(raw[k], top / k) if k in raw else default for k, (check, default) in SCALARS.items()}
    if raw.get("dataset") is None:
        raise ConfigError(f"{where}: `dataset` is missing; add one like {DATASET.example}")
    dataset = DATASET(raw["dataset"], top / "dataset")
    if raw.get("metric") is None:
        raise ConfigError(f"{where}: `metric` is missing; add one like {{type: exact_match, field: label}}")
    metric = check_metric(raw["metric"], top / "metric", base_dir=path.parent)
    chain = _model_chain(raw.get("model"), where)
    models = tuple(m.model if isinstance(m, ModelSpec) else m for m in chain)
    judge = metric.get("model") if metric.get("type") == "llm_judge" else None
    for key, name in (*(("model", m) for m in models), ("reasoning_model", scalars["reasoning_model"]),
                      ("metric.model", judge)):  # fmt: skip
        problem = route_problem(name) if name else None
        if problem:  # a typo in a model's name, before the splits are read or a call is planned
            raise ConfigError(f"{where}: `{key}`: {problem}")
    store = scalars["store"]
    prompt = _subject(raw, where, path.parent)
    if isinstance(prompt, Prompt):  # a program's metric scores its output, not a prompt's tool calls
        _check_tool_names(prompt, metric, top)
    batch_test = _provider_batch(raw.get("provider_batch"), where)
    if batch_test is not None:
        from promptlift.optimize.evaluation import check_batch_scoring

        try:
            check_batch_scoring(prompt, models[0])
        except UserError as exc:
            raise ConfigError(f"{where}: provider_batch.test_scoring: {exc}") from None
    return RunConfig(
        path=path,
        models=models,
        reasoning_model=scalars["reasoning_model"] or models[0],
        api_base=scalars["api_base"],
        prompt=prompt,
        dataset_path=_relative(path, dataset["path"]),
        split=dataset["split"],
        metric=metric,
        optimizers=_optimizers(raw.get("optimizer"), top / "optimizer", metric.get("field"), path.parent),
        budget=_budget(raw.get("budget"), where),
        seed=scalars["seed"],
        store=_relative(path, store) if store else None,
        cache=_cache(raw.get("cache", True), path, store),
        concurrency=scalars["concurrency"],
        timeout=scalars["timeout"],
        raw=raw,
        acceptance=_acceptance(raw.get("acceptance"), where),
        retry=_retry(raw.get("retry"), where),
        rate_limits=_scoped(_rate_limits(raw.get("rate_limits"), where), raw, models, where),
        prices=_prices(raw.get("prices"), where),
        chain=chain if any(isinstance(m, ModelSpec) for m in chain) else (),
        allowed_hosts=_allowed_hosts(raw.get("allowed_hosts"), raw, chain, where),
        fallback=_fallback(raw.get("fallback"), where),
        transport=scalars["transport"],
        prompt_cache=scalars["prompt_cache"],
        tracing=_tracing(raw.get("tracing"), where),
        batch_test=batch_test,
    )
