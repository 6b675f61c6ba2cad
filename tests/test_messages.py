"""Agents' messages as values: tool calls, tool results and content parts, in and out of every shape.

The wire half (what each route receives) is in tests/test_agent_messages_wire.py; here the contract of
``promptlift.types.Message`` itself, and what the cache key, the budget's estimate and the YAML config
make of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptlift import ConfigError, Message, ToolCall
from promptlift.client.cache import cache_key
from promptlift.optimize.config import load_config
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.pricing import IMAGE_TOKENS, estimate_input_tokens
from promptlift.types import CompletionRequest, Part, messages_from

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
CALL = ToolCall("get_weather", '{"city": "Oslo"}', "call_1")
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

AGENT_TURNS: list[dict[str, Any]] = [
    {"role": "system", "content": "You answer with the tools."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": PNG}},
        ],
    },
    {"role": "assistant", "content": None, "tool_calls": [CALL.to_openai()]},
    {"role": "tool", "content": "12 C, rain", "tool_call_id": "call_1", "name": "get_weather"},
]


def test_openai_shaped_turns_round_trip_unchanged() -> None:
    messages = messages_from(AGENT_TURNS)
    assert [m.to_dict() for m in messages] == AGENT_TURNS
    assert messages[2].tool_calls == (CALL,)
    assert messages[1].text == "Weather here?" and messages[1].images == (PNG,)
    assert messages[3].role == "tool" and messages[3].tool_call_id == "call_1"


def test_an_assistant_turn_with_only_tool_calls_sends_null_content_not_an_empty_text() -> None:
    # Anthropic refuses an empty text block; OpenAI takes null content beside tool calls.
    assert Message("assistant", "", (CALL,)).to_dict()["content"] is None
    assert Message("assistant", "Let me look.", (CALL,)).to_dict()["content"] == "Let me look."


@pytest.mark.parametrize(
    ("turn", "says"),
    [
        ({"role": "robot", "content": "x"}, "role"),
        ({"role": "tool", "content": "12 C"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_calls": [CALL.to_openai()]}, "only an assistant"),
        ({"role": "user", "content": 42}, "content"),
        ({"role": "user", "content": [{"type": "audio", "data": "x"}]}, "content part"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, "content part"),
        ({"role": "assistant", "content": "", "tool_calls": "get_weather"}, "tool_calls"),
    ],
)
def test_a_malformed_turn_is_refused_with_what_is_wrong(turn: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        messages_from([turn])


def test_plain_text_messages_keep_their_old_shape() -> None:
    # Older cache entries and call logs were keyed on {"role", "content"}: a text turn keeps it.
    assert Message("user", "hi").to_dict() == {"role": "user", "content": "hi"}


def _request(*messages: Message, **params: Any) -> CompletionRequest:
    return CompletionRequest(model="openai/gpt-4o-mini", messages=messages, **params)


BASE = (Message("user", "Weather?"), Message("assistant", "", (CALL,)))


@pytest.mark.parametrize(
    "other",
    [
        _request(*BASE, Message("tool", "12 C", tool_call_id="call_1")),  # another result
        _request(*BASE, Message("tool", "11 C", tool_call_id="call_2")),  # another call id
        _request(
            Message("user", "Weather?"),
            Message("assistant", "", (ToolCall("get_weather", '{"city": "Bergen"}', "call_1"),)),
            Message("tool", "11 C", tool_call_id="call_1"),
        ),
        _request(
            *BASE, Message("tool", "11 C", tool_call_id="call_1"), tools=(TOOL,), tool_choice="required"
        ),
        _request(
            Message("user", (Part("text", "Weather?"), Part("image", url=PNG))),
            BASE[1],
            Message("tool", "11 C", tool_call_id="call_1"),
        ),
    ],
)
def test_the_cache_key_tells_agent_turns_apart(other: CompletionRequest) -> None:
    first = _request(*BASE, Message("tool", "11 C", tool_call_id="call_1"))
    assert cache_key(first) != cache_key(other)
    assert cache_key(first) == cache_key(first.replace())


def test_tool_choice_without_tools_is_not_sent_and_not_keyed() -> None:
    # A tool_choice with no tools is refused by OpenAI: it goes out only beside tools.
    bare = _request(Message("user", "hi"))
    assert "tool_choice" not in bare.replace(tool_choice="auto").generation_params()
    with_tools = bare.replace(tools=(TOOL,), tool_choice="auto", parallel_tool_calls=False)
    assert with_tools.generation_params()["tool_choice"] == "auto"
    assert with_tools.generation_params()["parallel_tool_calls"] is False


def test_the_budget_estimate_counts_tool_calls_images_and_tool_schemas() -> None:
    text_only = _request(Message("user", "Weather?"))
    with_call = _request(Message("user", "Weather?"), Message("assistant", "", (CALL,)))
    with_image = _request(Message("user", (Part("text", "Weather?"), Part("image", url=PNG))))
    with_tools = text_only.replace(tools=(TOOL,) * 3)
    base = estimate_input_tokens(text_only)
    assert estimate_input_tokens(with_call) > base + len(CALL.arguments) // 4
    assert estimate_input_tokens(with_image) >= base + IMAGE_TOKENS
    assert estimate_input_tokens(with_tools) > base + 3 * len(json.dumps(TOOL)) // 4


def _config(tmp_path: Path, prompt: dict[str, Any]) -> Path:
    (tmp_path / "data.jsonl").write_text('{"text": "good", "label": "positive"}\n' * 4)
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(  # JSON is YAML
            {
                "dataset": {"path": "data.jsonl"},
                "prompt": prompt,
                "metric": {"type": "exact_match", "field": "label"},
                "optimizer": {"name": "fewshot"},
            }
        )
    )
    return path


def test_a_prompt_a_run_returns_loads_back_from_yaml_with_its_demos(tmp_path: Path) -> None:
    best = Prompt(
        user="Review: {text}\nSentiment:",
        system="Label the review.",
        demos=(Demo({"text": "great", "label": "positive"}, "positive"), Demo({"text": "awful"}, "negative")),
        params={"temperature": 0.0, "max_tokens": 4},
    )
    loaded = load_config(_config(tmp_path, best.to_dict())).prompt
    assert loaded == best and loaded.key() == best.key()


@pytest.mark.parametrize(
    ("demos", "says"),
    [
        ([{"fields": {"review": "great"}, "answer": "positive"}], r"prompt.demos.0.fields. has no text"),
        ([{"answer": "positive"}], r"prompt.demos.0.fields. is missing"),
        ([{"fields": {"text": "x"}, "answer": "y", "label": "z"}], r"label"),
        ({"fields": {}}, r"prompt.demos. must be a list of demos"),
    ],
)
def test_a_bad_demo_in_yaml_is_one_line_naming_it(tmp_path: Path, demos: Any, says: str) -> None:
    prompt = {"user": "Review: {text}", "demos": demos}
    with pytest.raises(ConfigError, match=says) as caught:
        load_config(_config(tmp_path, prompt))
    assert "\n" not in str(caught.value)


def test_a_base_model_reads_tool_calls_and_results_as_action_and_observation_lines() -> None:
    from promptlift.providers.render import render_plain

    text = render_plain(
        [
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", (CALL,)),
            Message("tool", "12 C", tool_call_id="call_1"),
        ]
    )
    # One block, one line per step: the shape a worked exchange has when written out as a demo.
    assert text == 'Weather in Oslo?\nAction: get_weather({"city": "Oslo"})\nObservation: 12 C\n'
