"""Where the client's wrappers are put together, in one place, in one order.

    tracing (one span per call; only when tracing is on)   ← outermost
    metrics (one record per call, end to end)
    budget  (reserve the worst case, or refuse; cache hits stay free)
    cache   (answer from memory / SQLite, or store the answer)
    fallback → chain reservation → retry        (a fallback's dearer worst case is reserved)
    replicas (each attempt to a model's least busy replica that is up; only for replicated models)
    rate limit (per attempt, per model actually called; slows down on 429)
    attempt meter (counts what goes on the wire)
    provider (LiteLLM, the native OpenAI-compatible path, or the one given)  ← innermost

A stream (``Client.stream``) goes down the same stack: each wrapper's ``astream`` does what its
``acomplete`` does, around the events instead of the answer (retry and fallback only until the
first event; the budget settles, the cache stores and metrics record when the final completion
passes). Every wrapper passes ``astream`` down to the one below, since ``Provider.astream``'s default
(``acomplete``'s answer, whole) would end the streaming there; a provider that cannot stream keeps it.

The rate limiter sits below retry and fallback, not above them: every attempt — a retry, a
fallback to another model — then waits for the quota of the model it really goes to, and the 429s
it sees are the provider's, not what is left after retries.
"""

from __future__ import annotations

from typing import Any

from promptlift.client.budget import BudgetedProvider, ChainReservation, ledger_for
from promptlift.client.cache import CachingProvider, ResponseCache
from promptlift.client.calllog import CallLog
from promptlift.client.config import ClientConfig
from promptlift.client.fallback import FallbackProvider
from promptlift.client.metrics import AttemptMeter, Metrics, RecordingProvider
from promptlift.client.ratelimit import RateLimitedProvider, RateLimiter
from promptlift.client.replicas import ReplicaProvider
from promptlift.client.retry import RetryingProvider
from promptlift.client.traced import TracingProvider
from promptlift.pricing import PriceBook
from promptlift.providers.base import Provider
from promptlift.providers.credentials import GOOGLE_AUTH
from promptlift.providers.endpoints import ModelSpec
from promptlift.tracing import tracer_for


def build_stack(config: ClientConfig, provider: Provider | None) -> tuple[Provider, dict[str, Provider]]:
    """Return the outermost provider and the named parts (for metrics, stats and tests)."""
    pricing = PriceBook(config.prices, use_map=False)  # a given provider's model names are its own
    if provider is None:
        from promptlift.providers.credentials import Credentials
        from promptlift.providers.litellm import LiteLLMProvider

        credentials = Credentials(config.api_key, source=config.credential_provider)
        provider = LiteLLMProvider(
            models=config.models,
            api_base=config.api_base,
            extra=config.extra,
            credentials=credentials,
            prices=config.prices,
            strict_params=config.strict_params,
            allowed_hosts=config.allowed_hosts,
            vertex=config.vertex,
        )
        if config.transport == "native":
            from promptlift.providers.native import NativeProvider, Transports

            native = NativeProvider(
                models=config.models,
                api_base=config.api_base,
                extra=config.extra,
                credentials=credentials,  # one credential source: one refresh after a 401, shared
                prices=config.prices,
                allowed_hosts=config.allowed_hosts,
            )
            provider = Transports(native, provider)
        pricing = PriceBook(config.prices)
    parts: dict[str, Provider] = {"provider": provider}
    metrics = Metrics()
    stack: Provider = AttemptMeter(provider, metrics)
    if config.rate_limits:
        stack = parts["ratelimit"] = RateLimitedProvider(stack, RateLimiter(config.rate_limits))
    replicas = {m.model: m.replicas for m in config.models if isinstance(m, ModelSpec) and m.replicas}
    if replicas:  # below retry: every attempt is placed on the least busy replica that is up
        stack = parts["replicas"] = ReplicaProvider(stack, replicas, config.fallback)
    stack = parts["retry"] = RetryingProvider(stack, config.retry)
    endpoints = {model: config.endpoint_of(model) for model in config.chain}
    fallback = FallbackProvider(
        ChainReservation(stack), config.chain, config.fallback, endpoint=config.api_base, endpoints=endpoints
    )
    stack = parts["fallback"] = fallback
    cache: CachingProvider | None = None
    if config.cache is not None:
        store = ResponseCache(config.cache)
        route_extra: dict[str, dict[str, Any]] = {}
        if config.vertex is not None:  # its project and region key the Vertex routes' answers
            route_extra = {route: config.vertex.endpoint() for route in GOOGLE_AUTH}
        cache = CachingProvider(
            stack,
            store,
            api_base=config.api_base,
            extra=config.extra,
            route_extra=route_extra,
            model_settings={
                spec.model: (spec.api_base, spec.extra)
                for spec in config.models
                if isinstance(spec, ModelSpec)
            },
        )
        stack = parts["cache"] = cache
    stack = parts["budget"] = BudgetedProvider(
        stack,
        pricing,
        ledger=ledger_for(config.budget, "client") if config.budget is not None else None,
        lookup=cache.lookup if cache is not None else None,
        chain=config.chain,
    )
    log = CallLog(config.call_log.path, log_content=config.call_log.log_content) if config.call_log else None
    stack = parts["metrics"] = RecordingProvider(
        stack, metrics, sink=log.record if log else None, on_close=log.close if log else None
    )
    tracer = tracer_for(config.tracing)
    if tracer.enabled:
        stack = parts["tracing"] = TracingProvider(stack, tracer)
    return stack, parts
