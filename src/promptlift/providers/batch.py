"""The wire of the providers' Batch APIs (OpenAI's and Anthropic's): submit, poll, read results.

A batch job is many requests answered within a window (24 h) at half the list price. This module
knows each provider's endpoints and shapes; the job's lifecycle (budget, resume, backoff, order)
is ``client.provider_batch``'s.

    OpenAI     POST {api_base}/files (purpose=batch; JSONL of {custom_id, method, url, body}),
               POST {api_base}/batches, GET {api_base}/batches/{id},
               GET {api_base}/files/{output_file_id | error_file_id}/content
    Anthropic  POST {root}/v1/messages/batches ({requests: [{custom_id, params}]}),
               GET {root}/v1/messages/batches/{id}, GET its results_url (JSONL)

Each line's body is the one a live call would send: LiteLLM's own translation for Anthropic and
for OpenAI's API (``LiteLLMProvider.batch_body``: o-series and GPT-5 parameters renamed), the
native path's ``chat_body`` for an OpenAI-compatible server of your own. Each
result becomes the ``Completion`` or the typed error a live call would give (``native``'s error
translation, on the status and body the provider reports for that line), priced at the batch rate
(``pricing.batch_price``). A line the job never ran is ``BatchExpired``.

Keys are resolved as for live calls (``Credentials``, the chain's own keys) and go only to the
endpoint they belong to: every URL is checked against ``allowed_hosts``, redirects are not
followed, and a ``results_url`` on another host than the endpoint's is refused. Transport is
aiohttp, as on the native path (docs/DECISIONS.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from promptlift import errors, pricing
from promptlift.providers.credentials import Credentials, check_host
from promptlift.providers.endpoints import Chain
from promptlift.providers.failures import connection_message
from promptlift.providers.native import NativeProvider, _own_server, _status_error, chat_body
from promptlift.secrets import Secret, redact
from promptlift.types import Completion, CompletionRequest, ToolCall, Usage

ROUTES = ("openai", "anthropic")
DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
ANTHROPIC_VERSION = "2023-06-01"
EXPIRED_ADVICE = (
    "the batch job ended before this line was answered (its completion window closed); it was not "
    "billed: run again to send the unanswered lines (as a new batch, or without --provider-batch)"
)
# Anthropic's error types, as the HTTP status a live call would have had.
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
Result = Completion | errors.PromptliftError


def route_of(model: str) -> str:
    """The batch route of ``model`` (``openai`` or ``anthropic``), or ``ConfigError`` saying why
    it has none and what to do."""
    route = model.split("/", 1)[0] if "/" in model else "openai"
    if route not in ROUTES:
        raise errors.ConfigError(
            f"{model} has no provider Batch API (only openai/ and anthropic/ models have one): drop "
            "--provider-batch (or provider_batch.test_scoring) to send its calls one by one"
        )
    return route


@dataclass(frozen=True)
class JobStatus:
    """A job as the provider last described it. ``ended``: no more results will come."""

    id: str
    status: str  # the provider's own word (in_progress, completed, expired, ended, ...)
    ended: bool
    counts: Mapping[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # OpenAI: the output and error file ids; Anthropic: the results URL


class BatchEndpoint:
    """One provider's Batch API at one endpoint, with one key. Build with ``batch_endpoint``."""

    def __init__(
        self,
        route: str,
        api_base: str,
        key: Secret | None,
        *,
        prices: pricing.Prices | None,
        allowed_hosts: tuple[str, ...] | None,
        litellm_body: Any = None,
    ):
        self.route = route
        self.api_base = api_base.rstrip("/")
        self.key = key
        self.prices = prices
        self.allowed_hosts = allowed_hosts
        self._litellm_body = litellm_body
        self._native = NativeProvider(prices=prices)  # its answer parsing, nothing sent through it
        root = self.api_base[:-3] if self.api_base.endswith("/v1") else self.api_base
        self._root = root if route == "anthropic" else self.api_base

    # -- one request -------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self.route == "anthropic":
            headers = {"anthropic-version": ANTHROPIC_VERSION}
            if self.key:
                headers["x-api-key"] = self.key.reveal()
            return headers
        return {"Authorization": f"Bearer {self.key.reveal()}"} if self.key else {}

    async def _send(
        self, session: aiohttp.ClientSession, method: str, url: str, *, model: str = "", **kw: Any
    ) -> bytes:
        """The body of a 2xx answer; anything else as our typed error (the key scrubbed)."""
        check_host(url, self.allowed_hosts)
        failure: errors.ProviderError | None = None
        try:
            async with session.request(
                method, url, headers=self._headers(), allow_redirects=False, **kw
            ) as response:
                raw = await response.read()
                if not 200 <= response.status < 300:
                    failure = _status_error(
                        response.status, raw, response.headers, self.route, model, self.key
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            kind = errors.Timeout if isinstance(exc, TimeoutError) else errors.ConnectionFailed
            failure = kind(connection_message(exc, url), provider=self.route, model=model)
        if failure is not None:
            raise failure  # outside the except block: no aiohttp exception in __context__
        return raw

    async def _json(self, session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
        raw = await self._send(session, method, url, **kw)
        try:
            return json.loads(raw)
        except ValueError:
            raise errors.ProviderUnavailable(
                f"malformed answer from the Batch API at {redact(url)}: not JSON",
                provider=self.route,
                status=200,
            ) from None

    # -- the job -----------------------------------------------------------------------------
    async def probe(self, session: aiohttp.ClientSession) -> None:
        """``ConfigError`` when the endpoint has no Batch API (an OpenAI-compatible server without
        ``/batches``), asked before anything is uploaded. Anthropic's API always has one."""
        if self.route != "openai":
            return
        try:
            await self._send(session, "GET", f"{self.api_base}/batches", params={"limit": "1"})
        except (errors.ModelNotFound, errors.BadRequest) as exc:
            raise errors.ConfigError(
                f"{redact(self.api_base)} has no Batch API (GET /batches answered HTTP {exc.status}): "
                "drop --provider-batch (or provider_batch.test_scoring) to send the calls one by one"
            ) from None

    def line(self, custom_id: str, request: CompletionRequest) -> dict[str, Any]:
        """One line of a job: the body a live call of ``request`` would send."""
        if self.route == "anthropic" or not _own_server(self.api_base):
            if self._litellm_body is None:
                raise errors.ConfigError(
                    f"{self.route} batch lines are built by the LiteLLM provider, and this client has none "
                    "(a provider of your own was given): send the calls live instead"
                )
            body = self._litellm_body(request)
            if self.route == "anthropic":
                return {"custom_id": custom_id, "params": body}
        else:
            body = chat_body(request)
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}

    async def submit(self, session: aiohttp.ClientSession, lines: Sequence[dict[str, Any]]) -> str:
        """Create the job (OpenAI: upload the input file first); its id."""
        if self.route == "anthropic":
            created = await self._json(
                session, "POST", f"{self._root}/v1/messages/batches", json={"requests": list(lines)}
            )
            return str(created["id"])
        data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename="batch.jsonl", content_type="application/jsonl")
        uploaded = await self._json(session, "POST", f"{self.api_base}/files", data=form)
        spec = {
            "input_file_id": uploaded["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        created = await self._json(session, "POST", f"{self.api_base}/batches", json=spec)
        return str(created["id"])

    async def status(self, session: aiohttp.ClientSession, job_id: str) -> JobStatus:
        if self.route == "anthropic":
            job = await self._json(session, "GET", f"{self._root}/v1/messages/batches/{job_id}")
            state = str(job.get("processing_status"))
            url = job.get("results_url")
            return JobStatus(
                job_id, state, state == "ended", job.get("request_counts") or {}, (url,) if url else ()
            )
        job = await self._json(session, "GET", f"{self.api_base}/batches/{job_id}")
        state = str(job.get("status"))
        ended = state in ("completed", "failed", "expired", "cancelled")
        files = tuple(str(job[k]) for k in ("output_file_id", "error_file_id") if job.get(k))
        if state == "failed" and not files:
            problems = (job.get("errors") or {}).get("data") or [{}]
            reason = redact(str(problems[0].get("message") or "no reason given"))
            raise errors.BadRequest(
                f"the batch job {job_id} failed: {reason}",
                provider="openai",
            )
        return JobStatus(job_id, state, ended, job.get("request_counts") or {}, files)

    async def results(
        self, session: aiohttp.ClientSession, job: JobStatus, requests: Mapping[str, CompletionRequest]
    ) -> dict[str, Result]:
        """Every line's answer or typed error, by custom_id; a line missing from the results (the
        job expired or was cancelled before it) is ``BatchExpired``."""
        found: dict[str, Result] = {}
        for ref in job.files:
            if self.route == "anthropic":
                if urlsplit(ref).netloc != urlsplit(self._root).netloc:
                    raise errors.ConfigError(
                        f"the batch results URL {redact(ref)} is not on {redact(self._root)}: the key is "
                        "not sent there"
                    )
                raw = await self._send(session, "GET", ref)
            else:
                raw = await self._send(session, "GET", f"{self.api_base}/files/{ref}/content")
            for text in raw.decode("utf-8", "replace").splitlines():
                if text.strip():
                    item = json.loads(text)
                    custom_id = str(item.get("custom_id"))
                    if custom_id in requests:
                        found[custom_id] = self._parse(item, requests[custom_id])
        for custom_id, request in requests.items():
            if custom_id not in found:
                found[custom_id] = errors.BatchExpired(
                    EXPIRED_ADVICE, provider=self.route, model=request.model
                )
        return found

    # -- one result line ---------------------------------------------------------------------
    def _parse(self, item: Mapping[str, Any], request: CompletionRequest) -> Result:
        try:
            if self.route == "anthropic":
                return self._anthropic(item.get("result") or {}, request)
            return self._openai(item, request)
        except errors.PromptliftError as exc:
            return exc

    def _openai(self, item: Mapping[str, Any], request: CompletionRequest) -> Result:
        response = item.get("response")
        if isinstance(response, Mapping):
            status = int(response.get("status_code") or 0)
            raw = json.dumps(response.get("body")).encode()
            if 200 <= status < 300:
                return self._repriced(self._native._to_completion(raw, request, "openai", 0.0), request)
            return _status_error(status, raw, {}, "openai", request.model, self.key)
        error = item.get("error") or {}
        if str(error.get("code")) == "batch_expired":
            return errors.BatchExpired(EXPIRED_ADVICE, provider="openai", model=request.model)
        message = redact(str(error.get("message") or "the line failed without a reason"))
        return errors.BadRequest(message, provider="openai", model=request.model)

    def _anthropic(self, result: Mapping[str, Any], request: CompletionRequest) -> Result:
        kind = result.get("type")
        if kind == "succeeded":
            return self._repriced(_anthropic_completion(result.get("message") or {}, request), request)
        if kind == "errored":
            body = result.get("error") or {}
            inner = body.get("error", body) if isinstance(body, Mapping) else {}
            status = _ANTHROPIC_STATUS.get(str(inner.get("type")), 400) if isinstance(inner, Mapping) else 400
            return _status_error(status, json.dumps(body).encode(), {}, "anthropic", request.model, self.key)
        return errors.BatchExpired(
            EXPIRED_ADVICE if kind == "expired" else f"the line was {kind}: not answered, not billed",
            provider="anthropic",
            model=request.model,
        )

    def _repriced(self, completion: Completion, request: CompletionRequest) -> Completion:
        """At the batch rate, from the usage the provider reported."""
        price = pricing.batch_price(request.model, self.prices)
        if price is None:
            return completion.replace(served_by="batch")
        usage, listed = completion.usage, pricing.price_of(request.model, self.prices)
        cost = price.cost(usage)
        # The prompt cache's saving at the list rate, the batch discount's apart: together with the
        # cost they make the list price of the same tokens uncached, as for a live call.
        return completion.replace(
            cost_usd=cost,
            cache_saved_usd=(listed or price).cache_saving(usage),
            batch_saved_usd=listed.cost(usage) - cost if listed else 0.0,
            served_by="batch",
        )


def _anthropic_completion(message: Mapping[str, Any], request: CompletionRequest) -> Completion:
    """A Messages API answer as a ``Completion`` (LiteLLM's mapping: text joined, tool_use blocks as
    calls, stop reasons in OpenAI's words, cache reads and writes inside the input count)."""
    texts, calls = [], []
    for block in message.get("content") or ():
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append(ToolCall(str(block.get("name") or ""), arguments, str(block.get("id") or "")))
    stops = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
    raw = message.get("usage") or {}
    read, written = (
        int(raw.get("cache_read_input_tokens") or 0),
        int(raw.get("cache_creation_input_tokens") or 0),
    )
    usage = Usage(
        input_tokens=int(raw.get("input_tokens") or 0) + read + written,
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
        reported=bool(raw),
    )
    return Completion(
        content="".join(texts),
        model=request.model,
        provider="anthropic",
        usage=usage,
        finish_reason=stops.get(str(message.get("stop_reason")), str(message.get("stop_reason") or "stop")),
        tool_calls=tuple(calls),
    )


Route = Literal["openai", "anthropic"]


async def batch_endpoint(
    model: str,
    *,
    credentials: Credentials,
    chain: Chain,
    prices: pricing.Prices | None,
    allowed_hosts: tuple[str, ...] | None,
    litellm_body: Any = None,
) -> BatchEndpoint:
    """The Batch API that serves ``model``, with the key a live call of it would send there."""
    route = route_of(model)
    api_base = chain.endpoint(model) or DEFAULT_BASE[route]
    check_host(api_base, allowed_hosts)
    own, shared = chain.own_key(model)
    key = await credentials.resolve(route, api_base=api_base, own=own, shared=shared)
    return BatchEndpoint(
        route, api_base, key.secret, prices=prices, allowed_hosts=allowed_hosts, litellm_body=litellm_body
    )
