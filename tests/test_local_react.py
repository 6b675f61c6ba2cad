"""Tool calls in plain text for the embedded base model (``promptlift.providers.react``).

The parser and the renderer as pure functions; then the local route end to end (client, LiteLLM's
custom route, the engine) with the generation scripted, so what the route sends the model and
makes of its text is checked exactly; then the real model, asserting only what the parser
guarantees, never how well the model does (bench/local_agent.py measures that).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from promptlift import Client, ClientConfig, Message, ToolCall
from promptlift.optimize.agent import run_agent
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.tools import Tool
from promptlift.providers import local
from promptlift.providers.react import STOP, parse_reply, render_tools
from promptlift.providers.render import render_plain

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city's name"}},
            "required": ["city"],
        },
    },
}


# -- the parser -------------------------------------------------------------------------------------


def test_an_action_line_is_a_call_and_the_thought_before_it_the_content() -> None:
    reply = parse_reply('Thought: I need the weather.\nAction: get_weather({"city": "Oslo"})')
    assert reply.content == "Thought: I need the weather."
    assert reply.tool_calls == (ToolCall("get_weather", '{"city": "Oslo"}', "call_1"),)


def test_arguments_are_kept_as_written_and_parentheses_inside_strings_do_not_end_them() -> None:
    reply = parse_reply('Action: search({"q": "pie (apple)", "n": 3})')
    assert reply.tool_calls[0].arguments == '{"q": "pie (apple)", "n": 3}'
    assert reply.tool_calls[0].parsed_arguments() == {"q": "pie (apple)", "n": 3}


def test_a_call_without_arguments_has_an_empty_object() -> None:
    assert parse_reply("Action: list_teams()").tool_calls[0].arguments == "{}"
    assert parse_reply("Action: list_teams( )").tool_calls[0].arguments == "{}"


def test_arguments_that_are_not_a_json_object_are_kept_for_the_tool_to_refuse() -> None:
    # Like any provider's malformed arguments: the call is made, and the tool's error is shown.
    assert parse_reply('Action: get_weather(city="Oslo")').tool_calls[0].arguments == 'city="Oslo"'
    both = parse_reply('Action: team_office({"team": "Search"}, "office")').tool_calls[0]
    assert both.arguments == '{"team": "Search"}, "office"'


def test_a_cut_off_action_line_is_not_a_call() -> None:
    reply = parse_reply('Thought: look it up\nAction: get_weather({"city": "Os')
    assert reply.tool_calls == ()
    assert reply.content == 'Thought: look it up\nAction: get_weather({"city": "Os'


def test_an_imagined_observation_after_the_action_is_dropped() -> None:
    reply = parse_reply('Action: get_weather({"city": "Oslo"})\nObservation: 30 C\nAnswer: hot')
    assert reply.content == ""
    assert [c.name for c in reply.tool_calls] == ["get_weather"]


def test_consecutive_action_lines_are_calls_in_order_numbered_after_the_conversations() -> None:
    reply = parse_reply(
        'Action: get_weather({"city": "Oslo"})\nAction: get_weather({"city": "Rome"})\nThought: wait',
        calls_before=2,
    )
    assert [(c.id, c.parsed_arguments()["city"]) for c in reply.tool_calls] == [
        ("call_3", "Oslo"),
        ("call_4", "Rome"),
    ]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Thought: It is in Lisbon.\nAnswer: Lisbon", "Lisbon"),
        ("Final Answer: Lisbon", "Lisbon"),
        ("answer:   Lisbon  ", "Lisbon"),
        ("Lisbon, Portugal", "Lisbon, Portugal"),
        ("Answer: Lisbon\nQuestion: Where is Oslo?\nThought: a new one", "Lisbon"),
        ("Answer: two lines\nof answer\nThought: done", "two lines\nof answer"),
    ],
)
def test_a_reply_without_an_action_is_the_final_answer(text: str, answer: str) -> None:
    reply = parse_reply(text)
    assert reply == parse_reply(text) and reply.tool_calls == ()
    assert reply.content == answer


def test_an_answer_before_an_action_ends_the_reply() -> None:
    # Seen on the 270M model: it answers, then runs on into a question and a call of its own.
    reply = parse_reply('Answer: Warsaw\nQuestion: Which city?\nAction: team_office({"team": "x"})')
    assert reply.content == "Warsaw" and reply.tool_calls == ()


# -- the renderer -----------------------------------------------------------------------------------


def test_tools_are_listed_as_the_calls_they_take_with_their_descriptions() -> None:
    assert render_tools([WEATHER]) == (
        "Tools:\n"
        "get_weather({\"city\": string}): Today's weather in a city. city: the city's name\n"
        'Call a tool with a line "Action: tool({...})"; its result follows as "Observation: ...". '
        'Give the final answer as "Answer: ...".'
    )


def test_an_exchange_renders_as_one_block_the_model_continues_after_its_last_observation() -> None:
    call = ToolCall("get_weather", '{"city": "Oslo"}', "call_1")
    text = render_plain(
        [
            Message("system", "Answer with the tools."),
            Message("user", "Question: weather in Oslo?"),
            Message("assistant", "Thought: look it up", (call,)),
            Message("tool", "12 C", tool_call_id="call_1"),
        ],
        [WEATHER],
    )
    assert text == (
        f"Answer with the tools.\n\n{render_tools([WEATHER])}\n\n"
        "Question: weather in Oslo?\n"
        'Thought: look it up\nAction: get_weather({"city": "Oslo"})\n'
        "Observation: 12 C\n"
    )


def test_what_the_model_wrote_is_what_it_reads_back_on_the_next_step() -> None:
    written = 'Thought: look it up\nAction: get_weather({"city": "Oslo"})'
    reply = parse_reply(written)
    turn = Message("assistant", reply.content, reply.tool_calls)
    assert render_plain([Message("user", "Q?"), turn]) == f"Q?\n{written}\n\n"


def test_a_text_demo_of_a_whole_exchange_reads_like_the_live_one() -> None:
    demo = 'Thought: look it up\nAction: get_weather({"city": "Rome"})\nObservation: 20 C\nAnswer: 20 C'
    prompt = Prompt(user="Question: {q}", demos=(Demo({"q": "Rome?"}, demo),))
    text = render_plain(prompt.messages({"q": "Oslo?"}), [WEATHER])
    assert text.endswith(f"\n\nQuestion: Rome?\n{demo}\n\nQuestion: Oslo?\n")


def test_parallel_results_stay_in_the_exchange() -> None:
    calls = (ToolCall("a", "{}", "call_1"), ToolCall("b", "{}", "call_2"))
    text = render_plain(
        [
            Message("user", "Q?"),
            Message("assistant", "", calls),
            Message("tool", "1", tool_call_id="call_1"),
            Message("tool", "2", tool_call_id="call_2"),
        ]
    )
    assert text == "Q?\nAction: a({})\nAction: b({})\nObservation: 1\nObservation: 2\n"


# -- the local route, with the generation scripted ---------------------------------------------------


class ScriptedEngine(local.LocalEngine):
    """The engine with llama.cpp replaced by a list of texts; it records what it was asked."""

    def __init__(self, texts: Sequence[str]):
        super().__init__(local.spec_for("gemma-3-270m"), n_threads=1)
        self.texts = list(texts)
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def check_ready(self) -> None:
        pass

    def _generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: Sequence[str],
        seed: int | None,
    ) -> local.Generation:
        self.asked.append((prompt, tuple(stop)))
        return local.Generation(self.texts.pop(0), "stop", len(prompt) // 4, 8, 0, 0.01)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ScriptedEngine]]:
    made: list[ScriptedEngine] = []

    def install(*texts: str) -> ScriptedEngine:
        engine = ScriptedEngine(texts)
        monkeypatch.setitem(local._engines, "gemma-3-270m", engine)
        made.append(engine)
        return engine

    yield install
    for engine in made:
        engine._executor.shutdown(wait=True)


def weather(city: str) -> str:
    """Today's weather in a city.

    Args:
        city: the city's name
    """
    return {"Oslo": "12 C"}.get(city, "unknown")


def agent_run(messages: Sequence[Message], tools: Sequence[Tool], **params: Any) -> Any:
    with Client(ClientConfig(strict_params=True)) as client:  # strict: tools must not be dropped
        return asyncio.run(run_agent(client, messages, tools, temperature=0, **params))


def test_the_local_route_runs_a_tool_loop_from_action_lines(scripted: Callable[..., ScriptedEngine]) -> None:
    engine = scripted('Thought: look it up\nAction: weather({"city": "Oslo"})', "Answer: 12 C")
    trajectory = agent_run([Message("user", "Question: weather in Oslo?")], [Tool.from_function(weather)])
    assert trajectory.stopped == "answer" and trajectory.output == "12 C"
    first, result, last = trajectory.steps
    assert first.tool_calls == (ToolCall("weather", '{"city": "Oslo"}', "call_1"),)
    assert first.content == "Thought: look it up" and first.finish_reason == "tool_calls"
    assert result.outcome.result == "12 C" and last.finish_reason == "stop"
    (prompt_1, stop_1), (prompt_2, stop_2) = engine.asked
    assert 'Tools:\nweather({"city": string}): Today\'s weather in a city.' in prompt_1
    assert all(s in stop_1 and s in stop_2 for s in STOP)  # stopped before writing the result itself
    assert prompt_2 == (
        prompt_1 + 'Thought: look it up\nAction: weather({"city": "Oslo"})\nObservation: 12 C\n'
    )


def test_without_tools_the_reply_is_left_as_it_is(scripted: Callable[..., ScriptedEngine]) -> None:
    engine = scripted('Action: weather({"city": "Oslo"})')
    with Client() as client:
        completion = client.complete("Say something:", temperature=0, stop=["\n"])
    assert completion.content == 'Action: weather({"city": "Oslo"})' and completion.tool_calls == ()
    assert engine.asked[0][1] == ("\n",) and "Tools:" not in engine.asked[0][0]


def test_the_callers_stop_sequences_are_kept_beside_the_observation_one(
    scripted: Callable[..., ScriptedEngine],
) -> None:
    engine = scripted("Answer: 12 C")
    agent_run([Message("user", "Q?")], [Tool.from_function(weather)], stop=["\nQuestion:"])
    assert engine.asked[0][1] == ("\nQuestion:", *STOP)


# -- the real model ---------------------------------------------------------------------------------


def _directory_tools() -> list[Tool]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import directory
    finally:
        sys.path.remove(str(EXAMPLE))
    return [Tool.from_function(directory.find_employee), Tool.from_function(directory.team_office)]


DEMO = "\n".join(
    [
        "Thought: I need Elif Demir's team first.",
        'Action: find_employee({"name": "Elif Demir"})',
        'Observation: {"name": "Elif Demir", "id": "E120", "team": "Mobile"}',
        "Thought: Elif Demir is in the Mobile team. Now I need the Mobile team's office.",
        'Action: team_office({"team": "Mobile"})',
        "Observation: Osaka",
        "Answer: Osaka",
    ]
)


@pytest.mark.model
def test_the_embedded_model_in_a_tool_loop_keeps_the_parsers_contract() -> None:
    """Whatever the 270M model writes: every call has a tool-shaped name and a numbered id, no
    content holds an Action line or an observation the model wrote itself, and the loop ends."""
    prompt = Prompt(
        user="Question: {question}",
        system="Answer questions about the company directory with the tools.",
        demos=(Demo({"question": "In which city does Elif Demir work?"}, DEMO),),
        tools=tuple(_directory_tools()),
        max_steps=4,
        params={"temperature": 0, "max_tokens": 64},
    )
    for question in ("In which city does Kenji Okabe work?", "Which city is Oskar Nyberg's office in?"):
        trajectory = agent_run(
            prompt.messages({"question": question}), prompt.tools, max_steps=4, max_tokens=64
        )
        assert trajectory.stopped in ("answer", "step limit")
        ids = [step.call.id for step in trajectory.tool_calls]
        assert ids == [f"call_{i}" for i in range(1, len(ids) + 1)]
        for step in trajectory.steps:
            if hasattr(step, "content"):
                assert not any(
                    re.match(r"\s*Action\s*:\s*[\w-]+\s*\(.*\)", x) for x in step.content.splitlines()
                )
                assert "\nObservation" not in step.content
                assert (step.finish_reason == "tool_calls") == bool(step.tool_calls)
                assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", c.name) for c in step.tool_calls)
