"""The loopback server on its own, spoken to with a plain HTTP client (no LiteLLM)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from promptlift.testing.server import (
    LoopbackServer,
    Turn,
    WireCall,
    WireResult,
    content_filtered,
    context_length_exceeded,
    drop_connection,
    http_date,
    malformed_json,
    ok,
    rate_limited,
    server_error,
    slow,
)

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "one two three"}]}


@pytest.fixture
def srv() -> LoopbackServer:
    with LoopbackServer() as server:
        yield server  # type: ignore[misc]


def post(srv: LoopbackServer, path: str, body: object = CHAT, **kw: object) -> httpx.Response:
    with httpx.Client(timeout=5) as http:
        return http.post(srv.url + path, json=body, **kw)  # type: ignore[arg-type]


def test_openai_shape_and_recording(srv: LoopbackServer) -> None:
    srv.script(ok("hi there", output_tokens=7))
    r = post(srv, "/v1/chat/completions", headers={"Authorization": "Bearer k-123456"})
    body = r.json()
    assert r.status_code == 200
    assert body["choices"][0]["message"]["content"] == "hi there"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    (req,) = srv.requests
    assert (req.protocol, req.model, req.key, req.path) == (
        "openai",
        "m1",
        "k-123456",
        "/v1/chat/completions",
    )
    assert req.json == CHAT


def test_each_protocol_answers_in_its_own_shape(srv: LoopbackServer) -> None:
    a = post(srv, "/v1/messages", {"model": "c", "system": "be short", "messages": CHAT["messages"]}).json()
    assert a["content"][0]["text"] and a["usage"] == {"input_tokens": 5, "output_tokens": 5}
    g = post(srv, "/v1beta/models/gem:generateContent", {"contents": [{"parts": [{"text": "x y"}]}]}).json()
    assert g["candidates"][0]["finishReason"] == "STOP" and g["usageMetadata"]["promptTokenCount"] == 2
    z = post(
        srv, "/openai/deployments/dep1/chat/completions?api-version=2024-06-01", headers={"api-key": "az"}
    )
    assert z.json()["object"] == "chat.completion"
    assert [(r.protocol, r.model) for r in srv.requests] == [
        ("anthropic", "c"),
        ("gemini", "gem"),
        ("azure", "dep1"),
    ]
    assert srv.requests[2].query == {"api-version": "2024-06-01"} and srv.requests[2].key == "az"


def test_errors_take_each_protocols_body(srv: LoopbackServer) -> None:
    srv.script(rate_limited(retry_after=3), rate_limited(), context_length_exceeded(), content_filtered())
    r1 = post(srv, "/v1/chat/completions")
    assert r1.status_code == 429 and r1.headers["retry-after"] == "3"
    assert r1.json()["error"]["code"] == "rate_limit_exceeded"
    r2 = post(srv, "/v1/messages")
    assert r2.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached; slow down."},
    }
    assert "retry-after" not in r2.headers
    assert post(srv, "/v1/chat/completions").json()["error"]["code"] == "context_length_exceeded"
    r4 = post(srv, "/openai/deployments/d/chat/completions")
    assert r4.status_code == 400 and r4.json()["error"]["code"] == "content_filter"


def test_per_model_scripts_and_defaults(srv: LoopbackServer) -> None:
    srv.set_default(server_error(503), model="dead")
    srv.script(ok("first"), model="m1")
    assert post(srv, "/v1/chat/completions", {**CHAT, "model": "dead"}).status_code == 503
    assert post(srv, "/v1/chat/completions").json()["choices"][0]["message"]["content"] == "first"
    assert post(srv, "/v1/chat/completions").status_code == 200  # script used up: the default
    assert post(srv, "/v1/chat/completions", {**CHAT, "model": "dead"}).status_code == 503
    assert srv.pending() == 0


def test_require_key(srv: LoopbackServer) -> None:
    srv.require_key("new-key-123")
    assert post(srv, "/v1/chat/completions", headers={"Authorization": "Bearer old"}).status_code == 401
    r = post(srv, "/v1/messages", headers={"x-api-key": "new-key-123"})
    assert r.status_code == 200


def test_drop_malformed_and_slow(srv: LoopbackServer) -> None:
    srv.script(drop_connection(), malformed_json(), slow(0.3))
    with pytest.raises(httpx.RemoteProtocolError):
        post(srv, "/v1/chat/completions")
    r = post(srv, "/v1/chat/completions")
    with pytest.raises(json.JSONDecodeError):
        r.json()
    started = time.monotonic()
    post(srv, "/v1/chat/completions")
    assert time.monotonic() - started >= 0.3


def test_http_date_is_in_the_future() -> None:
    from email.utils import parsedate_to_datetime

    assert 1 <= parsedate_to_datetime(http_date(3)).timestamp() - time.time() <= 3


def test_close_does_not_wait_for_slow_replies() -> None:
    srv = LoopbackServer().start()
    srv.script(slow(30))
    with httpx.Client(timeout=0.2) as http, pytest.raises(httpx.ReadTimeout):
        http.post(srv.openai_base + "/chat/completions", json=CHAT)
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 2


def test_the_conversation_reads_alike_whatever_protocol_carried_it(srv: LoopbackServer) -> None:
    """The same exchange in each protocol's own spelling: Anthropic's string system and a result's
    content as text blocks; Gemini's camelCase parts with Gemini 3.5's ids; Vertex as Gemini."""
    call = WireCall("c1", "get_weather", {"city": "Oslo"})
    want = (
        Turn("system", "Be brief."),
        Turn("user", "Weather?"),
        Turn("assistant", "Looking.", (call,)),
        Turn("tool", results=(WireResult("c1", "get_weather", "4 C"),)),
    )
    use = {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Oslo"}}
    result = {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "4 C"}]}
    anthropic = {
        "model": "claude",
        "system": "Be brief.",
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Looking."}, use]},
            {"role": "user", "content": [result]},
        ],
    }
    function_call = {"functionCall": {"id": "c1", "name": "get_weather", "args": {"city": "Oslo"}}}
    response = {"functionResponse": {"id": "c1", "name": "get_weather", "response": {"content": "4 C"}}}
    gemini = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [{"text": "Looking."}, function_call]},
            {"role": "user", "parts": [response]},
        ],
    }
    function = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    openai = {
        "model": "gpt",
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": "Looking.", "tool_calls": [{"id": "c1", "function": function}]},
            {"role": "tool", "tool_call_id": "c1", "content": "4 C"},  # no name: the call's
        ],
    }
    post(srv, "/v1/messages", anthropic)
    post(srv, "/v1beta/models/gem:generateContent", gemini)
    post(srv, "/v1/projects/p/locations/l/publishers/google/models/gem:generateContent", gemini)
    post(srv, "/v1/chat/completions", openai)
    post(srv, "/openai/deployments/d/chat/completions", openai)
    requests = srv.requests
    assert [r.protocol for r in requests] == ["anthropic", "gemini", "vertex", "openai", "azure"]
    for request in requests:
        assert (request.conversation, request.tools) == (want, ("get_weather",)), request.protocol


def test_a_conversation_keeps_what_a_script_needs_to_see_as_it_was_sent(srv: LoopbackServer) -> None:
    # Gemini takes a result as an object: LiteLLM sends a JSON object's text as that object.
    parts = [{"function_response": {"name": "f", "response": {"a": [1, 2]}}}]
    post(srv, "/v1beta/models/gem:generateContent", {"contents": [{"role": "user", "parts": parts}]})
    # Arguments that are not a JSON object are kept whole; a text beside results keeps the user role.
    broken = {"id": "c", "function": {"name": "f", "arguments": '{"a": '}}
    messages = [{"role": "assistant", "content": None, "tool_calls": [broken]}]
    post(srv, "/v1/chat/completions", {"model": "m", "messages": messages})
    result = {"type": "tool_result", "tool_use_id": "x", "content": "done"}
    mixed = [{"role": "user", "content": [result, {"type": "text", "text": "and now?"}]}]
    post(srv, "/v1/messages", {"model": "c", "messages": mixed})
    post(srv, "/token", {"grant_type": "x"})
    gemini, openai, anthropic, token = srv.requests
    assert gemini.conversation == (Turn("tool", results=(WireResult("", "f", '{"a": [1, 2]}'),)),)
    assert openai.conversation == (Turn("assistant", calls=(WireCall("c", "f", {"": '{"a": '}),)),)
    assert anthropic.conversation == (Turn("user", "and now?", results=(WireResult("x", "", "done"),)),)
    assert token.conversation == () and token.tools == () and openai.tools == ()
