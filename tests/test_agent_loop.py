"""The agent loop against a scripted tool-calling model (a FunctionProvider under the real Client)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Completion, CompletionRequest, Message, ToolCall
from promptlift.client.config import CacheConfig
from promptlift.optimize.agent import ModelStep, ToolStep, Trajectory, run_agent
from promptlift.optimize.tools import Tool
from promptlift.testing import FunctionProvider

MODEL = "scripted/agent"


def temperature(city: str) -> int:
    """Today's temperature in a city, in Celsius."""
    if city == "Atlantis":
        raise LookupError("no such city")
    return {"Oslo": 4, "Rome": 18}[city]


async def slow(city: str) -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return city


def reply(request: CompletionRequest, content: str = "", *calls: ToolCall) -> Completion:
    return Completion(content, request.model, "function", tool_calls=calls)


def agent(request: CompletionRequest) -> Completion:
    """Calls temperature for every city the user names (in parallel), then answers from the results."""
    last = request.messages[-1]
    if last.role == "user":
        cities = last.text.split()
        calls = [ToolCall("temperature", json.dumps({"city": c}), f"call_{i}") for i, c in enumerate(cities)]
        return reply(request, "", *calls)
    results = [m.text for m in request.messages if m.role == "tool"]
    return reply(request, " | ".join(results))


def run(
    fn: object, text: str, tools: list[Tool], tmp_path: Path | None = None, **kw: object
) -> tuple[Trajectory, FunctionProvider]:
    provider = FunctionProvider(fn)  # type: ignore[arg-type]
    cache = CacheConfig(path=str(tmp_path / "cache.sqlite")) if tmp_path else None
    config = ClientConfig(models=(MODEL,), **({"cache": cache} if cache else {}))
    with Client(config, provider=provider) as client:
        return asyncio.run(run_agent(client, [Message("user", text)], tools, temperature=0.0, **kw)), provider


def test_parallel_tool_calls_then_an_answer_keep_the_whole_trajectory() -> None:
    trajectory, provider = run(agent, "Oslo Rome", [Tool.from_function(temperature)])
    assert trajectory.output == "4 | 18" and trajectory.stopped == "answer"
    kinds = [type(s).__name__ for s in trajectory.steps]
    assert kinds == ["ModelStep", "ToolStep", "ToolStep", "ModelStep"]
    assert [s.call.id for s in trajectory.tool_calls] == ["call_0", "call_1"]
    second = provider.requests[1]  # what the model was shown on its second call
    assert [m.role for m in second.messages] == ["user", "assistant", "tool", "tool"]
    assert [m.tool_call_id for m in second.messages[2:]] == ["call_0", "call_1"]
    assert second.tools[0]["function"]["name"] == "temperature"


def test_a_tool_that_raises_and_an_unknown_tool_become_results_the_model_sees() -> None:
    def model(request: CompletionRequest) -> Completion:
        if request.messages[-1].role == "user":
            return reply(
                request,
                "",
                ToolCall("temperature", '{"city": "Atlantis"}', "a"),
                ToolCall("humidity", '{"city": "Oslo"}', "b"),
            )
        return reply(request, "; ".join(m.text for m in request.messages if m.role == "tool"))

    trajectory, _ = run(model, "where?", [Tool.from_function(temperature)])
    assert trajectory.output == (
        "error: LookupError: no such city; error: there is no tool 'humidity'; the tools are: temperature"
    )


def test_a_tool_that_times_out_does_not_stop_the_row() -> None:
    def model(request: CompletionRequest) -> Completion:
        if request.messages[-1].role == "user":
            return reply(request, "", ToolCall("slow", '{"city": "Oslo"}', "s"))
        return reply(request, f"gave up: {request.messages[-1].text}")

    trajectory, _ = run(model, "x", [Tool.from_function(slow, timeout_s=0.05)])
    assert trajectory.output == "gave up: error: the tool did not answer within 0.05 s"


def test_the_step_limit_ends_a_model_that_never_stops_calling_tools() -> None:
    def model(request: CompletionRequest) -> Completion:
        return reply(request, "still looking", ToolCall("counted", '{"city": "Oslo"}', "c"))

    ran: list[str] = []

    def counted(city: str) -> int:
        """Today's temperature in a city, in Celsius."""
        ran.append(city)
        return temperature(city)

    trajectory, provider = run(model, "x", [Tool.from_function(counted)], max_steps=3)
    assert trajectory.stopped == "step limit" and trajectory.model_calls == 3 == len(provider.requests)
    assert ran == ["Oslo", "Oslo"]  # the last call's tool is not run: no model would read its result


def test_a_model_answering_without_tools_takes_one_call() -> None:
    trajectory, provider = run(lambda r: "no tools needed", "hi", [Tool.from_function(temperature)])
    assert trajectory.output == "no tools needed" and len(provider.requests) == 1


def test_a_replayed_loop_is_answered_from_the_cache_without_paying_twice(tmp_path: Path) -> None:
    first, paid = run(agent, "Oslo Rome", [Tool.from_function(temperature)], tmp_path)
    again, replayed = run(agent, "Oslo Rome", [Tool.from_function(temperature)], tmp_path)
    assert len(paid.requests) == 2 and replayed.requests == []
    assert again.output == first.output
    assert all(s.cached for s in again.steps if isinstance(s, ModelStep))


def test_a_trajectory_round_trips_through_json() -> None:
    trajectory, _ = run(agent, "Oslo Rome", [Tool.from_function(temperature)])
    loaded = Trajectory.from_dict(json.loads(json.dumps(trajectory.to_dict())))
    assert loaded == trajectory
    assert isinstance(loaded.steps[1], ToolStep) and loaded.steps[1].outcome.result == "4"


def test_max_steps_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        run(agent, "Oslo", [], max_steps=0)
