"""A real HTTP server on loopback that speaks the model APIs promptlift calls, for tests and benchmarks.

    from promptlift.testing.server import LoopbackServer, ok, rate_limited, server_error

    with LoopbackServer() as srv:
        srv.script(rate_limited(retry_after=2), ok("hello"))   # the next two requests, in order
        ...call  model="openai/gpt-4o-mini", api_base=srv.openai_base ...
        assert len(srv.requests) == 2
        assert srv.requests[1].time - srv.requests[0].time >= 2

Protocols, chosen by the request path (so one server serves every route at once):

    openai     POST .../chat/completions                       (vLLM, llama.cpp server, Ollama /v1)
    completions POST .../completions                           (text completion, for base models)
    azure      POST /openai/deployments/<deployment>/chat/completions?api-version=...
    anthropic  POST .../messages
    gemini     POST .../models/<model>:generateContent           (AI Studio)
    vertex     POST .../projects/<p>/locations/<l>/publishers/google/models/<model>:generateContent
    ollama     POST /api/chat                                     (Ollama's native protocol)
    oauth      POST .../token                                     (Google's token exchange, ``token_uri``)
    batch      .../files, .../batches, .../messages/batches       (OpenAI's and Anthropic's Batch APIs:
               ``batches``, a ``testing.batch_api.BatchEmulator``; each line answered as if sent live)

Each request takes the next reply from the script of its model (``script(..., model=...)``), else
from the shared script, else the default reply (``set_default``; out of the box ``ok()``). A reply is
protocol-neutral: ``rate_limited()`` becomes a 429 in the body shape of whichever protocol asked,
and ``ok(tool_calls=(tool_call("get_weather", {"city": "Oslo"}),))`` an OpenAI ``tool_calls``
message, an Anthropic ``tool_use`` content block or a Gemini ``functionCall`` part (the replies
are defined in ``testing.replies``, re-exported here; Google's shapes are in ``testing.google``).
``require_key(k)`` answers 401 to every request that does not present ``k``.

A token request (the JWT-bearer grant a Google service account makes; ``testing.google`` makes such
accounts) is answered with a new access token (``issued_tokens``), never from the scripts: a script
meant for the model is not used up by the exchange before it. ``handler`` may still answer it with
an error reply, rendered as an OAuth error: a 429 or a 5xx as ``temporarily_unavailable`` (which
google-auth retries), any other as ``invalid_grant`` (see ``testing.google.token_error``).

A chat request with ``"stream": true`` (OpenAI's protocol, Azure's) is answered as server-sent
events (``testing.sse``); ``cut_stream`` drops such an answer mid-stream, ``held_stream`` pauses it.

``emulate_prompt_cache()`` makes the answers report prompt-cache reads and writes the way each
provider does, from the prefixes the server has already answered (``testing.prompt_cache``):
OpenAI's and Gemini's automatic caches, Anthropic's only at ``cache_control`` marks.

Every request is recorded (``requests``) before it is answered: arrival time (``time.monotonic``),
method, path, query, headers (lower-case names), raw body, protocol, model and the key presented.
``conversation`` reads its messages the same way for every protocol (system, user, assistant turns
with their tool calls, tool turns with their results; ``testing.conversation``), and ``tools`` the
names of the tools it offers, so one ``handler`` can play a tool-calling model on every route.

Thread-safety: the server answers each connection on its own thread; scripting and reading
``requests`` are safe from any thread. Slow replies end early when the server closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from promptlift.testing.batch_api import BatchEmulator, is_batch_path
from promptlift.testing.conversation import Turn, WireCall, WireResult, offered_tools, read_conversation
from promptlift.testing.google import (
    generate_content_body,
    generate_content_error,
    token_error,
    token_response,
)
from promptlift.testing.prompt_cache import Metered, PromptCacheEmulator
from promptlift.testing.replies import (
    Reply,
    bad_request,
    content_filtered,
    context_length_exceeded,
    cut_stream,
    drop_connection,
    forbidden,
    held_stream,
    http_date,
    malformed_json,
    metered,
    not_found,
    ok,
    parsed_calls,
    rate_limited,
    server_error,
    slow,
    tool_call,
    unauthorized,
)
from promptlift.testing.sse import SSE_HEADERS, stream_chunks, wants_stream, write_events

__all__ = [
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "Turn",
    "WireCall",
    "WireResult",
    "bad_request",
    "content_filtered",
    "context_length_exceeded",
    "cut_stream",
    "drop_connection",
    "forbidden",
    "held_stream",
    "http_date",
    "malformed_json",
    "metered",
    "not_found",
    "ok",
    "rate_limited",
    "server_error",
    "slow",
    "tool_call",
    "unauthorized",
]

Protocol = Literal[
    "openai", "azure", "anthropic", "gemini", "vertex", "ollama", "oauth", "completions", "batch", "unknown"
]


# -- recorded requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it reached the wire."""

    time: float  # time.monotonic() when its body had been read
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    protocol: Protocol
    model: str
    key: str | None  # the credential presented (bearer, api-key, x-api-key, x-goog-api-key or ?key=)

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when empty or not JSON)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def conversation(self) -> tuple[Turn, ...]:
        """The request's turns read alike whatever its protocol: each with its role, text, the tool
        calls an assistant turn carries and the results a tool turn carries (``testing.conversation``
        says how each protocol maps). Empty for a body that is not a chat (a token exchange)."""
        return read_conversation(self.protocol, self.json)

    @property
    def tools(self) -> tuple[str, ...]:
        """The names of the tools the request offers the model, in order (none: ``()``)."""
        return offered_tools(self.protocol, self.json)


_VERTEX_PATH = re.compile(r"/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):\w+$")
_GEMINI_PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")
_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/chat/completions$")


def _classify(path: str, body: Any) -> tuple[Protocol, str]:
    fields = body if isinstance(body, dict) else {}
    model = str(fields.get("model", ""))
    if m := _AZURE_PATH.search(path):
        return "azure", m.group(1)
    if path.endswith("/chat/completions"):
        return "openai", model
    if path.endswith("/completions"):
        return "completions", model
    if path.endswith("/messages"):
        return "anthropic", model
    if m := _VERTEX_PATH.search(path):
        return "vertex", m.group(1)
    if m := _GEMINI_PATH.search(path):
        return "gemini", m.group(1)
    if path.endswith("/token"):
        return "oauth", ""
    if path.endswith("/api/chat"):
        return "ollama", model
    return "unknown", model


def _presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in ("api-key", "x-api-key", "x-goog-api-key"):
        if name in headers:
            return headers[name]
    return query.get("key")


# -- rendering a reply in each protocol's shape ---------------------------------------------------

_ids = itertools.count(1)  # response ids (msg_, chatcmpl-); tool-call ids have their own count


def _words(request: RecordedRequest) -> int:
    body = request.json if isinstance(request.json, dict) else {}
    texts: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    prompt = body.get("prompt")  # text completion: a string, or a list of them (a batch)
    texts.extend([prompt] if isinstance(prompt, str) else [p for p in prompt or () if isinstance(p, str)])
    system = body.get("system")
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts.extend(str(part.get("text", "")) for part in system if isinstance(part, dict))
    for item in [*(body.get("contents") or ()), body.get("system_instruction") or {}]:
        texts.extend(str(p.get("text", "")) for p in (item.get("parts") or ()) if isinstance(p, dict))
    return sum(len(t.split()) for t in texts)


def _anthropic_content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.content or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.content})
    blocks += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in parsed_calls(reply)]
    return blocks


def _success_body(reply: Reply, request: RecordedRequest) -> dict[str, Any]:
    n_in = _words(request) if reply.input_tokens is None else reply.input_tokens
    n_out = len(reply.content.split()) if reply.output_tokens is None else reply.output_tokens
    model = request.model or "loopback-model"
    if request.protocol == "anthropic":
        stops = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
        stop = stops.get(reply.finish_reason, reply.finish_reason)
        return {
            "id": f"msg_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _anthropic_content(reply),
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": _anthropic_usage(reply, n_in, n_out),
        }
    if request.protocol in ("gemini", "vertex"):
        return generate_content_body(
            reply, model=model, input_tokens=n_in, output_tokens=n_out, cached_tokens=reply.cached_tokens
        )
    if request.protocol == "ollama":
        return {
            "model": model,
            "created_at": email.utils.formatdate(usegmt=True),
            "message": {"role": "assistant", "content": reply.content},
            "done": True,
            "done_reason": reply.finish_reason,
            "prompt_eval_count": n_in,
            "eval_count": n_out,
        }
    if request.protocol == "completions":
        return _completion_body(reply, model, n_in, n_out)
    text = reply.content if reply.content or not reply.tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in parsed_calls(reply)
        ]
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        **({"usage": _openai_usage(reply, n_in, n_out)} if reply.report_usage else {}),
    }


def _openai_usage(reply: Reply, n_in: int, n_out: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
    if reply.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    if reply.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return usage


def _anthropic_usage(reply: Reply, n_in: int, n_out: int) -> dict[str, Any]:
    """Anthropic counts uncached input apart from the prompt cache's reads and writes."""
    usage: dict[str, Any] = {
        "input_tokens": max(0, n_in - reply.cached_tokens - reply.cache_write_tokens),
        "output_tokens": n_out,
    }
    if reply.cached_tokens or reply.cache_write_tokens:
        usage["cache_creation_input_tokens"] = reply.cache_write_tokens
        usage["cache_read_input_tokens"] = reply.cached_tokens
    return usage


def _completion_body(reply: Reply, model: str, n_in: int, n_out: int) -> dict[str, Any]:
    """OpenAI's legacy ``/completions`` answer (what llama.cpp and vLLM serve for base models)."""
    return {
        "id": f"cmpl-{next(_ids)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": reply.content, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }


# Per error kind: (OpenAI type, OpenAI code, Anthropic type, default message). Google's: testing.google.
_ERRORS: dict[str, tuple[str, str | None, str, str]] = {
    "rate_limit": ("requests", "rate_limit_exceeded", "rate_limit_error", ""),
    "server": ("server_error", None, "api_error", ""),
    "auth": ("invalid_request_error", "invalid_api_key", "authentication_error", ""),
    "permission": ("invalid_request_error", None, "permission_error", ""),
    "not_found": ("invalid_request_error", "model_not_found", "not_found_error", ""),
    "bad_request": ("invalid_request_error", None, "invalid_request_error", ""),
    "context_length": (
        "invalid_request_error",
        "context_length_exceeded",
        "invalid_request_error",
        "This model's maximum context length is 8192 tokens. However, your messages resulted in "
        "9000 tokens. Please reduce the length of the messages.",
    ),
    "content_policy": ("invalid_request_error", "content_policy_violation", "invalid_request_error", ""),
}


def _error_body(reply: Reply, request: RecordedRequest) -> dict[str, Any]:
    kind = reply.error or "server"
    oa_type, oa_code, an_type, default = _ERRORS[kind]
    message = reply.message or default or f"{kind} error"
    if kind == "context_length" and request.protocol == "anthropic":
        message = "prompt is too long: 210000 tokens > 200000 maximum"
    if kind == "server" and reply.status == 529:
        an_type = "overloaded_error"
    if request.protocol == "anthropic":
        return {"type": "error", "error": {"type": an_type, "message": message}}
    if request.protocol == "oauth":
        return token_error(reply.status, message)
    if request.protocol in ("gemini", "vertex"):
        return generate_content_error(kind, reply.status, message)
    if request.protocol == "ollama":
        return {"error": message}
    code = oa_code
    if kind == "content_policy" and request.protocol == "azure":
        code = "content_filter"
    return {"error": {"message": message, "type": oa_type, "param": None, "code": code}}


# -- the server ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers do
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``requests``
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if is_batch_path(url.path):
            self._batch("GET", b"")
            return
        self._send(404, {"error": {"message": "only POST is served", "type": "not_found"}})

    def _batch(self, method: str, body: bytes) -> None:
        """A Batch API request (``testing.batch_api``): recorded, its key checked, then answered."""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        key = _presented_key(headers, query)
        request = RecordedRequest(time.monotonic(), method, url.path, query, headers, body, "batch", "", key)
        owner = self.server.owner
        if not owner._record_batch(request):
            self._send(401, _error_body(unauthorized(), request))
            return
        batches = owner.batches
        status, payload = (
            batches.post(url.path, headers, body, key) if method == "POST" else batches.get(url.path, query)
        )
        if isinstance(payload, bytes):
            self._send_raw(status, payload, {"Content-Type": "application/jsonl"})
        else:
            self._send(status, payload)

    def do_POST(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        if is_batch_path(url.path):
            self._batch("POST", body)
            return
        query = dict(parse_qsl(url.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        protocol, model = _classify(url.path, parsed)
        request = RecordedRequest(
            time=time.monotonic(),
            method="POST",
            path=url.path,
            query=query,
            headers=headers,
            body=body,
            protocol=protocol,
            model=model,
            key=_presented_key(headers, query),
        )
        reply = self.server.owner._record_and_pick(request)
        reply, metered = self.server.owner._meter(request, reply)
        self._answer(reply, request, metered)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, reply: Reply, request: RecordedRequest, metered: Metered | None = None) -> None:
        if reply.delay and self.server.owner._closing.wait(reply.delay):
            reply = drop_connection()  # the server is closing: do not hold it up
        cache = self.server.owner.prompt_cache
        if metered is not None and cache is not None and reply.action == "answer":
            cache.commit(metered)  # answered: what it wrote can be read by the requests after it
        if reply.action == "drop":
            self.close_connection = True
            return
        if request.protocol == "unknown":
            self._send(404, {"error": {"message": f"no model API at {request.path}", "type": "not_found"}})
        elif reply.action == "malformed":
            self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ', {})
        elif reply.body is not None:
            self._send(reply.status, reply.body, reply.headers)
        elif reply.error is not None:
            self._send(reply.status, _error_body(reply, request), reply.headers)
        elif request.protocol == "oauth":
            self._send(*self.server.owner._grant(request))
        elif request.protocol in ("openai", "azure") and wants_stream(request.json)[0]:
            self._stream(reply, request)
        else:
            self._send(reply.status, _success_body(reply, request), reply.headers)

    def _stream(self, reply: Reply, request: RecordedRequest) -> None:
        n_in = _words(request) if reply.input_tokens is None else reply.input_tokens
        n_out = len(reply.content.split()) if reply.output_tokens is None else reply.output_tokens
        chunks = stream_chunks(
            reply,
            model=request.model or "loopback-model",
            response_id=f"chatcmpl-{next(_ids)}",
            include_usage=wants_stream(request.json)[1],
            usage=lambda: _openai_usage(reply, n_in, n_out),
        )
        try:
            self.send_response(200)
            for name, value in {**SSE_HEADERS, **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            finished = write_events(self.wfile.write, chunks, reply, self.server.owner._closing)
        except OSError:  # the client gave up mid-stream
            finished = False
        self.close_connection = self.close_connection or not finished

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers or {})

    def _send_raw(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout): nothing to answer
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up close()
    # socketserver's default listen backlog is 5: with 64 clients connecting at once the kernel
    # refuses the overflow, and a test sees connection failures no fault script asked for.
    request_queue_size = 1024
    owner: LoopbackServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)


Chooser = Callable[[RecordedRequest], Reply | None]


class LoopbackServer:
    """A model API server on ``127.0.0.1`` at an ephemeral port, run in a background thread.

    Use as a context manager (or call ``start``/``close``). ``url`` is ``http://127.0.0.1:PORT``;
    ``openai_base`` (``url + "/v1"``) is what OpenAI-compatible clients take as ``api_base``.
    ``port`` 0 (the default) takes an ephemeral port; a given one lets a test stand a new server up
    where a closed one was (a restart, as clients see it).
    ``handler``, when set, is asked first for every request and may return a Reply or None.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self.handler: Chooser | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._shared: deque[Reply] = deque()
        self._by_model: dict[str, deque[Reply]] = {}
        self._defaults: dict[str | None, Reply] = {None: ok()}
        self._required_key: str | None = None
        self._issued: list[str] = []
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.prompt_cache: PromptCacheEmulator | None = None
        self.batches = BatchEmulator(self._answer_batch_line, lambda: self.url)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LoopbackServer:
        self._closing.clear()
        httpd = _Server((self.host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end slow replies and close every open connection."""
        if self._httpd is None:
            return
        self._closing.set()
        self._httpd.shutdown()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def token_uri(self) -> str:
        """Where a Google service account (``testing.google.service_account``) gets its tokens."""
        return self.url + "/token"

    # -- scripting ---------------------------------------------------------------------------
    def script(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies for the next requests (of ``model`` only, when given), in order."""
        with self._lock:
            queue = self._shared if model is None else self._by_model.setdefault(model, deque())
            queue.extend(replies)

    def set_default(self, reply: Reply, model: str | None = None) -> None:
        """What to answer (for ``model``, or for all) once the scripts are used up."""
        with self._lock:
            self._defaults[model] = reply

    def emulate_prompt_cache(
        self, minimum: int = 1024, step: int = 128, ttl_s: float = 300.0
    ) -> PromptCacheEmulator:
        """Report prompt-cache reads and writes the way each provider does, from the prefixes this
        server has answered in the last ``ttl_s`` seconds (``testing.prompt_cache``; ``minimum`` and
        ``step`` in words). A reply that sets its own ``cached_tokens`` or ``cache_write_tokens``
        keeps them. ``reset`` ends it."""
        with self._lock:
            self.prompt_cache = PromptCacheEmulator(minimum, step, ttl_s)
            return self.prompt_cache

    def require_key(self, key: str | None) -> None:
        """Answer 401 to every request not presenting ``key`` (None: accept any)."""
        with self._lock:
            self._required_key = key

    def reset(self) -> None:
        """Forget requests, scripts, defaults and the required key."""
        with self._lock:
            self._requests.clear()
            self._shared.clear()
            self._by_model.clear()
            self._defaults = {None: ok()}
            self._required_key = None
            self._issued.clear()
            self.prompt_cache = None
        self.handler = None
        self.batches.reset()

    # -- what was received -------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def issued_tokens(self) -> list[str]:
        """The access tokens handed out by the token endpoint, in order."""
        with self._lock:
            return list(self._issued)

    def pending(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return len(self._shared) + sum(len(q) for q in self._by_model.values())

    # -- internals (called from handler threads) ---------------------------------------------
    def _record_batch(self, request: RecordedRequest) -> bool:
        """Record a Batch API request; whether it presents the required key (if one is)."""
        with self._lock:
            self._requests.append(request)
            return self._required_key is None or request.key == self._required_key

    def _answer_batch_line(
        self, protocol: str, body: dict[str, Any], forced: Reply | None
    ) -> tuple[Reply, dict[str, Any]]:
        """One line of a batch job, answered as the same request sent live would be (not recorded
        in ``requests``: the job's own requests are)."""
        line_protocol: Protocol = "anthropic" if protocol == "anthropic" else "openai"
        path = "/v1/messages" if line_protocol == "anthropic" else "/v1/chat/completions"
        raw = json.dumps(body).encode()
        request = RecordedRequest(
            time.monotonic(), "POST", path, {}, {}, raw, line_protocol, str(body.get("model", "")), None
        )
        reply = forced or self._pick(request)
        reply, metered = self._meter(request, reply)
        if metered is not None and self.prompt_cache is not None and reply.error is None:
            self.prompt_cache.commit(metered)
        if reply.error is not None:
            return reply, _error_body(reply, request)
        return reply, _success_body(reply, request)

    def _pick(self, request: RecordedRequest) -> Reply:
        chosen = self.handler(request) if self.handler is not None else None
        with self._lock:
            return chosen if chosen is not None else self._scripted(request)

    def _record_and_pick(self, request: RecordedRequest) -> Reply:
        chosen = self.handler(request) if self.handler is not None else None
        with self._lock:
            self._requests.append(request)
            if request.protocol == "oauth":  # no key to present, and the scripts are for model calls
                return chosen or ok()
            if self._required_key is not None and request.key != self._required_key:
                return unauthorized()
            return chosen if chosen is not None else self._scripted(request)

    def _scripted(self, request: RecordedRequest) -> Reply:
        """The next reply scripted for the request's model, else for anyone, else the default
        (called under ``self._lock``)."""
        queue = self._by_model.get(request.model)
        if queue:
            return queue.popleft()
        if self._shared:
            return self._shared.popleft()
        return self._defaults.get(request.model) or self._defaults[None]

    def _meter(self, request: RecordedRequest, reply: Reply) -> tuple[Reply, Metered | None]:
        """``reply`` with the prompt cache's reads and writes for ``request``, when it is emulated
        and the reply is a plain answer that does not report its own."""
        cache = self.prompt_cache
        plain = reply.error is None and reply.body is None and reply.action == "answer"
        if cache is None or not plain or reply.cached_tokens or reply.cache_write_tokens:
            return reply, None
        found = cache.meter(request.protocol, request.model, request.json)
        read, written = found.cached_tokens, found.cache_write_tokens
        return dataclasses.replace(reply, cached_tokens=read, cache_write_tokens=written), found

    def _grant(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        status, payload = token_response(request.body)
        if status == 200:
            with self._lock:
                self._issued.append(payload["access_token"])
        return status, payload

    def open_connections(self) -> int:
        """Client connections the server holds open now (a pool's kept-alive ones included)."""
        with self._lock:
            return len(self._sockets)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
