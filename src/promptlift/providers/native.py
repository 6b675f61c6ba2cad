"""A native path for OpenAI-compatible chat completions: aiohttp, no LiteLLM in the call.

LiteLLM's request building and response parsing cost ~2.7 ms of CPU per call (BENCHMARKS.md); for
users scoring thousands of rows against their own vLLM or llama.cpp server, that CPU is the
bottleneck, not the server. This provider sends the same request as the LiteLLM path, straight to
``{api_base}/chat/completions``, and returns the same ``Completion`` and the same typed errors:
``promptlift.testing.provider_conformance`` holds both to that on the wire.

It serves ``openai/`` and ``hosted_vllm/`` models that have an ``api_base`` (an OpenAI-compatible
server: vLLM, llama.cpp, Ollama's ``/v1``, a LiteLLM proxy) and no provider-specific ``extra``.
Anything else — OpenAI's own API (whose o-series need parameters renamed), Azure, Anthropic,
Gemini, ``extra`` settings — stays on LiteLLM: ``Transports`` sends each request to the path that
covers it. Work that can be done once is: the URL and headers are built once per endpoint and key,
and one aiohttp session (one connection pool) serves each event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from promptlift import errors, pricing
from promptlift.providers.base import Provider, answer, closing
from promptlift.providers.credentials import (
    Credentials,
    ResolvedKey,
    check_host,
    open_with_refresh,
    send_with_refresh,
)
from promptlift.providers.endpoints import Chain, ModelSpec, split_endpoint
from promptlift.providers.failures import (
    CONTENT_FILTER_MARKERS,
    CONTEXT_WINDOW_MARKERS,
    connection_message,
    kind_by_status,
)
from promptlift.providers.retry_after import retry_after_from_headers
from promptlift.providers.streaming import StreamAssembler, cut_short
from promptlift.secrets import Secret, redact
from promptlift.types import Completion, CompletionRequest, StreamEvent, ToolCall, Usage, logprobs_from

ROUTES = frozenset({"openai", "hosted_vllm"})


async def _closing(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Holds ``session`` open until closed (``aclose()``, or its loop's shutdown), then closes it."""
    try:
        yield
    finally:
        await session.close()


@functools.lru_cache(maxsize=256)  # asked on every request: parsed once per endpoint
def _own_server(api_base: str) -> bool:
    """Not OpenAI's own API (its o-series need parameters renamed) nor Azure's (deployments,
    versions): those stay LiteLLM's."""
    host = (urlsplit(api_base).hostname or "").lower()
    return host != "api.openai.com" and not host.endswith(".openai.azure.com")


def _route(model: str) -> tuple[str, str]:
    """``hosted_vllm/meta/llama`` → (``hosted_vllm``, ``meta/llama``); a bare name is OpenAI's."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else ("openai", model)


def chat_body(request: CompletionRequest) -> dict[str, Any]:
    """The ``/chat/completions`` body of ``request`` (also one line of an OpenAI batch job)."""
    _, name = _route(request.model)
    params = request.generation_params()
    if request.answer_limit is not None:
        params["max_tokens"] = request.answer_limit  # the caller's, else a budget's ceiling
    return {"model": name, "messages": [m.to_dict() for m in request.messages], **params}


class NativeProvider(Provider):
    """One request per call to an OpenAI-compatible ``/chat/completions``, over aiohttp.

    The settings mean what they mean for ``LiteLLMProvider``: ``models`` (a chain's own endpoints
    and keys), ``api_base``, ``credentials``, ``prices``, ``allowed_hosts``.
    """

    name = "native"

    def __init__(
        self,
        *,
        api_key: Secret | str | None = None,
        api_base: str | None = None,
        credentials: Credentials | None = None,
        prices: pricing.Prices | None = None,
        allowed_hosts: tuple[str, ...] | None = None,
        models: Sequence[str | ModelSpec] = (),
        extra: Mapping[str, Any] | None = None,
    ):
        self.credentials = credentials or Credentials(api_key)
        self.api_base, self.extra = split_endpoint(api_base, dict(extra or {}), "NativeProvider")
        self.prices = prices
        self.allowed_hosts = allowed_hosts
        self.chain = Chain(models, self.api_base)
        for spec in self.chain.specs:
            if spec.api_base:
                check_host(spec.api_base, allowed_hosts, what=f"the api_base of {spec.model}")
            for replica in spec.replicas[1:]:  # the first is its api_base
                check_host(replica, allowed_hosts, what=f"a replica of {spec.model}")
        if self.api_base:
            check_host(self.api_base, allowed_hosts)
        self._sessions: dict[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]
        ] = {}
        self._headers: dict[tuple[str, str | None], dict[str, str]] = {}
        self._checked: set[str] = set()

    def covers(self, request: CompletionRequest) -> bool:
        """Whether this path sends ``request`` as LiteLLM would: an OpenAI-compatible route with an
        endpoint, and no setting only LiteLLM understands."""
        provider, _ = _route(request.model)
        if provider not in ROUTES or self.extra:
            return False
        spec = self.chain.spec(request.model)
        if spec is not None and spec.extra:
            return False
        api_base = request.api_base or self.chain.endpoint(request.model)
        if not api_base:
            return False
        return _own_server(api_base)

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        found = self._sessions.get(loop)
        if found is not None and not found[0].closed:
            return found[0]
        # No limit of its own: the client's one concurrency limit bounds the calls in flight.
        for closed in [lp for lp in self._sessions if lp.is_closed()]:  # their pools closed with them
            self._sessions.pop(closed, None)
        session = aiohttp.ClientSession(  # trust_env: HTTP(S)_PROXY and NO_PROXY, as LiteLLM's path
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), trust_env=True
        )
        # Closed with its loop: a caller's loop (the async API under asyncio.run) ends without telling
        # us, but asyncio.run closes the async generators it started, and this one closes the pool.
        keeper = _closing(session)
        await keeper.__anext__()
        self._sessions[loop] = (session, keeper)
        return session

    async def aclose(self) -> None:
        """Close every connection pool: the running loop's here, another live loop's on that loop
        (scheduled, not awaited: that loop may be the one waiting for this close)."""
        current = asyncio.get_running_loop()
        sessions, self._sessions = self._sessions, {}
        for loop, (_, keeper) in sessions.items():
            if loop is current:
                await keeper.aclose()
            elif not loop.is_closed():  # a closed loop's shutdown closed its pool already
                asyncio.run_coroutine_threadsafe(keeper.aclose(), loop)

    def _endpoint(self, request: CompletionRequest) -> str:
        api_base = request.api_base or self.chain.endpoint(request.model)
        if not api_base:
            raise errors.ConfigError(f"{request.model}: the native path needs an api_base")
        if api_base not in self._checked:
            check_host(api_base, self.allowed_hosts)
            self._checked.add(api_base)
        return api_base

    def _headers_for(self, url: str, key: Secret | None) -> dict[str, str]:
        cache_key = (url, key.reveal() if key else None)
        headers = self._headers.get(cache_key)
        if headers is None:
            if len(self._headers) > 64:  # a rotating credential: old keys are not kept around
                self._headers.clear()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key.reveal()}"
            self._headers[cache_key] = headers
        return headers

    def _body(self, request: CompletionRequest, *, stream: bool = False) -> bytes:
        body = chat_body(request)
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return json.dumps(body, ensure_ascii=False).encode()

    async def acomplete(self, request: CompletionRequest) -> Completion:
        provider, _ = _route(request.model)
        api_base = self._endpoint(request)
        own, shared = self.chain.own_key(request.model)
        key = await self.credentials.resolve(provider, api_base=api_base, own=own, shared=shared)
        body = self._body(request)
        url = api_base.rstrip("/") + "/chat/completions"

        async def send(key: ResolvedKey) -> Completion:
            return await self._send(url, body, request, provider, key.secret, api_base)

        return await send_with_refresh(self.credentials, provider, key, send, model=request.model)

    async def _send(
        self,
        url: str,
        body: bytes,
        request: CompletionRequest,
        provider: str,
        key: Secret | None,
        api_base: str,
    ) -> Completion:
        started = time.perf_counter()
        response = await self._open(url, body, request, provider, key, api_base)
        failure: errors.ProviderError | None = None
        try:
            raw = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:  # dropped mid-answer
            failure = _transport_failure(exc, request, provider, api_base)
        finally:
            response.release()
        if failure is not None:
            raise failure  # outside the except block: no aiohttp exception in __context__
        return self._to_completion(raw, request, provider, time.perf_counter() - started)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """The answer as server-sent events (``stream: true``, usage asked for at the end); a 401
        refreshes the credential as ``acomplete`` does, before anything was received."""
        provider, _ = _route(request.model)
        api_base = self._endpoint(request)
        own, shared = self.chain.own_key(request.model)
        key = await self.credentials.resolve(provider, api_base=api_base, own=own, shared=shared)
        body = self._body(request, stream=True)
        url = api_base.rstrip("/") + "/chat/completions"
        started = time.perf_counter()

        async def open_stream(key: ResolvedKey) -> aiohttp.ClientResponse:
            return await self._open(url, body, request, provider, key.secret, api_base)

        response, sent = await open_with_refresh(
            self.credentials, provider, key, open_stream, model=request.model
        )
        assembler = StreamAssembler()
        try:
            async with closing(_sse_chunks(response, request, provider, api_base, assembler)) as stream:
                async for chunk in stream:
                    for event in _feed(assembler, chunk):
                        yield event
        finally:
            response.release()
        completion = assembler.completion(
            request, provider, served_by=self.name, latency=time.perf_counter() - started, prices=self.prices
        )
        yield completion.replace(attempts=sent)

    async def _open(
        self,
        url: str,
        body: bytes,
        request: CompletionRequest,
        provider: str,
        key: Secret | None,
        api_base: str,
    ) -> aiohttp.ClientResponse:
        """The response to a request (streamed or not), its body not yet read; a status other than
        2xx as its error, a transport failure as ours."""
        failure: errors.ProviderError | None = None
        try:
            response = await (await self._session()).post(
                url,
                data=body,
                headers=self._headers_for(url, key),
                timeout=aiohttp.ClientTimeout(total=request.timeout),
                allow_redirects=False,  # a redirect would take the prompt past the host allow-list
            )
            if not 200 <= response.status < 300:
                raw = await response.read()
                response.release()
                raise _status_error(response.status, raw, response.headers, provider, request.model, key)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            failure = _transport_failure(exc, request, provider, api_base)
        if failure is not None:
            raise failure  # outside the except block: no aiohttp exception in __context__
        return response

    def _to_completion(
        self, raw: bytes, request: CompletionRequest, provider: str, latency: float
    ) -> Completion:
        try:
            data = json.loads(raw)
        except ValueError as exc:  # the server's fault, so worth another try, as on the LiteLLM path
            raise errors.ProviderUnavailable(
                f"malformed response from the provider: the body is not JSON ({exc})",
                provider=provider,
                model=request.model,
                status=200,
            ) from None
        if isinstance(data, dict) and data.get("error") and not data.get("choices"):
            # a proxy's failure inside a 200: the error it names, not a retried "no answer"
            raise _status_error(_error_status(data["error"]), raw, {}, provider, request.model, None)
        try:
            return self._completion_of(data, request, provider, latency)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # a field of the wrong shape
            failure = errors.ProviderUnavailable(
                f"malformed response from the provider: {type(exc).__name__} reading the answer ({exc})",
                provider=provider,
                model=request.model,
                status=200,
            )
        raise failure  # outside the except block: nothing of the parse in __context__

    def _completion_of(
        self, data: Any, request: CompletionRequest, provider: str, latency: float
    ) -> Completion:
        choices = data.get("choices") if isinstance(data, dict) else None
        choice: Any = choices[0] if isinstance(choices, list) and choices else {}
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise errors.ProviderUnavailable(
                "malformed response from the provider: a 200 with no choices (no answer in the body)",
                provider=provider,
                model=request.model,
                status=200,
            )
        tool_calls = tuple(ToolCall.from_dict(tc) for tc in message.get("tool_calls") or ())
        if any(not call.name for call in tool_calls):
            raise ValueError("a tool call without a function name")
        finish = str(choice.get("finish_reason") or "stop")
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts in an answer: their text, joined
            content = "".join(str(p["text"]) for p in content if isinstance(p, dict) and "text" in p)
        if not isinstance(content, str):
            raise TypeError(f"content is a {type(content).__name__}, not text")
        return answer(
            request,
            provider,
            content=content,
            tool_calls=tool_calls,
            finish=finish,
            usage=_usage(data.get("usage")),
            latency=latency,
            served_by=self.name,
            prices=self.prices,
            logprobs=logprobs_from(choice.get("logprobs")),
            samples=_samples(choices) if isinstance(choices, list) and len(choices) > 1 else (),
        )


def _transport_failure(
    exc: BaseException, request: CompletionRequest, provider: str, api_base: str
) -> errors.ProviderError:
    """An aiohttp or socket failure as our error: no answer in time, or a connection that failed
    (refused, or dropped mid-answer)."""
    if isinstance(exc, TimeoutError):
        return errors.Timeout(
            f"no answer from {redact(api_base)} within {request.timeout:g} s",
            provider=provider,
            model=request.model,
        )
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    return errors.ConnectionFailed(
        connection_message(cause, api_base), provider=provider, model=request.model
    )


async def _sse_chunks(
    response: aiohttp.ClientResponse,
    request: CompletionRequest,
    provider: str,
    api_base: str,
    assembler: StreamAssembler,
) -> AsyncIterator[dict[str, Any]]:
    """Each ``data:`` event's JSON, until ``data: [DONE]``; a stream cut before it is an error."""
    while True:
        failure: errors.ProviderError | None = None
        try:
            line = await response.content.readline()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            failure = _transport_failure(exc, request, provider, api_base)
        if failure is not None:
            raise failure
        if not line:
            raise cut_short(request, provider, assembler.events)
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("data:"):
            continue  # blank lines between events, comments, event names
        data = text[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict) or "error" in chunk:
            raise errors.ProviderUnavailable(
                f"malformed stream from the provider: {data[:200]}",
                provider=provider,
                model=request.model,
                status=200,
            )
        yield chunk


def _feed(assembler: StreamAssembler, chunk: dict[str, Any]) -> list[StreamEvent]:
    """One OpenAI chunk into the assembler: its delta's text and tool-call pieces, its finish
    reason, its usage (the last chunk's)."""
    choices = chunk.get("choices")
    choice: Any = choices[0] if isinstance(choices, list) and choices else {}
    delta = choice.get("delta") if isinstance(choice, dict) else None
    delta = delta if isinstance(delta, dict) else {}
    calls = []
    for piece in delta.get("tool_calls") or ():
        function = piece.get("function") or {}
        calls.append(
            (
                int(piece.get("index") or 0),
                str(piece.get("id") or ""),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        )
    content = delta.get("content")
    usage = _usage(chunk["usage"]) if isinstance(chunk.get("usage"), dict) else None
    return assembler.feed(
        content if isinstance(content, str) else None,
        calls,
        str(choice.get("finish_reason") or "") if isinstance(choice, dict) else None,
        usage,
    )


def _samples(choices: list[Any]) -> tuple[str, ...]:
    """Every choice's text, in index order (the first is the completion's content)."""
    ordered = sorted(choices, key=lambda c: int(c.get("index") or 0))
    return tuple(str((c.get("message") or {}).get("content") or "") for c in ordered)


def _usage(raw: Any) -> Usage:
    """OpenAI's usage object as ours; none, or all zeros, is marked unreported (no real call has
    no input), for the budget to charge at the worst case."""
    if not isinstance(raw, dict):
        return Usage(reported=False)
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    counted = Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt.get("cached_tokens") or 0) if isinstance(prompt, dict) else 0,
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0) if isinstance(completion, dict) else 0,
    )
    if counted.input_tokens == 0 and counted.output_tokens == 0:
        return Usage(reported=False)
    return counted


def _error_status(error: Any) -> int:
    """The status a 200's ``error`` object stands for: its numeric code, else a 400."""
    code = error.get("code") if isinstance(error, dict) else None
    try:
        status = int(code) if code is not None else 400
    except (TypeError, ValueError):
        return 400
    return status if 400 <= status < 600 else 400


def _status_error(
    status: int, raw: bytes, headers: Mapping[str, str], provider: str, model: str, key: Secret | None
) -> errors.ProviderError:
    """A non-200 answer as our error: by status, then by what its body says (a 400 may be a
    prompt too long or a content-filter refusal); the key is scrubbed from anything echoed."""
    text = raw.decode("utf-8", "replace")
    message, code = text.strip()[:500], ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = str(error.get("code") or error.get("type") or "")
        elif isinstance(error, str):
            message = error
    message = redact(message, [key.reveal()] if key else [])
    words = f"{message} {code}".lower()
    if 300 <= status < 400:
        where = redact(str(headers.get("Location", "elsewhere")))
        return errors.BadRequest(
            f"the server redirected the request (HTTP {status}) to {where}; redirects are not followed "
            "(they would take the prompt past the host allow-list): set api_base to where it should go",
            provider=provider,
            model=model,
            status=status,
        )
    kind = kind_by_status(status)
    if kind in (errors.BadRequest, errors.ContextWindowExceeded) and any(
        m in words for m in CONTEXT_WINDOW_MARKERS
    ):
        kind = errors.ContextWindowExceeded
    elif kind is errors.BadRequest and any(m in words for m in CONTENT_FILTER_MARKERS):
        kind = errors.ContentFiltered
    elif kind is errors.BadRequest and "not a valid model" in words:
        kind = errors.ModelNotFound
    retry_after = (
        retry_after_from_headers(headers)
        if kind in (errors.RateLimited, errors.ProviderUnavailable)
        else None
    )
    return kind(
        message or f"HTTP {status}", provider=provider, model=model, status=status, retry_after=retry_after
    )


class Transports(Provider):
    """Each request to the native path when it covers it, else to LiteLLM."""

    name = "transports"

    def __init__(self, native: NativeProvider, fallback: Provider):
        self.native = native
        self.fallback = fallback

    async def acomplete(self, request: CompletionRequest) -> Completion:
        if self.native.covers(request):
            return await self.native.acomplete(request)
        return await self.fallback.acomplete(request)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        path = self.native if self.native.covers(request) else self.fallback
        async with closing(path.astream(request)) as stream:
            async for event in stream:
                yield event

    async def preflight(self, model: str) -> None:
        await self.fallback.preflight(model)  # the route and model checks are LiteLLM's either way

    async def aclose(self) -> None:
        await self.native.aclose()
        await self.fallback.aclose()
