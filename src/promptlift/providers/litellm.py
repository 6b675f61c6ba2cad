"""Every LiteLLM route, behind the Provider interface. The only module that imports litellm.

LiteLLM is imported lazily, once (it costs ~3 s and ~200 MB), with its price map read offline.
It is always called with its own retries off (``num_retries=0``, and ``max_retries=0`` for the
OpenAI SDK underneath) and its cache off: the client owns both (FACTS.md lists why). Every
exception it raises is translated here, in ``_translate``, and nowhere else.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from promptlift import errors
from promptlift.providers import local as local_models
from promptlift.providers.base import Provider
from promptlift.secrets import Secret, redact
from promptlift.types import Completion, CompletionRequest, Usage

_litellm: Any = None
_import_lock = threading.Lock()


def import_litellm() -> Any:
    """Import and configure litellm once per process."""
    global _litellm
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                # Read the bundled price map instead of fetching it; never fetch tokenizers.
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
                import litellm

                litellm.telemetry = False
                litellm.suppress_debug_info = True
                litellm.drop_params = False
                _register_local(litellm)
                _litellm = litellm
    return _litellm


def _register_local(litellm: Any) -> None:
    """Make ``local/<name>`` a LiteLLM route served by the embedded engine."""

    class LocalHandler(litellm.CustomLLM):  # type: ignore[misc]
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            engine, messages, params = _local_call(kwargs)
            return _local_response(litellm, kwargs, engine.generate(messages, params))

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            engine, messages, params = _local_call(kwargs)
            return _local_response(litellm, kwargs, await engine.agenerate(messages, params))

    handler = LocalHandler()
    litellm.custom_provider_map = [
        entry for entry in litellm.custom_provider_map if entry.get("provider") != "local"
    ] + [{"provider": local_models.PROVIDER, "custom_handler": handler}]
    litellm.utils.custom_llm_setup()
    for name, spec in local_models.LOCAL_MODELS.items():
        litellm.register_model(
            {
                f"{local_models.PROVIDER}/{name}": {
                    "max_tokens": spec.context_window,
                    "max_input_tokens": spec.context_window,
                    "max_output_tokens": spec.context_window,
                    "input_cost_per_token": 0.0,
                    "output_cost_per_token": 0.0,
                    "cache_creation_input_token_cost": 0.0,
                    "cache_read_input_token_cost": 0.0,
                    "litellm_provider": local_models.PROVIDER,
                    "mode": "chat",
                }
            }
        )


def _local_call(kwargs: Mapping[str, Any]) -> tuple[local_models.LocalEngine, Any, dict[str, Any]]:
    from promptlift.types import messages_from

    engine = local_models.engine_for(str(kwargs["model"]))
    params = dict(kwargs.get("optional_params") or {})
    return engine, messages_from(kwargs["messages"]), params


def _local_response(litellm: Any, kwargs: Mapping[str, Any], gen: local_models.Generation) -> Any:
    response = kwargs.get("model_response") or litellm.ModelResponse()
    response.choices[0].message.content = gen.text.strip()
    response.choices[0].finish_reason = gen.finish_reason
    response.model = f"{local_models.PROVIDER}/{kwargs['model']}"
    usage = litellm.Usage(
        prompt_tokens=gen.input_tokens,
        completion_tokens=gen.output_tokens,
        total_tokens=gen.input_tokens + gen.output_tokens,
        prompt_tokens_details={"cached_tokens": gen.cached_tokens},
    )
    response.usage = usage
    return response


def provider_of(model: str) -> str:
    """``openai/gpt-4o`` → ``openai``; a bare name is LiteLLM's to route (``gpt-4o`` → openai)."""
    if "/" in model:
        return model.split("/", 1)[0]
    return "openai"


class LiteLLMProvider(Provider):
    """Sends one request through ``litellm.acompletion``.

    ``api_key`` is passed explicitly when given, else LiteLLM reads the provider's usual
    environment variable. ``extra`` goes to litellm as is (e.g. ``api_version`` for Azure).
    """

    name = "litellm"

    def __init__(
        self,
        *,
        api_key: Secret | str | None = None,
        api_base: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        self.api_key = Secret(api_key) if isinstance(api_key, str) else api_key
        self.api_base = api_base
        self.extra = dict(extra or {})

    def _kwargs(self, request: CompletionRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [m.to_dict() for m in request.messages],
            "timeout": request.timeout,
            "num_retries": 0,
            "max_retries": 0,
            "caching": False,
            **request.generation_params(),
            **self.extra,
        }
        api_base = request.api_base or self.api_base
        if api_base and not request.model.startswith(local_models.PROVIDER + "/"):
            kwargs["api_base"] = api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key.reveal()
        return kwargs

    async def acomplete(self, request: CompletionRequest) -> Completion:
        litellm = import_litellm()
        provider = provider_of(request.model)
        if provider == local_models.PROVIDER:
            local_models.engine_for(request.model).check_ready()
        started = time.perf_counter()
        try:
            response = await litellm.acompletion(**self._kwargs(request))
        except errors.PromptliftError:
            raise
        except Exception as exc:  # the one boundary where foreign errors become ours
            raise _translate(exc, provider, request.model, self.api_key) from None
        latency = time.perf_counter() - started
        return _to_completion(litellm, response, request, provider, latency)


def _to_completion(
    litellm: Any, response: Any, request: CompletionRequest, provider: str, latency: float
) -> Completion:
    choice = response.choices[0]
    message = choice.message
    usage = getattr(response, "usage", None)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    tool_calls = tuple(tc.model_dump() for tc in (getattr(message, "tool_calls", None) or ()))
    return Completion(
        content=message.content or "",
        model=request.model,
        provider=provider,
        usage=Usage(
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cached_tokens=int(cached or 0),
        ),
        cost_usd=_cost(litellm, response, request),
        latency_s=latency,
        finish_reason=str(choice.finish_reason or "stop"),
        tool_calls=tool_calls,
    )


def _cost(litellm: Any, response: Any, request: CompletionRequest) -> float:
    if request.model.startswith(local_models.PROVIDER + "/"):
        return 0.0
    try:
        return float(litellm.completion_cost(completion_response=response, model=request.model))
    except Exception:  # unknown model: priced by the client's price table, or 0 with a warning
        return 0.0


# -- error translation ---------------------------------------------------------------------------


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    return parse_retry_after(value) if value else None


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_CONTENT_FILTER_MARKERS = ("content_policy_violation", "content_filter", "responsibleaipolicy")


def _translate(exc: Exception, provider: str, model: str, key: Secret | None) -> errors.PromptliftError:
    litellm = import_litellm()
    status = getattr(exc, "status_code", None)
    message = redact(str(getattr(exc, "message", None) or exc), [key.reveal()] if key else [])
    text = f"{message} {getattr(exc, 'code', '')} {getattr(exc, 'body', '')}".lower()
    fields: dict[str, Any] = {"provider": provider, "model": model, "status": status}
    table: list[tuple[type[BaseException], type[errors.ProviderError]]] = [
        (litellm.ContextWindowExceededError, errors.ContextWindowExceeded),
        (litellm.ContentPolicyViolationError, errors.ContentFiltered),
        (litellm.RateLimitError, errors.RateLimited),
        (litellm.Timeout, errors.Timeout),
        (litellm.AuthenticationError, errors.AuthenticationFailed),
        (litellm.PermissionDeniedError, errors.PermissionDenied),
        (litellm.NotFoundError, errors.ModelNotFound),
        (litellm.BadRequestError, errors.BadRequest),
        (litellm.APIConnectionError, errors.ConnectionFailed),
        (litellm.ServiceUnavailableError, errors.ProviderUnavailable),
        (litellm.InternalServerError, errors.ProviderUnavailable),
        (litellm.BadGatewayError, errors.ProviderUnavailable),
    ]
    kind: type[errors.ProviderError] = errors.ProviderUnavailable
    for foreign, ours in table:
        if isinstance(exc, foreign):
            kind = ours
            break
    else:
        if status == 429:
            kind = errors.RateLimited
        elif status is not None and 400 <= status < 500:
            kind = errors.BadRequest
    if kind is errors.BadRequest and any(m in text for m in _CONTENT_FILTER_MARKERS):
        kind = errors.ContentFiltered
    if (kind is errors.BadRequest and "not a valid model" in text) or "llm provider not provided" in text:
        kind = errors.ModelNotFound
    if kind is errors.RateLimited:
        fields["retry_after"] = _retry_after(exc)
    return kind(message, **fields)
