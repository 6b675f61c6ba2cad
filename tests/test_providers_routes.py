"""Every route end to end: Client → real LiteLLM → real HTTP → the loopback server, sync and async.

Assertions are on what reached the wire (the server's records), not on LiteLLM's internals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from promptlift import Client, ClientConfig, Completion, Secret
from promptlift.client.retry import RetryPolicy
from promptlift.testing.server import LoopbackServer, RecordedRequest, ok

KEY = "sk-route-test-0123456789"
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01)
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi to me"}]


def openai_config(srv: LoopbackServer) -> dict[str, Any]:
    return {"api_base": srv.openai_base}


def root_config(srv: LoopbackServer) -> dict[str, Any]:
    return {"api_base": srv.url}


def azure_config(srv: LoopbackServer) -> dict[str, Any]:
    return {"api_base": srv.url, "extra": {"api_version": "2024-06-01"}}


# model, protocol the server must have seen, config builder, the model name on the wire
ROUTES: list[tuple[str, str, Callable[[LoopbackServer], dict[str, Any]], str]] = [
    ("openai/gpt-4o-mini", "openai", openai_config, "gpt-4o-mini"),
    ("azure/my-deployment", "azure", azure_config, "my-deployment"),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic", root_config, "claude-3-5-haiku-20241022"),
    ("gemini/gemini-1.5-flash", "gemini", root_config, "gemini-1.5-flash"),
    ("hosted_vllm/meta-llama/Llama-3.1-8B", "openai", openai_config, "meta-llama/Llama-3.1-8B"),
    ("openai/llama.cpp-server-model", "openai", openai_config, "llama.cpp-server-model"),
    ("ollama_chat/llama3", "ollama", root_config, "llama3"),
]


def client_for(srv: LoopbackServer, model: str, build: Callable[[LoopbackServer], dict[str, Any]]) -> Client:
    return Client(ClientConfig(models=(model,), api_key=Secret(KEY), retry=FAST, **build(srv)))


def key_only_in_auth_header(req: RecordedRequest) -> None:
    assert req.key == KEY
    assert KEY not in req.body.decode() and KEY not in req.path and KEY not in json.dumps(req.query)
    carriers = [name for name, value in req.headers.items() if KEY in value]
    assert len(carriers) == 1 and carriers[0] in ("authorization", "api-key", "x-api-key", "x-goog-api-key")


@pytest.mark.parametrize(("model", "protocol", "build", "wire_model"), ROUTES, ids=[r[0] for r in ROUTES])
def test_route_end_to_end_sync_and_async(
    loopback: LoopbackServer,
    model: str,
    protocol: str,
    build: Callable[[LoopbackServer], dict[str, Any]],
    wire_model: str,
) -> None:
    loopback.script(ok("sync answer", output_tokens=2), ok("async answer", output_tokens=3))
    with client_for(loopback, model, build) as client:
        sync = client.complete(MESSAGES, max_tokens=7, temperature=0.3)
        async_ = asyncio.run(client.acomplete(MESSAGES, max_tokens=7, temperature=0.3))
    assert (sync.content, async_.content) == ("sync answer", "async answer")
    for result, out in ((sync, 2), (async_, 3)):
        assert isinstance(result, Completion)
        assert (result.model, result.provider, result.attempts, result.fallback_used) == (
            model,
            model.split("/")[0],
            1,
            False,
        )
        assert result.usage.output_tokens == out and result.usage.input_tokens > 0
        assert result.finish_reason == "stop" and result.latency_s > 0
    assert [(r.protocol, r.model) for r in loopback.requests] == [(protocol, wire_model)] * 2
    if protocol != "ollama":  # Ollama takes no key: LiteLLM sends none
        for req in loopback.requests:
            key_only_in_auth_header(req)


def test_openai_wire_format(loopback: LoopbackServer) -> None:
    with client_for(loopback, "openai/gpt-4o-mini", openai_config) as client:
        client.complete(MESSAGES, max_tokens=7, temperature=0.3, top_p=0.9, stop=["END"], seed=4)
    body = loopback.requests[0].json
    assert body["messages"] == MESSAGES
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed")} == {
        "max_tokens": 7,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 4,
    }
    assert loopback.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_azure_wire_format(loopback: LoopbackServer) -> None:
    with client_for(loopback, "azure/my-deployment", azure_config) as client:
        client.complete(MESSAGES, max_tokens=7)
    req = loopback.requests[0]
    assert req.path == "/openai/deployments/my-deployment/chat/completions"
    assert req.query == {"api-version": "2024-06-01"} and req.headers["api-key"] == KEY


def test_anthropic_wire_format_has_max_tokens_and_a_separate_system(loopback: LoopbackServer) -> None:
    with client_for(loopback, "anthropic/claude-3-5-haiku-20241022", root_config) as client:
        client.complete(MESSAGES, max_tokens=7, temperature=0.3)
    req = loopback.requests[0]
    body = req.json
    assert req.path == "/v1/messages" and req.headers["x-api-key"] == KEY
    assert body["max_tokens"] == 7 and body["temperature"] == 0.3
    assert [block["text"] for block in body["system"]] == ["be brief"]
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_gemini_wire_format_has_generation_config(loopback: LoopbackServer) -> None:
    with client_for(loopback, "gemini/gemini-1.5-flash", root_config) as client:
        client.complete(MESSAGES, max_tokens=7, temperature=0.3)
    req = loopback.requests[0]
    config = req.json["generationConfig"]
    # LiteLLM 1.110.2 writes the proto field in snake_case (the API accepts both spellings).
    assert config.get("max_output_tokens", config.get("maxOutputTokens")) == 7
    assert config["temperature"] == 0.3
    assert req.path.endswith("/models/gemini-1.5-flash:generateContent")
    assert req.headers["x-goog-api-key"] == KEY and "key" not in req.query


def test_cost_from_the_offline_price_map_and_from_registered_prices(loopback: LoopbackServer) -> None:
    from promptlift.client.config import ModelPrice

    loopback.script(
        ok("x", input_tokens=1000, output_tokens=500), ok("y", input_tokens=1000, output_tokens=500)
    )
    config = ClientConfig(
        models=("openai/gpt-4o-mini",),
        api_base=loopback.openai_base,
        api_key=Secret(KEY),
        prices={"openai/my-finetune": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)},
    )
    with Client(config) as client:
        known = client.complete("hi")
        custom = client.complete("hi", model="openai/my-finetune")
    assert known.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.6e-6)  # gpt-4o-mini's listed price
    assert custom.cost_usd == pytest.approx(1000 * 2e-6 + 500 * 8e-6)


def test_a_keyless_server_of_your_own_needs_no_key(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Client(ClientConfig(models=("openai/served-model",), api_base=loopback.openai_base)) as client:
        assert client.complete("hi").content
    assert loopback.requests[0].key == "no-key"  # a placeholder: the OpenAI SDK will not send none
