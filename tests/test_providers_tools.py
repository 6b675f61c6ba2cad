"""Structured output and tools end to end: Client → real LiteLLM → real HTTP → the loopback server.

One OpenAI-style request (a JSON-schema ``response_format``, or one function tool) goes to each
route, and the assertions are on what each provider received in its own format, and on the tool
call coming back the same ``Completion`` whichever protocol carried it. The clients are strict
(``strict_params=True``): a parameter promptlift would drop as unsupported fails the test instead.

What LiteLLM 1.110.2 sends, as recorded here:

    openai, azure   response_format and tools exactly as given
    anthropic       tools[] as {name, description, input_schema}; response_format as a forced tool
                    (claude-3-5-haiku) or as ``output_format`` with a beta header (claude-sonnet-4-5)
    gemini, vertex  generationConfig.response_mime_type + response_json_schema (Gemini 2+);
                    tools[].function_declarations[] {name, description, parameters}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from promptlift import (
    Client,
    ClientConfig,
    Completion,
    CompletionRequest,
    ConfigError,
    Message,
    Secret,
    ToolCall,
)
from promptlift.client.config import CacheConfig, VertexConfig
from promptlift.providers.litellm import google_rewrites
from promptlift.testing import FunctionProvider
from promptlift.testing.google import service_account
from promptlift.testing.server import LoopbackServer, RecordedRequest, ok, tool_call

KEY = "sk-tools-test-0123456789"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
}
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The forecast for a city", "parameters": PARAMETERS},
}
CALL_ARGS = {"city": "Oslo", "days": 3}

Build = Callable[[LoopbackServer], ClientConfig]


def _keyed(model: str, api_base: Callable[[LoopbackServer], str], **extra: Any) -> Build:
    def build(srv: LoopbackServer) -> ClientConfig:
        return ClientConfig(
            models=(model,), api_base=api_base(srv), api_key=Secret(KEY), extra=extra, strict_params=True
        )

    return build


def _vertex(model: str) -> Build:
    def build(srv: LoopbackServer) -> ClientConfig:
        # A new account per client: LiteLLM keeps one access token per credential for the process.
        account = Secret(json.dumps(service_account(srv.token_uri)))
        vertex = VertexConfig(project="proj-tools", location="us-central1", credentials=account)
        return ClientConfig(models=(model,), api_base=srv.url, vertex=vertex, strict_params=True)

    return build


# name: (client config, the protocol the server must see)
ROUTES: dict[str, tuple[Build, str]] = {
    "openai": (_keyed("openai/gpt-4o-mini", lambda s: s.openai_base), "openai"),
    "azure": (_keyed("azure/my-deployment", lambda s: s.url, api_version="2024-08-01-preview"), "azure"),
    "anthropic": (_keyed("anthropic/claude-3-5-haiku-20241022", lambda s: s.url), "anthropic"),
    "gemini": (_keyed("gemini/gemini-2.5-flash", lambda s: s.url), "gemini"),
    "vertex_ai": (_vertex("vertex_ai/gemini-2.5-flash"), "vertex"),
}


def model_calls(srv: LoopbackServer) -> list[RecordedRequest]:
    """The requests to the model (a Vertex client also exchanges a token first)."""
    return [r for r in srv.requests if r.protocol != "oauth"]


# -- response_format -------------------------------------------------------------------------------


def gemini_schema_config(body: dict[str, Any]) -> dict[str, Any]:
    config = body["generationConfig"]
    # LiteLLM 1.110.2 writes the proto fields in snake_case (the API accepts both spellings), and
    # for Gemini 2+ the schema as plain JSON Schema (response_json_schema, not OpenAPI's response_schema).
    return {
        "mime": config.get("response_mime_type", config.get("responseMimeType")),
        "schema": config.get("response_json_schema", config.get("responseJsonSchema")),
    }


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_json_schema_response_format_reaches_each_provider_in_its_own_format(
    loopback: LoopbackServer, route: str
) -> None:
    build, protocol = ROUTES[route]
    loopback.script(ok('{"label": "positive", "score": 0.9}'))
    with Client(build(loopback)) as client:
        result = client.complete("Label: I loved it.", response_format=RESPONSE_FORMAT)
    (req,) = model_calls(loopback)
    body = req.json
    assert req.protocol == protocol
    if protocol in ("openai", "azure"):
        assert body["response_format"] == RESPONSE_FORMAT
    elif protocol == "anthropic":  # claude-3-5-haiku: no native structured output, a forced tool
        assert body["tools"] == [{"name": "json_tool_call", "input_schema": SCHEMA}]
        assert body["tool_choice"] == {"name": "json_tool_call", "type": "tool"}
        assert "response_format" not in body and "output_format" not in body
    else:
        assert gemini_schema_config(body) == {"mime": "application/json", "schema": SCHEMA}
        assert "response_format" not in body and "tools" not in body
    assert json.loads(result.content) == {"label": "positive", "score": 0.9}


def test_anthropic_structured_output_is_a_forced_tool_whose_input_becomes_the_content(
    loopback: LoopbackServer,
) -> None:
    """On a model without native structured output LiteLLM asks for a ``json_tool_call`` tool and
    turns the tool's input back into the answer's text: no tool call reaches the caller."""
    loopback.script(ok("", tool_calls=(tool_call("json_tool_call", {"label": "negative", "score": 0.1}),)))
    build, _ = ROUTES["anthropic"]
    with Client(build(loopback)) as client:
        result = client.complete("Label: dull.", response_format=RESPONSE_FORMAT)
    assert json.loads(result.content) == {"label": "negative", "score": 0.1}
    assert result.tool_calls == () and result.finish_reason == "stop"


def test_anthropic_native_structured_output_is_output_format_with_its_beta_header(
    loopback: LoopbackServer,
) -> None:
    build = _keyed("anthropic/claude-sonnet-4-5-20250929", lambda s: s.url)
    with Client(build(loopback)) as client:
        client.complete("Label: I loved it.", response_format=RESPONSE_FORMAT)
    (req,) = loopback.requests
    assert req.json["output_format"] == {"type": "json_schema", "schema": SCHEMA}
    assert "tools" not in req.json and "tool_choice" not in req.json
    assert req.headers["anthropic-beta"] == "structured-outputs-2025-11-13"


def test_gemini_without_schema_support_in_the_price_map_gets_the_schema_as_a_prompt_turn(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins a LiteLLM 1.110.2 behaviour: for a model whose price-map entry does not say
    ``supports_response_schema`` (gemini-1.5-flash is gone from the map) the schema is not sent as
    a schema: JSON mode is asked for and the schema is appended to the last user turn as text.
    promptlift says so: a warning, or a refusal before any request in strict mode."""
    model = "gemini/gemini-1.5-flash"
    strict = Client(_keyed(model, lambda s: s.url)(loopback))
    with strict as client, pytest.raises(ConfigError, match="JSON schema as text"):
        client.complete("Label: I loved it.", response_format=RESPONSE_FORMAT)
    assert loopback.requests == []
    config = ClientConfig(models=(model,), api_base=loopback.url, api_key=Secret(KEY))
    with caplog.at_level(logging.WARNING, logger="promptlift"), Client(config) as client:
        client.complete("Label: I loved it.", response_format=RESPONSE_FORMAT)
    assert any(f"{model}: LiteLLM sends the JSON schema as text" in r.getMessage() for r in caplog.records)
    body = loopback.requests[0].json
    assert body["generationConfig"] == {"response_mime_type": "application/json"}
    (turn,) = body["contents"]
    first, schema_text = turn["parts"]
    assert first == {"text": "Label: I loved it."}
    assert schema_text["text"].startswith("Use this JSON schema:") and '"score"' in schema_text["text"]


# -- tools -----------------------------------------------------------------------------------------


def assert_tool_on_the_wire(protocol: str, body: dict[str, Any]) -> None:
    if protocol in ("openai", "azure"):
        assert body["tools"] == [TOOL]
    elif protocol == "anthropic":
        assert body["tools"] == [
            {
                "name": "get_weather",
                "description": "The forecast for a city",
                "input_schema": PARAMETERS,
                "type": "custom",
            }
        ]
    else:
        (tools,) = body["tools"]
        declarations = tools.get("function_declarations", tools.get("functionDeclarations"))
        assert declarations == [
            {"name": "get_weather", "description": "The forecast for a city", "parameters": PARAMETERS}
        ]
        assert "response_mime_type" not in body.get("generationConfig", {})


@pytest.mark.parametrize("route", list(ROUTES))
def test_tools_reach_each_provider_in_its_own_format_and_its_call_comes_back_the_same(
    loopback: LoopbackServer, route: str
) -> None:
    build, protocol = ROUTES[route]
    call = tool_call("get_weather", CALL_ARGS, id="call_weather_1")
    loopback.set_default(ok("", tool_calls=(call,)))  # in each protocol's own shape
    with Client(build(loopback)) as client:
        sync = client.complete("Weather in Oslo?", tools=[TOOL])
        async_ = asyncio.run(client.acomplete("Weather in Oslo?", tools=[TOOL]))
    calls = model_calls(loopback)
    assert [r.protocol for r in calls] == [protocol, protocol] and calls[0].json == calls[1].json
    assert_tool_on_the_wire(protocol, calls[0].json)

    for result in (sync, async_):
        assert isinstance(result, Completion)
        (got,) = result.tool_calls
        assert isinstance(got, ToolCall)
        assert (got.name, got.parsed_arguments()) == ("get_weather", CALL_ARGS)
        assert (result.content, result.finish_reason) == ("", "tool_calls")
        if protocol in ("gemini", "vertex"):  # a functionCall carries no id: LiteLLM makes one
            assert got.id.startswith("call_") and got.id != "call_weather_1"
        else:
            assert got.id == "call_weather_1"
        # What a cache stores and replays is the same normalized call.
        assert Completion.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_tool_call_beside_text_keeps_both(loopback: LoopbackServer) -> None:
    loopback.set_default(ok("Let me look that up.", tool_calls=(tool_call("get_weather", CALL_ARGS),)))
    for route in ("openai", "anthropic", "gemini"):
        build, _ = ROUTES[route]
        with Client(build(loopback)) as client:
            result = client.complete("Weather in Oslo?", tools=[TOOL])
        assert result.content == "Let me look that up.", route
        assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [("get_weather", CALL_ARGS)]


# -- the normalized type ---------------------------------------------------------------------------


def test_tool_call_reads_its_own_shape_and_openais() -> None:
    ours = ToolCall(name="get_weather", arguments='{"city": "Oslo"}', id="call_1")
    assert ToolCall.from_dict(ours.to_dict()) == ours
    function = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    openai_shape = {"id": "call_1", "type": "function", "function": function}
    assert ToolCall.from_dict(openai_shape) == ours
    assert ToolCall.from_dict({"name": "f", "arguments": {"a": 1}}) == ToolCall("f", '{"a": 1}')
    with pytest.raises(json.JSONDecodeError):
        ToolCall("f", '{"city": ').parsed_arguments()  # a model's broken JSON is kept, not hidden
    assert ToolCall.from_dict({"name": "now", "arguments": ""}).parsed_arguments() == {}  # no arguments


def test_a_provider_giving_openai_shaped_tool_call_dicts_is_still_served_and_cached() -> None:
    """Tool calls were LiteLLM's dicts before ToolCall existed; a provider written then must not
    fail in the cache, after its answer was paid for."""
    legacy = ({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},)

    def answer(request: CompletionRequest) -> Completion:
        return Completion("", "openai/m", "openai", finish_reason="tool_calls", tool_calls=legacy)  # type: ignore[arg-type]

    config = ClientConfig(models=("openai/m",), cache=CacheConfig())
    with Client(config, provider=FunctionProvider(answer)) as client:
        first, again = client.complete("call f", temperature=0), client.complete("call f", temperature=0)
    assert first.tool_calls == (ToolCall("f", '{"a": 1}', "call_1"),)
    assert again.cached and again.tool_calls == first.tool_calls


def test_gemini_rewrites_are_looked_for_on_gemini_models_only() -> None:
    def found(model: str) -> list[str]:
        request = CompletionRequest(
            model=model,
            messages=(Message("system", "Be brief."), Message("user", "hi")),
            response_format=RESPONSE_FORMAT,
        )
        return google_rewrites(request)

    assert len(found("vertex_ai/gemini-2.0-flash")) == 2 and len(found("gemini/gemini-1.5-flash")) == 2
    assert found("vertex_ai/gemini-2.5-flash") == []
    for partner in ("vertex_ai/claude-3-5-sonnet@20240620", "vertex_ai/mistral-large@2407"):
        assert found(partner) == [], partner  # sent in their own formats: nothing is folded
    assert found("openai/gpt-4o-mini") == []
