"""A conformance suite for a provider path, on the wire: subclass it, name the transport, and run it.

    class TestNativeConformance(ProviderConformance):
        transport = "native"

Each test starts a ``LoopbackServer`` (real HTTP on 127.0.0.1) speaking OpenAI's chat-completions
format and sends through a real ``Client`` built for ``transport``; override ``make_client`` to
put another provider under test. The promises are the provider contract (``providers/base.py``):
the request reaches the server as the caller wrote it, the answer comes back as the same
``Completion`` (content, usage, cost, finish reason, tool calls), each failure is the same typed
error with one request sent, Retry-After reaches the error, and the key goes nowhere but the
``Authorization`` header. Streamed (``Client.stream``): the text and each tool call arrive in
pieces, then the same ``Completion`` a whole answer gives; failures before the first piece are the
same typed errors, and a stream cut mid-answer is ``ConnectionFailed`` after the pieces received.
Plain ``assert``s, so any runner that collects ``Test*`` classes runs it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.client.config import ModelPrice
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.testing.replies import empty_choices
from promptlift.testing.server import (
    LoopbackServer,
    Reply,
    bad_request,
    content_filtered,
    context_length_exceeded,
    cut_stream,
    drop_connection,
    forbidden,
    malformed_json,
    metered,
    not_found,
    ok,
    rate_limited,
    server_error,
    slow,
    tool_call,
    unauthorized,
)
from promptlift.types import Completion, StreamEvent, TextDelta, ToolCallDelta

MODEL = "openai/conformance-model"
KEY = "sk-conformance-0123456789abcdef"
FRESH_KEYS = ("sk-conformance-first-0000", "sk-conformance-second-1111")  # a credential provider's, in turn
PRICE = ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.1)
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    },
}


def _answer(content: Any = "Hi.", usage: Any = None) -> dict[str, Any]:
    """An OpenAI chat-completions body, with the fields a lying server gets wrong set as given."""
    return {
        "id": "chatcmpl-conformance",
        "object": "chat.completion",
        "model": "conformance-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


# Each failure on the wire, the error it must raise, and the status a server sent (None: none did).
FAILURES: list[tuple[str, Reply, type[errors.ProviderError], int | None]] = [
    ("429", rate_limited(), errors.RateLimited, 429),
    ("500", server_error(500), errors.ProviderUnavailable, 500),
    ("503", server_error(503), errors.ProviderUnavailable, 503),
    ("401", unauthorized(), errors.AuthenticationFailed, 401),
    ("403", forbidden(), errors.PermissionDenied, 403),
    ("404", not_found(), errors.ModelNotFound, 404),
    ("400", bad_request(), errors.BadRequest, 400),
    ("context window", context_length_exceeded(), errors.ContextWindowExceeded, 400),
    ("content filter", content_filtered(), errors.ContentFiltered, 400),
    ("dropped connection", drop_connection(), errors.ConnectionFailed, None),
    ("malformed body", malformed_json(), errors.ProviderUnavailable, None),
    ("no choices", empty_choices(), errors.ProviderUnavailable, None),
    (
        "usage of the wrong type",
        Reply(body=_answer(usage={"prompt_tokens": "n/a"})),
        errors.ProviderUnavailable,
        None,
    ),
    ("content of the wrong type", Reply(body=_answer(content=7)), errors.ProviderUnavailable, None),
    (
        "an error inside a 200",
        Reply(body={"error": {"message": "Invalid API key.", "code": 401}}),
        errors.AuthenticationFailed,
        None,
    ),
    (
        "a prompt too long, inside a 200",
        Reply(body={"error": {"message": "This model's maximum context length is 8192 tokens."}}),
        errors.ContextWindowExceeded,
        None,
    ),
]


# The failures a stream meets before its first piece: every answer that is not a 200.
STREAM_FAILURES = [f for f in FAILURES if f[3] is not None or f[0] == "dropped connection"]


def streamed(client: Client, prompt: str = "Say hello.", **call: Any) -> list[StreamEvent]:
    """Every event of one streamed call, checked to end with exactly one Completion."""
    events = list(client.stream(prompt, **call))
    assert events and isinstance(events[-1], Completion), events
    assert not any(isinstance(e, Completion) for e in events[:-1]), events
    return events


def stream_raised(client: Client, **call: Any) -> tuple[list[StreamEvent], errors.ProviderError]:
    """The events a streamed call yielded before the provider error that ended it."""
    events: list[StreamEvent] = []
    try:
        for event in client.stream("Say hello.", **call):
            events.append(event)
    except errors.ProviderError as exc:
        return events, exc
    raise AssertionError(f"the stream ended without a failure: {events}")


def raised(client: Client, **call: Any) -> errors.ProviderError:
    """The provider error a call raises (the test fails if it answers)."""
    try:
        client.complete("Say hello.", **call)
    except errors.ProviderError as exc:
        return exc
    raise AssertionError("the call answered; a failure was expected")


class ProviderConformance:
    """The provider contract on the wire, for the path ``transport`` names."""

    transport = "litellm"

    def make_client(self, server: LoopbackServer, **config: Any) -> Client:
        """A one-model client to ``server``: no retries and no breaker, unless ``config`` says."""
        settings: dict[str, Any] = {
            "models": (MODEL,),
            "api_base": config.pop("api_base", None) or server.url + "/v1",
            "api_key": Secret(KEY),
            "transport": self.transport,
            "retry": RetryPolicy(max_attempts=1),
            "fallback": FallbackPolicy(failure_threshold=0),
            "prices": {MODEL: PRICE},
            "strict_params": True,
        }
        return Client(ClientConfig(**{**settings, **config}))

    def test_the_request_reaches_the_server_as_written(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            client.complete(
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Look up 'tarn'."},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [tool_call("lookup", {"word": "tarn"}, id="c1")],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "a mountain lake"},
                ],
                temperature=0.0,
                max_tokens=32,
                top_p=0.5,
                stop=["\n\n"],
                seed=7,
                tools=[TOOL],
                tool_choice={"type": "function", "function": {"name": "lookup"}},
                response_format={"type": "json_object"},
            )
            (request,) = server.requests
        body = request.json
        assert request.path.endswith("/chat/completions") and request.key == KEY
        assert request.headers.get("authorization") == f"Bearer {KEY}"
        assert body["model"] == "conformance-model"  # the route's prefix is not sent
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["system", "user", "assistant", "tool"]
        assert body["messages"][2]["tool_calls"][0]["id"] == "c1"
        assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "a mountain lake"}
        expected = {"temperature": 0.0, "max_tokens": 32, "top_p": 0.5, "stop": ["\n\n"], "seed": 7}
        assert {k: body.get(k) for k in expected} == expected
        assert body["tools"] == [TOOL]
        assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
        assert body["response_format"] == {"type": "json_object"}

    def test_the_answer_is_one_normalized_completion(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(
                metered(
                    ok("Hi there.", input_tokens=120, output_tokens=30),
                    cached_tokens=100,
                    reasoning_tokens=10,
                )
            )
            out = client.complete("Say hello.", max_tokens=64)
        assert (out.content, out.model, out.provider, out.finish_reason) == (
            "Hi there.",
            MODEL,
            "openai",
            "stop",
        )
        assert (out.usage.input_tokens, out.usage.output_tokens) == (120, 30)
        assert (out.usage.cached_tokens, out.usage.reasoning_tokens) == (100, 10)
        assert out.usage.reported and out.attempts == 1 and not out.cached
        assert out.cost_usd > 0 and out.latency_s > 0
        assert out.served_by == self.transport

    def test_tool_calls_come_back_in_order_with_their_ids(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            calls = (
                tool_call("lookup", {"word": "tarn"}, id="a1"),
                tool_call("lookup", {"word": "fell"}, id="a2"),
            )
            server.script(ok("", tool_calls=calls))
            out = client.complete("Look up two words.", tools=[TOOL])
        assert out.finish_reason == "tool_calls" and out.content == ""
        assert [(c.name, json.loads(c.arguments), c.id) for c in out.tool_calls] == [
            ("lookup", {"word": "tarn"}, "a1"),
            ("lookup", {"word": "fell"}, "a2"),
        ]

    def test_an_answer_without_usage_is_marked_unreported(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(metered(ok("Hi."), report_usage=False))
            out = client.complete("Say hello.", max_tokens=16)
        assert not out.usage.reported

    def test_each_failure_is_its_typed_error_after_one_request(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            for name, reply, kind, status in FAILURES:
                server.reset()
                server.script(reply)
                exc = raised(client)
                assert type(exc) is kind, f"{name}: {type(exc).__name__}, expected {kind.__name__}"
                if status is not None:
                    assert exc.status == status, f"{name}: status {exc.status}"
                assert exc.retryable == kind.retryable, name
                assert len(server.requests) == 1, f"{name}: {len(server.requests)} requests"

    def test_retry_after_reaches_the_error(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(rate_limited(retry_after=3))
            exc = raised(client)
        assert isinstance(exc, errors.RateLimited) and exc.retry_after == 3.0

    def test_retries_honour_retry_after_and_then_succeed(self) -> None:
        retry = RetryPolicy(max_attempts=3, initial_wait=0.01)
        with LoopbackServer() as server, self.make_client(server, retry=retry) as client:
            server.script(rate_limited(retry_after=0.2), server_error(503), ok("At last."))
            out = client.complete("Say hello.")
            times = [r.time for r in server.requests]
        assert out.content == "At last." and out.attempts == 3
        assert times[1] - times[0] >= 0.2

    def test_a_slow_answer_is_a_timeout(self) -> None:
        with LoopbackServer() as server, self.make_client(server, timeout=0.3) as client:
            server.script(slow(3.0))
            exc = raised(client)
        assert isinstance(exc, errors.Timeout) and exc.retryable

    def test_a_refused_connection_names_the_endpoint(self) -> None:
        with LoopbackServer() as server:
            base = server.url + "/v1"
        client = self.make_client(server, api_base=base)  # the server is gone: nothing listens there
        with client:
            exc = raised(client)
        assert isinstance(exc, errors.ConnectionFailed)
        assert "refused" in str(exc) and "127.0.0.1" in str(exc)

    def test_the_key_never_reaches_an_error_message(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(bad_request(f"Invalid value; your key {KEY} is not allowed this parameter."))
            exc = raised(client)
        assert KEY not in str(exc) and KEY not in repr(exc.args) and KEY not in exc.message

    def test_the_key_never_reaches_a_log_line_at_debug_level(self) -> None:
        """Every logger at DEBUG (as ``-vv`` sets it) while answers, refusals and errors echo the key."""
        lines: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record))

        keep, root = Keep(logging.DEBUG), logging.getLogger()
        level = root.level
        root.addHandler(keep)
        root.setLevel(logging.DEBUG)
        try:
            with LoopbackServer() as server, self.make_client(server) as client:
                server.script(
                    ok(f"your key is {KEY}"),
                    bad_request(f"bad parameter for key {KEY}"),
                    unauthorized(f"Incorrect API key provided: {KEY}"),
                )
                client.complete("Say hello.")
                raised(client)
                raised(client)
        finally:
            root.removeHandler(keep)
            root.setLevel(level)
        assert lines, "nothing was logged at DEBUG: the test saw no log line to check"
        assert not [line for line in lines if KEY in line]

    def refreshing_client(self, server: LoopbackServer) -> Client:
        """A client whose key comes from a credential provider handing out FRESH_KEYS in turn."""
        fresh = iter(FRESH_KEYS)
        return self.make_client(server, api_key=None, credential_provider=lambda provider: next(fresh))

    def test_a_401_refreshes_the_credential_once(self) -> None:
        with LoopbackServer() as server, self.refreshing_client(server) as client:
            server.script(unauthorized(), ok("Welcome back."))
            out = client.complete("Say hello.")
            keys = [r.key for r in server.requests]
        assert out.content == "Welcome back." and out.attempts == 2
        assert keys == list(FRESH_KEYS)

    def test_a_host_outside_the_allow_list_is_refused_before_any_request(self) -> None:
        with LoopbackServer() as server:
            try:
                with self.make_client(server, allowed_hosts=("api.example.com",)) as client:
                    client.complete("Say hello.")
            except errors.ConfigError as exc:
                assert "127.0.0.1" in str(exc)
            else:
                raise AssertionError("a host outside allowed_hosts was called")
            assert server.requests == []

    # -- streaming ---------------------------------------------------------------------------
    def test_a_stream_brings_the_text_in_pieces_then_the_same_completion(self) -> None:
        reply = metered(ok("Hi there, my friend.", input_tokens=120, output_tokens=30), cached_tokens=100)
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(reply, reply)
            events = streamed(client, max_tokens=64)
            whole = client.complete("Say hello.", max_tokens=64)
            body = server.requests[0].json
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert "stream" not in (server.requests[1].json or {})
        texts = [e.text for e in events if isinstance(e, TextDelta)]
        assert texts == ["Hi ", "there, ", "my ", "friend."]
        final = events[-1]
        assert isinstance(final, Completion) and final.served_by == self.transport
        assert (final.usage.input_tokens, final.usage.cached_tokens, final.usage.output_tokens) == (
            120,
            100,
            30,
        )
        assert final.cost_usd > 0 and final.latency_s > 0 and final.attempts == 1
        got, expected = final.to_dict(), whole.to_dict()
        got.pop("latency_s"), expected.pop("latency_s")
        assert got == expected

    def test_a_streamed_tool_call_comes_as_deltas_named_by_index(self) -> None:
        calls = (
            tool_call("lookup", {"word": "tarn"}, id="a1"),
            tool_call("lookup", {"word": "fell"}, id="a2"),
        )
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(ok("", tool_calls=calls))
            events = streamed(client, tools=[TOOL])
        deltas = [e for e in events if isinstance(e, ToolCallDelta)]
        assert [(d.index, d.id, d.name) for d in deltas if d.id] == [(0, "a1", "lookup"), (1, "a2", "lookup")]
        assert len(deltas) > 2  # the arguments come in fragments
        for index, word in ((0, "tarn"), (1, "fell")):
            text = "".join(d.arguments for d in deltas if d.index == index)
            assert json.loads(text) == {"word": word}
        final = events[-1]
        assert isinstance(final, Completion) and final.finish_reason == "tool_calls"
        assert [(c.id, c.name, json.loads(c.arguments)) for c in final.tool_calls] == [
            ("a1", "lookup", {"word": "tarn"}),
            ("a2", "lookup", {"word": "fell"}),
        ]

    def test_a_stream_without_usage_is_marked_unreported(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(metered(ok("Hi."), report_usage=False))
            final = streamed(client, max_tokens=16)[-1]
        assert isinstance(final, Completion) and not final.usage.reported and final.content == "Hi."

    def test_each_failure_before_a_stream_is_its_typed_error(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            for name, reply, kind, status in STREAM_FAILURES:
                server.reset()
                server.script(reply)
                events, exc = stream_raised(client)
                assert events == [], f"{name}: {events}"
                assert type(exc) is kind, f"{name}: {type(exc).__name__}, expected {kind.__name__}"
                assert exc.status == status, f"{name}: status {exc.status}"
                assert len(server.requests) == 1, f"{name}: {len(server.requests)} requests"

    def test_a_stream_cut_mid_answer_is_a_connection_failure_after_its_pieces(self) -> None:
        with LoopbackServer() as server, self.make_client(server) as client:
            server.script(cut_stream(4, ok("one two three four five six")))
            events, exc = stream_raised(client)
            assert len(server.requests) == 1
        assert isinstance(exc, errors.ConnectionFailed) and exc.retryable
        texts = [e.text for e in events if isinstance(e, TextDelta)]
        assert 1 <= len(texts) <= 3 and "".join(texts) == "one two three "[: len("".join(texts))]

    def test_a_slow_stream_is_a_timeout(self) -> None:
        with LoopbackServer() as server, self.make_client(server, timeout=0.3) as client:
            server.script(slow(3.0))
            events, exc = stream_raised(client)
        assert isinstance(exc, errors.Timeout) and events == []

    def test_a_401_before_a_stream_refreshes_the_credential_once(self) -> None:
        with LoopbackServer() as server, self.refreshing_client(server) as client:
            server.script(unauthorized(), ok("Welcome back."))
            final = streamed(client)[-1]
            keys = [r.key for r in server.requests]
        assert isinstance(final, Completion) and final.content == "Welcome back." and final.attempts == 2
        assert keys == list(FRESH_KEYS)
