"""Every knob of a client, typed and grouped; merged in one place (``ClientConfig.merged``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.client.shared import is_redis_url, redacted
from promptlift.errors import ConfigError
from promptlift.pricing import ModelPrice  # USD per million tokens, for models the map lacks
from promptlift.providers.credentials import KeySource, VertexConfig
from promptlift.providers.endpoints import ModelSpec, split_endpoint
from promptlift.secrets import Secret
from promptlift.tracing import TracingConfig

__all__ = [
    "Budget",
    "CacheConfig",
    "CallLogConfig",
    "ClientConfig",
    "ModelPrice",
    "ModelSpec",
    "RateLimit",
    "TracingConfig",
    "VertexConfig",
]


@dataclass(frozen=True)
class CacheConfig:
    """The response cache: an in-memory LRU in front of an optional SQLite file or Redis server.

    ``path`` None keeps the cache in memory only; a ``redis://host:port/db`` URL (or ``rediss://``,
    ``unix://``) keeps it in Redis, shared by every process using the same server and
    ``key_prefix`` (``client.shared``; the ``redis`` extra). If Redis cannot be reached, at the start
    or mid-run, the cache carries on in memory with one warning: never an error to the caller, and
    the answers already in memory stay hits. ``ttl_s`` None never expires. ``namespace``
    separates caches that share a file (per project, per experiment). ``max_entries`` caps the
    SQLite file (least recently used evicted first); ``memory_entries`` caps the in-memory level.
    ``sampled``: serve sampled calls (temperature > 0, no seed) from the cache too; each sample
    index is its own entry, so n samples stay n distinct answers.
    """

    path: str | None = None
    namespace: str = "default"
    ttl_s: float | None = None
    max_entries: int = 1_000_000
    memory_entries: int = 10_000
    sampled: bool = False
    key_prefix: str = "promptlift:"  # Redis only: keys are {key_prefix}cache:{namespace}:{hash}


UNREACHABLE = ("fail", "local")  # what a shared limit or budget does when its Redis cannot be reached


def check_shared(owner: str, shared: object, key_prefix: object, on_unreachable: object) -> None:
    """``ConfigError`` (one line, no password) for a bad ``shared``/``key_prefix``/``on_unreachable``."""
    if shared is not None and not is_redis_url(shared):
        raise ConfigError(f"{owner}: shared must be a redis:// URL, got {redacted(str(shared))!r}")
    if not isinstance(key_prefix, str):
        raise ConfigError(f"{owner}: key_prefix must be text, got {key_prefix!r}")
    if on_unreachable not in UNREACHABLE:
        raise ConfigError(
            f"{owner}: on_unreachable must be one of {', '.join(UNREACHABLE)}, got {on_unreachable!r}"
        )


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute for one model (``openai/gpt-4o``), one provider
    (``openai``) or every call (``*``). Calls over the limit wait their turn; they are never
    rejected. ``burst_s`` is how many seconds of quota may be spent at once after a quiet spell.

    ``shared``: a ``redis://`` URL; the limit's buckets then live in that Redis (under
    ``key_prefix``), and every process naming the same server, prefix and scope draws on one quota
    (``client.shared``; the ``redis`` extra). If Redis cannot be reached, ``on_unreachable="fail"``
    (the default) sends nothing and raises ``SharedStateUnavailable``: no process can break the
    shared quota; ``"local"`` carries on with this process's own buckets, after one warning.
    """

    scope: str = "*"
    rpm: float | None = None
    tpm: float | None = None
    burst_s: float = 1.0
    shared: str | None = None
    key_prefix: str = "promptlift:"
    on_unreachable: str = "fail"

    def __post_init__(self) -> None:
        check_shared(f"RateLimit({self.scope!r})", self.shared, self.key_prefix, self.on_unreachable)
        for name in ("rpm", "tpm", "burst_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ConfigError(f"RateLimit({self.scope!r}): {name} must be a positive number, got {value}")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Caps on new spend: USD, tokens (input + output), calls sent and, for a run, minutes; None
    means no cap. The one budget of promptlift: a client's (``ClientConfig(budget=...)``), a scope's
    (``Client.budget_scope``) and a run's (``RunSettings(budget=...)``). Keyword-only, so no two
    call sites can read the same positions differently.

    A call is sent only if its worst case (counted input tokens + ``max_tokens`` at the model's
    price) fits under every cap together with the calls already in flight. A request without
    ``max_tokens`` is sent with ``default_max_tokens``, so its worst case is a real bound.
    ``max_minutes`` is a run's wall clock (optimize, eval); a client's ledger has no clock and
    refuses it.

    ``shared``: a ``redis://`` URL; a client's ledger (and a ``budget_scope``'s) then lives in that
    Redis under ``{key_prefix}budget:{ledger name}``, each reservation and settlement one atomic
    Lua script, so N processes together never cross the caps (``client.shared_budget``). If Redis
    cannot be reached, ``on_unreachable="fail"`` (the default) sends nothing and raises
    ``SharedStateUnavailable``; ``"local"`` goes on in this process alone, from the totals it last
    saw, after one warning. A run's own budget (``RunSettings``, the config's ``budget:``) is not
    shared.
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_calls: int | None = None
    max_minutes: float | None = None
    default_max_tokens: int = 4096
    shared: str | None = None
    key_prefix: str = "promptlift:"
    on_unreachable: str = "fail"

    def __post_init__(self) -> None:
        check_shared("Budget", self.shared, self.key_prefix, self.on_unreachable)


@dataclass(frozen=True)
class CallLogConfig:
    """An SQLite flight recorder of every call; message contents only with ``log_content``."""

    path: str
    log_content: bool = False


TRANSPORTS = ("litellm", "native")


@dataclass(frozen=True)
class ClientConfig:
    """``models`` is the fallback chain, first choice first; empty means the embedded model.

    Each model is a name, or a ``ModelSpec`` with its own endpoint, key and ``extra``. ``api_base``
    and ``extra`` apply to every model that does not set its own. ``api_key`` is the key of the
    chain's first model: it is sent to the other models only when they share that model's provider
    and endpoint; the rest use their own ``api_key``/``api_key_env``, else their provider's usual
    environment variable. An ``api_base``/``base_url`` inside ``extra`` is taken as the endpoint.
    """

    models: tuple[str | ModelSpec, ...] = ()
    api_base: str | None = None
    api_key: Secret | None = None
    timeout: float = 120.0  # seconds per attempt
    concurrency: int = 16  # calls in flight through this client, all callers together
    extra: dict[str, Any] = field(default_factory=dict)  # passed to litellm as is
    cache: CacheConfig | None = None  # None: no cache
    rate_limits: tuple[RateLimit, ...] = ()
    budget: Budget | None = None  # per client; per run: ``Client.budget_scope(...)``
    prices: dict[str, ModelPrice] = field(default_factory=dict)  # model -> price, over the price map
    call_log: CallLogConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # per model, before falling back
    fallback: FallbackPolicy = field(default_factory=FallbackPolicy)  # breakers, context-window fallback
    credential_provider: KeySource | None = None  # fresh keys for short-lived tokens (Azure AD...)
    strict_params: bool = False  # refuse a parameter the model lacks, instead of dropping it with a warning
    allowed_hosts: tuple[str, ...] | None = None  # the only api_base hosts calls may go to; None: any
    vertex: VertexConfig | None = None  # project, region, service account of the vertex_ai/ routes
    # "native": OpenAI-compatible servers (openai/, hosted_vllm/ with an api_base) without LiteLLM
    # in the call (providers/native.py); every other route still goes through LiteLLM
    transport: str = "litellm"
    # An evaluation's shared prefix marked for the provider's prompt cache and its first call sent
    # alone to write it (``promptlift.prompt_cache``); False sends every call as it comes
    prompt_cache: bool = True
    # OpenTelemetry spans over OTLP/HTTP (the otel extra); None: only if OTEL_EXPORTER_OTLP_ENDPOINT is set
    tracing: TracingConfig | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"ClientConfig(transport={self.transport!r}): use one of {', '.join(TRANSPORTS)}"
            )
        api_base, extra = split_endpoint(self.api_base, self.extra, "ClientConfig")
        object.__setattr__(self, "api_base", api_base)
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "models", tuple(self.models))
        specs = [m.model for m in self.models if isinstance(m, ModelSpec)]
        repeated = sorted({m for m in specs if self.chain.count(m) > 1})
        if repeated:  # settings are found by model name: a second entry's would never be used
            raise ConfigError(
                f"{repeated[0]} appears twice in the model chain with its own settings; a model may "
                "appear once (serve the same weights under another name for a second endpoint)"
            )

    @property
    def chain(self) -> tuple[str, ...]:
        """The fallback chain's model names, first choice first."""
        return tuple(m.model if isinstance(m, ModelSpec) else m for m in self.models)

    def spec(self, model: str) -> ModelSpec | None:
        """``model``'s own settings, when the chain gives it a ``ModelSpec``."""
        return next((m for m in self.models if isinstance(m, ModelSpec) and m.model == model), None)

    def endpoint_of(self, model: str) -> str | None:
        """Where calls to ``model`` go: its own api_base, else the client's (None: LiteLLM's default)."""
        spec = self.spec(model)
        return (spec.api_base if spec else None) or self.api_base

    def merged(self, **overrides: Any) -> ClientConfig:
        """A copy with the non-None overrides applied (defaults → config file → flags)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
