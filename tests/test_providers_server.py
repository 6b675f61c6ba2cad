"""The loopback server on its own, spoken to with a plain HTTP client (no LiteLLM)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from promptlift.testing.server import (
    LoopbackServer,
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
