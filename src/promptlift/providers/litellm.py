"""Every LiteLLM route, behind the Provider interface. The only module that imports litellm.

Routes (LiteLLM's ``provider/model`` strings): ``openai/``, ``azure/<deployment>``, ``anthropic/``,
``gemini/`` (AI Studio), ``vertex_ai/`` (a Google credential: ``VertexConfig`` or the environment's
application default credentials; needs the ``vertex`` extra), any OpenAI-compatible
server by ``api_base`` (``openai/``, ``hosted_vllm/``, ``ollama_chat/``) and the embedded
``local/<name>``.

LiteLLM is imported lazily, once (it costs ~3 s and ~200 MB), with its price map read offline.
It is always called with its own retries off (``num_retries=0``, and ``max_retries=0`` for the
OpenAI SDK underneath) and its cache off: the client owns both (FACTS.md lists why). Every
exception it raises is translated here, in ``_translate``, and nowhere else; our error is raised
outside the ``except`` block, so not even ``__context__`` leads back to a LiteLLM exception.

Before a request is sent: the ``api_base`` host is checked against the allow-list, parameters the
model does not support are dropped with a warning (or refused, in strict mode), and the key is
resolved (``providers.credentials``). One exception to "one request per call": after a 401, a
client with a credential provider fetches a fresh key and sends the request once more.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

from promptlift import errors, pricing, prompt_cache
from promptlift.log import get_logger, litellm_import, litellm_prints_off
from promptlift.providers import local as local_models
from promptlift.providers.base import Provider, answer, closing
from promptlift.providers.credentials import (
    GOOGLE_AUTH,
    Credentials,
    ResolvedKey,
    VertexConfig,
    check_host,
    open_with_refresh,
    require_google_auth,
    send_with_refresh,
)
from promptlift.providers.endpoints import Chain, ModelSpec, check_endpoint, split_endpoint
from promptlift.providers.failures import CONTENT_FILTER_MARKERS as _CONTENT_FILTER_MARKERS
from promptlift.providers.failures import connection_message as _connection_message
from promptlift.providers.failures import kind_by_status as _kind_by_status
from promptlift.providers.litellm_stream import UsageSpy, feed
from promptlift.providers.render import render_plain
from promptlift.providers.retry_after import parse_retry_after as parse_retry_after  # re-exported
from promptlift.providers.retry_after import retry_after_from_headers
from promptlift.providers.routes import route_problem
from promptlift.providers.streaming import StreamAssembler
from promptlift.secrets import Secret, redact
from promptlift.types import (
    Completion,
    CompletionRequest,
    Message,
    StreamEvent,
    ToolCall,
    Usage,
    logprobs_from,
)

log = get_logger("providers")

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
                with litellm_import():  # then its loggers silent, unless -vv or LITELLM_LOG asked
                    import litellm

                _preimport_noisy_modules()
                litellm.telemetry = False
                litellm_prints_off(litellm)
                litellm.drop_params = False
                _register_local(litellm)
                _litellm = litellm
    return _litellm


# Submodules LiteLLM imports lazily on a first call, whose import emits a warning (pydantic's
# ReadOnly TypedDict notice). Under ``-W error`` that warning fails the call itself, so they are
# imported here, once, with their warnings silenced.
_NOISY_MODULES = ("litellm.llms.vertex_ai.context_caching.vertex_ai_context_caching",)


def _preimport_noisy_modules() -> None:
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _NOISY_MODULES:
            with contextlib.suppress(ImportError):  # moved in another release: nothing to silence
                importlib.import_module(name)


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
    message = response.choices[0].message
    message.content = gen.text.strip()
    if gen.tool_calls:  # read from the model's Action lines (providers.react)
        message.tool_calls = [
            litellm.types.utils.ChatCompletionMessageToolCall(
                id=call.id, type="function", function={"name": call.name, "arguments": call.arguments}
            )
            for call in gen.tool_calls
        ]
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


# What the embedded route understands; LiteLLM does not know a custom provider's parameters.
# ``tools`` are shown to the base model as text and its replies read back (providers.react).
_LOCAL_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "tools"})


def supported_params(model: str) -> frozenset[str] | None:
    """The unified parameters ``model`` accepts, or None when LiteLLM cannot say."""
    provider = provider_of(model)
    if provider == local_models.PROVIDER:
        return _LOCAL_PARAMS
    litellm = import_litellm()
    name = model.split("/", 1)[1] if "/" in model else model
    try:
        found = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider)
    except Exception:  # an unknown provider: let the call itself say what is wrong
        return None
    return frozenset(found) if found is not None else None


def google_rewrites(request: CompletionRequest) -> list[str]:
    """What LiteLLM will change in a Gemini request without saying so, from the price map's flags:
    a system prompt folded into the first user turn, a JSON schema sent as prompt text.

    For a prompt optimizer these matter: the text the model sees is not the text that was scored.
    """
    provider = provider_of(request.model)
    if provider not in ("gemini", *GOOGLE_AUTH):
        return []
    from litellm.llms.vertex_ai.common_utils import (
        get_supports_response_schema,
        get_supports_system_message,
        uses_vertex_gemini_api,
    )

    name = request.model.split("/", 1)[1]
    if provider != "gemini" and not uses_vertex_gemini_api(name):
        return []  # Claude, Llama, Mistral, ... on Vertex: sent in their own formats, nothing folded
    google: Literal["gemini", "vertex_ai"] = "gemini" if provider == "gemini" else "vertex_ai"
    found = []
    if any(m.role == "system" for m in request.messages) and not get_supports_system_message(name, google):
        found.append(
            "folds the system prompt into the first user turn (the price map does not list "
            "system-message support for this model)"
        )
    schema = (request.response_format or {}).get("type") == "json_schema"
    if schema and not get_supports_response_schema(name, google):
        found.append(
            "sends the JSON schema as text appended to the prompt, asking only for JSON "
            "(the price map does not list response-schema support for this model)"
        )
    return found


def anthropic_rewrites(request: CompletionRequest) -> list[str]:
    """What LiteLLM will change in an Anthropic request with tools and a JSON-schema response_format
    on a model without native structured output: the schema becomes a ``json_tool_call`` tool that
    every call is forced to use, so the request's own tools are never called (an agent with an
    output schema could not work)."""
    if provider_of(request.model) != "anthropic" or not request.tools:
        return []
    if (request.response_format or {}).get("type") != "json_schema":
        return []
    import_litellm()
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig

    if AnthropicConfig().uses_native_structured_output(request.model.split("/", 1)[1]):
        return []  # sent as output_format: the tools stay free to call
    return [
        "forces a json_tool_call tool on every call for the JSON schema, so the request's own tools "
        "are never called (the price map does not list native structured output for this model)"
    ]


# Routes through the OpenAI SDK, which refuses to send a request without some key.
_SDK_WANTS_A_KEY = frozenset({"openai", "text-completion-openai", "hosted_vllm"})

_warned_params: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class LiteLLMProvider(Provider):
    """Sends one request through ``litellm.acompletion``.

    ``models``: the chain (``ModelSpec``: a model's own endpoint, key, extra). ``api_key`` is the
    chain's first model's key, sent only to its provider and endpoint (``endpoints.Chain``); else
    ``credentials`` (by default, the provider's usual variable) supplies the key. ``extra`` goes
    to litellm as is (``api_version`` for Azure). ``prices``: per-model prices over LiteLLM's map.
    ``strict_params``: refuse a parameter the model does not support instead of dropping it.
    ``allowed_hosts``: the only hosts requests may go to (None: any), however the endpoint was set
    (``endpoints.check_endpoint``). ``vertex``: project, region and account for ``vertex_ai/``.
    On Azure, a credential-provider key is an Azure AD token: sent as ``Authorization: Bearer``.
    """

    name = "litellm"

    def __init__(
        self,
        *,
        api_key: Secret | str | None = None,
        api_base: str | None = None,
        extra: Mapping[str, Any] | None = None,
        credentials: Credentials | None = None,
        prices: pricing.Prices | None = None,
        strict_params: bool = False,
        allowed_hosts: tuple[str, ...] | None = None,
        vertex: VertexConfig | None = None,
        models: Sequence[str | ModelSpec] = (),
    ):
        self.credentials = credentials or Credentials(api_key)
        self.vertex = vertex
        self.api_base, self.extra = split_endpoint(api_base, dict(extra or {}), "LiteLLMProvider")
        self.prices = prices
        self.strict_params = strict_params
        self.allowed_hosts = allowed_hosts
        self.chain = Chain(models, self.api_base)
        for spec in self.chain.specs:
            if spec.api_base:
                check_host(spec.api_base, allowed_hosts, what=f"the api_base of {spec.model}")
            for replica in spec.replicas[1:]:  # the first is its api_base
                check_host(replica, allowed_hosts, what=f"a replica of {spec.model}")
        if self.api_base:
            check_host(self.api_base, allowed_hosts)

    def _check_endpoint(self, provider: str, api_base: str | None) -> None:
        """The allow-list, for the endpoint the call will really reach however it was set."""
        if self.allowed_hosts is None or provider == local_models.PROVIDER:
            return
        check_endpoint(
            provider,
            api_base,
            self.allowed_hosts,
            litellm_api_base=import_litellm().api_base,
            vertex_location=self.vertex.location if self.vertex else None,
            discover=lambda: _litellm_default_base(provider),
        )

    async def aclose(self) -> None:
        """Close the HTTP clients LiteLLM cached for this event loop (its cache keys them by loop).

        Left there, they outlive the loop: LiteLLM evicts them only by age or when 200 are cached,
        and an evicted async client can no longer be closed without its loop, so its sockets are
        left to the garbage collector ("unclosed socket" ResourceWarnings, file descriptors held)."""
        if _litellm is None:
            return
        await close_loop_clients(_litellm)

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        params = request.generation_params()
        if request.answer_limit is not None:
            params["max_tokens"] = request.answer_limit  # the caller's, else a budget's ceiling
        for what in (*google_rewrites(request), *anthropic_rewrites(request)):
            self._refuse_or_warn(
                request.model,
                what,
                refusal=f"{request.model}: LiteLLM {what}; change the request, or turn strict_params "
                "off to send it anyway with a warning",
                warning=f"{request.model}: LiteLLM {what}",
            )
        supported = supported_params(request.model)
        if supported is None:
            return params
        for name in [p for p in params if p not in supported]:
            self._refuse_or_warn(
                request.model,
                name,
                refusal=f"{request.model} does not support the parameter {name!r}; remove it, or turn "
                "strict_params off to drop it with a warning",
                warning=f"{request.model} does not support {name!r}: the parameter is dropped",
            )
            del params[name]
        return params

    def _refuse_or_warn(self, model: str, what: str, *, refusal: str, warning: str) -> None:
        """Strict mode refuses a request that would not reach the model as written; otherwise one
        warning per model and kind of change."""
        if self.strict_params:
            raise errors.ConfigError(refusal)
        with _warned_lock:
            first = (model, what) not in _warned_params
            _warned_params.add((model, what))
        if first:
            log.warning("%s", warning)

    def _kwargs(self, request: CompletionRequest, key: ResolvedKey, api_base: str | None) -> dict[str, Any]:
        spec = self.chain.spec(request.model)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": _with_breakpoints(_messages_for(request, provider_of(request.model)), request),
            "timeout": request.timeout,
            "num_retries": 0,
            "max_retries": 0,
            "caching": False,
            **self._params(request),
            **self.extra,
            **(spec.extra if spec else {}),
        }
        provider = provider_of(request.model)
        if api_base:
            kwargs["api_base"] = api_base
        if self.vertex is not None and provider in GOOGLE_AUTH:
            kwargs.update(self.vertex.litellm_params())
        if key.secret and key.from_source and provider == "azure":
            kwargs["azure_ad_token"] = key.secret.reveal()  # Azure AD wants Authorization: Bearer
            # Else LiteLLM adds AZURE_API_KEY from the environment, and the SDK refuses both at once.
            kwargs["api_key"] = _azure_no_key()
        elif key.secret:
            kwargs["api_key"] = key.secret.reveal()
        elif api_base and provider in _SDK_WANTS_A_KEY:
            kwargs["api_key"] = "no-key"  # a keyless server of your own; the OpenAI SDK insists on one
        return kwargs

    def batch_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The body LiteLLM would send for an ``anthropic/`` or ``openai/`` request to the provider's
        own API (its parameter mapping per model — o-series and GPT-5 take ``max_completion_tokens``
        — and its message translation, breakpoints included), without sending it: one line of a
        batch job (``providers.batch``)."""
        import_litellm()
        from litellm.types.utils import LlmProviders
        from litellm.utils import ProviderConfigManager

        provider = provider_of(request.model)
        name = request.model.split("/", 1)[1] if "/" in request.model else request.model
        config = ProviderConfigManager.get_provider_chat_config(name, LlmProviders(provider))
        if config is None:
            raise errors.ConfigError(f"{request.model}: LiteLLM has no request format for {provider}")
        messages = _with_breakpoints(_messages_for(request, provider), request)
        try:
            optional = config.map_openai_params(
                non_default_params=self._params(request), optional_params={}, model=name, drop_params=False
            )
            body = config.transform_request(
                model=name,
                messages=messages,  # type: ignore[arg-type]
                optional_params=optional,
                litellm_params={},
                headers={},
            )
        except Exception as exc:  # a request LiteLLM cannot translate: ours, as a live call would be
            failure = errors.BadRequest(
                f"cannot be sent to {provider}: {redact(str(exc))[:300]}", provider=provider, model=name
            )
        else:
            return {k: v for k, v in dict(body).items() if k != "stream"}
        raise failure

    async def _prepare(self, request: CompletionRequest) -> tuple[Any, str, str | None, ResolvedKey]:
        """What every call checks and resolves before sending: litellm, the route, the endpoint
        (allow-listed), the embedded model's readiness, and the key."""
        litellm = import_litellm()
        provider = provider_of(request.model)
        local = provider == local_models.PROVIDER
        api_base = None if local else (request.api_base or self.chain.endpoint(request.model))
        if api_base and self.allowed_hosts is None:  # a URL with no password; with a list, below
            check_host(api_base, None)
        self._check_endpoint(provider, api_base)
        if local:
            local_models.engine_for(request.model).check_ready()
        if provider in GOOGLE_AUTH:
            require_google_auth()  # else LiteLLM's ImportError recommends the far larger SDK
        own, shared = self.chain.own_key(request.model)
        key = await self.credentials.resolve(provider, api_base=api_base, own=own, shared=shared)
        return litellm, provider, api_base, key

    async def preflight(self, model: str) -> None:
        """The checks every call makes before sending (the route, the endpoint and its allow-list,
        the embedded model's readiness, the key), for ``model``, with nothing sent."""
        problem = route_problem(model)
        if problem is not None:
            raise errors.ConfigError(problem)
        await self._prepare(CompletionRequest(model=model, messages=(Message("user", "."),)))

    async def acomplete(self, request: CompletionRequest) -> Completion:
        litellm, provider, api_base, key = await self._prepare(request)

        async def send(key: ResolvedKey) -> Completion:
            return await self._send(
                litellm, self._kwargs(request, key, api_base), request, provider, key.secret
            )

        return await send_with_refresh(self.credentials, provider, key, send, model=request.model)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """``litellm.acompletion(stream=True)``, usage asked for at the end; errors translated as
        for ``acomplete``, while opening the stream and while reading it. The embedded route does not
        stream, nor (here) the text-completion routes, whose SDK client ``_closed_after`` closes when
        the call returns: their answer comes whole (``Provider.astream``)."""
        route = provider_of(request.model)
        if route == local_models.PROVIDER or route.startswith("text-completion"):
            async with closing(super().astream(request)) as stream:
                async for event in stream:
                    yield event
            return
        litellm, provider, api_base, key = await self._prepare(request)
        started = time.perf_counter()
        opened: dict[str, Any] = {}

        async def open_stream(key: ResolvedKey) -> Any:
            kwargs = self._kwargs(request, key, api_base) | {"stream": True}
            supported = supported_params(request.model)
            if supported is None or "stream_options" in supported:
                kwargs["stream_options"] = {"include_usage": True}
            opened.update(kwargs=kwargs, key=key.secret)
            return await self._call(litellm, kwargs, request, provider, key.secret)

        response, sent = await open_with_refresh(
            self.credentials, provider, key, open_stream, model=request.model
        )
        assembler = StreamAssembler()
        spy = UsageSpy.install(response)
        chunks = aiter(response)
        while True:
            failure: errors.PromptliftError | None = None
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except errors.PromptliftError as exc:
                failure = exc
            except Exception as exc:  # the one boundary where foreign errors become ours
                failure = _ours_inside(exc) or _translate(
                    exc, provider, request.model, opened["key"], opened["kwargs"].get("api_base")
                )
            if failure is not None:
                raise failure  # outside the except block: no litellm exception in __context__
            for event in feed(assembler, chunk, usage_of, trust_usage=spy is None or spy.seen):
                yield event
        completion = assembler.completion(
            request, provider, served_by=self.name, latency=time.perf_counter() - started, prices=self.prices
        )
        yield completion.replace(attempts=sent)

    async def _call(
        self,
        litellm: Any,
        kwargs: dict[str, Any],
        request: CompletionRequest,
        provider: str,
        key: Secret | None,
    ) -> Any:
        """``litellm.acompletion(**kwargs)``, its exceptions translated."""
        failure: errors.PromptliftError | None = None
        litellm_prints_off(litellm)  # the user's code may have set litellm.set_verbose since
        try:
            async with _closed_after(provider, kwargs):
                return await litellm.acompletion(**kwargs)
        except errors.PromptliftError as exc:  # raised by the embedded route: already ours
            failure = exc
        except Exception as exc:  # the one boundary where foreign errors become ours
            failure = _ours_inside(exc) or _translate(
                exc, provider, request.model, key, kwargs.get("api_base")
            )
        assert failure is not None  # the try block returns when nothing failed
        raise failure  # outside the except block: no litellm exception in __context__

    async def _send(
        self,
        litellm: Any,
        kwargs: dict[str, Any],
        request: CompletionRequest,
        provider: str,
        key: Secret | None,
    ) -> Completion:
        started = time.perf_counter()
        response = await self._call(litellm, kwargs, request, provider, key)
        return self._to_completion(response, request, provider, time.perf_counter() - started)

    def _to_completion(
        self, response: Any, request: CompletionRequest, provider: str, latency: float
    ) -> Completion:
        choices: list[Any] = list(getattr(response, "choices", None) or ())
        message = getattr(choices[0], "message", None) if choices else None
        if message is None:
            # A 200 without an answer: the request was accepted (a bad one gets a 400), and servers do
            # this when overloaded or cut off mid-generation (vLLM, proxies), so the same request
            # usually succeeds later: retryable, like the other malformed bodies (_MALFORMED_MARKERS).
            raise errors.ProviderUnavailable(
                "malformed response from the provider: a 200 with no choices (no answer in the body)",
                provider=provider,
                model=request.model,
                status=200,
            )
        choice = choices[0]
        tool_calls = tuple(
            ToolCall.from_dict(tc.model_dump()) for tc in (getattr(message, "tool_calls", None) or ())
        )
        finish = str(choice.finish_reason or "stop")
        content = message.content or ""
        return answer(
            request,
            provider,
            content=content,
            tool_calls=tool_calls,
            finish=finish,
            usage=usage_of(response),
            latency=latency,
            served_by=self.name,
            prices=self.prices,
            logprobs=logprobs_from(getattr(choice, "logprobs", None)),
            samples=tuple(str(getattr(c.message, "content", "") or "") for c in choices)
            if len(choices) > 1
            else (),
        )


def _azure_no_key() -> str:
    """The OpenAI SDK's own "no API key" value for Azure: not a credential, never sent."""
    from openai.lib.azure import API_KEY_SENTINEL

    return str(API_KEY_SENTINEL)


def _litellm_default_base(provider: str) -> str | None:
    """Where LiteLLM sends an OpenAI-compatible route's calls (its own table, and the route's
    ``*_API_BASE`` variable), or None when it does not say."""
    try:
        found = import_litellm().get_llm_provider(model=f"{provider}/x", custom_llm_provider=provider)
    except Exception:  # an unknown route: no endpoint to name
        return None
    return str(found[3]) if len(found) > 3 and found[3] else None


def usage_of(response: Any) -> Usage:
    """The usage LiteLLM normalized, split as providers bill it. LiteLLM's ``prompt_tokens`` counts
    Anthropic's cache reads and writes too; a 200 without usage comes out as all zeros, which no
    real call has (every request has input), so it is marked unreported for the budget to charge."""
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    counted = Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(getattr(prompt, "cached_tokens", 0) or 0),
        cache_write_tokens=int(
            getattr(usage, "cache_creation_input_tokens", 0) or getattr(prompt, "cache_write_tokens", 0) or 0
        ),
        reasoning_tokens=int(getattr(completion, "reasoning_tokens", 0) or 0),
    )
    if counted.input_tokens == 0 and counted.output_tokens == 0:
        return Usage(reported=False)
    return counted


# -- text-completion routes ----------------------------------------------------------------------


def _messages_for(request: CompletionRequest, provider: str) -> list[dict[str, str]]:
    """The messages as LiteLLM should get them. A text-completion route (``/v1/completions``, for
    base models) takes one prompt, but LiteLLM sends each message as a prompt of its own: a list,
    which OpenAI answers as a batch (the first answer is the system message's continuation) and a
    llama.cpp server refuses with a 500, retried to no avail. So a conversation is rendered into
    one prompt, as for the embedded base model; a single message is sent as it is."""
    if provider.startswith("text-completion") and len(request.messages) > 1:
        return [{"role": "user", "content": render_plain(request.messages)}]
    return [m.to_dict() for m in request.messages]


EPHEMERAL = {"type": "ephemeral"}


def _with_breakpoints(messages: list[dict[str, Any]], request: CompletionRequest) -> list[dict[str, Any]]:
    """The messages with the request's shared prefix (``cache_prefix``) marked for a route whose
    prompt cache needs marks (Anthropic): ``cache_control`` on the system text and on the prefix's
    last message, two of the four breakpoints allowed, so a changed demo still reads the system
    text from the cache. LiteLLM carries a ``cache_control`` on a text content block through to
    Anthropic's blocks (``system`` and ``messages`` alike)."""
    rule = prompt_cache.rule_for(request.model)
    if not request.cache_prefix or rule is None or not rule.marked or not messages:
        return messages
    last = min(request.cache_prefix, len(messages)) - 1
    marks = {last, 0} if messages[0]["role"] == "system" else {last}
    out = list(messages)
    for index in sorted(marks)[-rule.max_breakpoints :]:
        out[index] = _marked(out[index])
    return out


def _marked(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with ``cache_control`` on its last text block (a string becomes one block)."""
    content = message.get("content")
    if isinstance(content, str) and content:
        return {**message, "content": [{"type": "text", "text": content, "cache_control": EPHEMERAL}]}
    if isinstance(content, list):
        texts = [i for i, part in enumerate(content) if part.get("type") == "text" and part.get("text")]
        if texts:
            parts = list(content)
            parts[texts[-1]] = {**parts[texts[-1]], "cache_control": EPHEMERAL}
            return {**message, "content": parts}
    return message  # no text to mark (a bare tool call): the breakpoint is left out


@contextlib.asynccontextmanager
async def _closed_after(provider: str, kwargs: dict[str, Any]) -> AsyncIterator[None]:
    """For ``text-completion-openai/``, an OpenAI SDK client of ours, closed when the call ends.

    LiteLLM 1.110.2 builds a new SDK client (with a new aiohttp session) for every call on this
    route, caches none and closes none: 14-18 "Unclosed client session" lines per batch, and the
    sockets with them. Given a client, LiteLLM uses it as is, so it must carry the endpoint and key.
    """
    if provider != "text-completion-openai" or "client" in kwargs:
        yield
        return
    import openai

    async with openai.AsyncOpenAI(
        api_key=kwargs.get("api_key"),
        base_url=kwargs.get("api_base") or os.environ.get("OPENAI_API_BASE") or None,
        timeout=kwargs["timeout"],
        max_retries=0,
    ) as client:  # closes its connection pool on the way out, whatever the call did
        kwargs["client"] = client
        try:
            yield
        finally:
            del kwargs["client"]  # a retry with a fresh key builds its own


# -- error translation ---------------------------------------------------------------------------


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    return retry_after_from_headers(headers) if headers else None


# A dropped or refused connection comes back as a 500 InternalServerError (FACTS.md).
_CONNECTION_MARKERS = ("connection error", "server disconnected", "connection refused", "connect call failed")
# Transport failures by class name, from whichever HTTP client LiteLLM used (httpx, aiohttp, openai's).
_TRANSPORT_NAMES = (
    "ConnectError",
    "ConnectionError",
    "Disconnected",
    "RemoteProtocolError",
    "ConnectorError",
)
# A Google credential refused at its token endpoint (google-auth's RefreshError with an OAuth error
# code, RFC 6749 §5.2): LiteLLM raises it as an APIConnectionError (500), which would be retried.
_TOKEN_REFUSED_MARKERS = ("invalid_grant", "invalid_client", "unauthorized_client")
# A 200 whose body does not parse: the server's fault, so worth another try, never a 4xx.
_MALFORMED_MARKERS = ("expecting value", "error converting to valid response", "invalid json")

_MAYBE_MALFORMED = (errors.ProviderUnavailable, errors.BadRequest, errors.ConnectionFailed)


def _kind_by_class(litellm: Any, exc: Exception) -> type[errors.ProviderError] | None:
    """The specific LiteLLM classes; generic ones (APIError, BadRequestError) go by status."""
    table: list[tuple[type[BaseException], type[errors.ProviderError]]] = [
        (litellm.ContextWindowExceededError, errors.ContextWindowExceeded),
        (litellm.ContentPolicyViolationError, errors.ContentFiltered),
        (litellm.RateLimitError, errors.RateLimited),
        (litellm.Timeout, errors.Timeout),
        (litellm.AuthenticationError, errors.AuthenticationFailed),
        (litellm.PermissionDeniedError, errors.PermissionDenied),
        (litellm.NotFoundError, errors.ModelNotFound),
        (litellm.APIConnectionError, errors.ConnectionFailed),
        (litellm.ServiceUnavailableError, errors.ProviderUnavailable),
        (litellm.InternalServerError, errors.ProviderUnavailable),
        (litellm.BadGatewayError, errors.ProviderUnavailable),
    ]
    for foreign, ours in table:
        if isinstance(exc, foreign):
            return ours
    return None


def _transport_error(exc: BaseException) -> BaseException | None:
    """The deepest transport failure under LiteLLM's error (a socket error, the HTTP client's
    connect or disconnect error), or None when a server answered (a gateway's 502 that merely
    mentions a refused connection keeps its status and text)."""
    found = None
    for cause in _causes(exc):
        name = type(cause).__name__
        foreign = not type(cause).__module__.startswith("litellm")
        if isinstance(cause, OSError) or (foreign and any(w in name for w in _TRANSPORT_NAMES)):
            found = cause
    return found


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps (LiteLLM's ``original_exception``, causes, contexts), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = getattr(current, "original_exception", None) or current.__cause__ or current.__context__


def _ours_inside(exc: BaseException) -> errors.PromptliftError | None:
    """Our own error raised under LiteLLM (by the embedded route) and wrapped by it on the way out."""
    return next((c for c in _causes(exc) if isinstance(c, errors.PromptliftError)), None)


def _translate(
    exc: Exception, provider: str, model: str, key: Secret | None, api_base: str | None = None
) -> errors.ProviderError:
    litellm = import_litellm()
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    message = redact(str(getattr(exc, "message", None) or exc), [key.reveal()] if key else [])
    text = f"{message} {getattr(exc, 'code', '')} {redact(str(getattr(exc, 'body', '')))}".lower()
    kind = _kind_by_class(litellm, exc) or _kind_by_status(status)
    if kind is errors.BadRequest and any(m in text for m in _CONTENT_FILTER_MARKERS):
        kind = errors.ContentFiltered
    elif (kind is errors.BadRequest and "not a valid model" in text) or "llm provider not provided" in text:
        kind = errors.ModelNotFound
    elif kind in _MAYBE_MALFORMED and any(m in text for m in _MALFORMED_MARKERS):
        kind, message = errors.ProviderUnavailable, f"malformed response from the provider: {message}"
    elif "missing credentials" in text:
        kind = errors.AuthenticationFailed
    elif (
        provider in GOOGLE_AUTH
        and kind in _MAYBE_MALFORMED
        and any(m in text for m in _TOKEN_REFUSED_MARKERS)
    ):
        kind, status = errors.AuthenticationFailed, None  # the model endpoint was never reached
        message = "the Google credential was refused at its token endpoint: " + message.split("\n", 1)[0]
    elif provider in GOOGLE_AUTH and kind in _MAYBE_MALFORMED and "temporarily_unavailable" in text:
        # The token endpoint stayed down through google-auth's own retries: worth another try, and
        # the 500 is LiteLLM's wrapper status, not one any server sent.
        kind, status = errors.ConnectionFailed, None
        message = "Google's token endpoint is unavailable: " + message.split("\n", 1)[0]
    elif kind in (errors.ProviderUnavailable, errors.ConnectionFailed) and any(
        m in text for m in _CONNECTION_MARKERS
    ):
        kind = errors.ConnectionFailed
        transport = _transport_error(exc)
        if transport is not None:
            # LiteLLM's 500 is its wrapper's status, not one a server sent; its text ("OpenAIException -
            # Connection error.") hides what happened, which the transport's error under it says.
            status, message = None, _connection_message(transport, api_base or f"the {provider} endpoint")
    retry_after = _retry_after(exc) if kind in (errors.RateLimited, errors.ProviderUnavailable) else None
    return kind(message, provider=provider, model=model, status=status, retry_after=retry_after)


async def close_loop_clients(litellm: Any) -> int:
    """Close and drop every client in LiteLLM's client cache bound to the running loop; the count."""
    from litellm.caching.evicted_client_closer import running_loop_token

    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    token = running_loop_token()
    entries = getattr(cache, "cache_dict", None)
    if token is None or not isinstance(entries, dict):
        return 0
    mine = [key for key in list(entries) if isinstance(key, str) and key.endswith(f"-{token}")]
    closed = 0
    for key in mine:
        client = entries.pop(key, None)
        getattr(cache, "ttl_dict", {}).pop(key, None)
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
            closed += 1
        except Exception as exc:  # a client already closed, or of a shape we do not know
            log.debug("closing a cached LiteLLM client failed: %s", type(exc).__name__)
    return closed
