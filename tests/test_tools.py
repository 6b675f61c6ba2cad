"""Tools from Python functions: the schema the model sees, and a run that never raises."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any, Literal

import pytest

from promptlift import ConfigError
from promptlift.optimize.tools import Tool


class Unit(enum.Enum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


def forecast(
    city: str, days: int = 1, unit: Unit = Unit.CELSIUS, hourly: bool | None = None
) -> dict[str, Any]:
    """The weather forecast for a city.

    Looks it up in the local table.

    Args:
        city: the city's name, in English
        days (int): how many days ahead

    Returns:
        the forecast
    """
    if city == "Atlantis":
        raise LookupError("no such city")
    return {"city": city, "days": days, "unit": Unit(unit).value}


async def search(query: str, sources: list[str], mode: Literal["fast", "deep"] = "fast") -> str:
    """Search the documents."""
    if query == "hang":
        await asyncio.Event().wait()  # never answers: only the tool's timeout ends it
    return f"{mode}:{query}:{','.join(sources)}"


def test_a_function_becomes_the_schema_the_model_sees() -> None:
    tool = Tool.from_function(forecast)
    assert tool.name == "forecast"
    assert tool.description == "The weather forecast for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English"},
            "days": {"type": "integer", "description": "how many days ahead"},
            "unit": {"enum": ["C", "F"]},
            "hourly": {"type": "boolean"},
        },
        "required": ["city"],
    }
    assert tool.spec()["function"]["name"] == "forecast"
    searched = Tool.from_function(search)
    assert searched.parameters["properties"]["sources"] == {"type": "array", "items": {"type": "string"}}
    assert searched.parameters["properties"]["mode"] == {"enum": ["fast", "deep"]}
    assert searched.parameters["required"] == ["query", "sources"]


def test_a_description_an_optimizer_rewrote_replaces_the_docstring() -> None:
    tool = Tool.from_function(forecast, description="Use for any weather question.")
    assert tool.spec()["function"]["description"] == "Use for any weather question."


def test_an_annotation_without_a_schema_is_one_line_naming_the_parameter() -> None:
    def odd(when: complex) -> str:
        return ""

    with pytest.raises(ConfigError, match=r"tool 'odd', parameter 'when': no JSON schema"):
        Tool.from_function(odd)


@pytest.mark.parametrize(
    ("arguments", "result", "error"),
    [
        ('{"city": "Oslo", "days": 2}', {"city": "Oslo", "days": 2, "unit": "C"}, ""),
        ("", None, "missing argument(s) city"),
        ('{"city": "Atlantis"}', None, "LookupError: no such city"),
        ('{"city": "Oslo", "country": "NO"}', None, "unknown argument(s) country"),
        ('{"city": "Oslo"', None, "not valid JSON"),
        ('["Oslo"]', None, "must be a JSON object"),
    ],
)
def test_a_sync_tool_answers_or_returns_the_error_the_model_sees(
    arguments: str, result: Any, error: str
) -> None:
    outcome = asyncio.run(Tool.from_function(forecast).run(arguments))
    if result is None:
        assert error in outcome.error and outcome.result == ""
        assert outcome.shown.startswith("error: ")
    else:
        assert outcome.error == "" and json.loads(outcome.result) == result


def test_an_async_tool_that_never_answers_times_out_into_an_error() -> None:
    tool = Tool.from_function(search, timeout_s=0.05)
    outcome = asyncio.run(tool.run('{"query": "hang", "sources": ["a"]}'))
    assert outcome.error == "the tool did not answer within 0.05 s"
    fine = asyncio.run(tool.run('{"query": "q", "sources": ["a", "b"], "mode": "deep"}'))
    assert fine.result == "deep:q:a,b" and fine.error == ""


def test_a_timeout_raised_inside_a_tool_is_its_own_error_not_the_deadline() -> None:
    """socket.timeout is TimeoutError: a tool whose HTTP call timed out said so, at once; it was
    not cut off at its ``timeout_s``."""

    def fetch(url: str) -> str:
        raise TimeoutError("timed out")

    async def afetch(url: str) -> str:
        raise TimeoutError(f"no answer from {url}")

    for function, said in ((fetch, "timed out"), (afetch, "no answer from http://x")):
        outcome = asyncio.run(Tool.from_function(function, timeout_s=5).run('{"url": "http://x"}'))
        assert (outcome.error, outcome.result) == (f"TimeoutError: {said}", "")
        assert outcome.latency_s < 1


def test_parallel_calls_of_one_tool_run_side_by_side() -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def lookup(key: str) -> str:
        """Look a key up."""
        started.append(key)
        if len(started) == 2:
            release.set()
        await release.wait()  # only returns once both calls are in flight at once
        return key.upper()

    async def both() -> list[str]:
        tool = Tool.from_function(lookup, timeout_s=5)
        outcomes = await asyncio.gather(tool.run('{"key": "a"}'), tool.run('{"key": "b"}'))
        return [o.shown for o in outcomes]

    assert asyncio.run(both()) == ["A", "B"]


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"name": "get weather", "description": ""}, "letters, digits"),
        ({"name": "météo", "description": ""}, "letters, digits"),  # non-ASCII: refused by providers
        ({"name": "w" * 65, "description": ""}, "at most 64"),
        ({"name": "2nd_hop", "description": ""}, "starting with a letter or _"),  # Gemini refuses it
        ({"name": "-w", "description": ""}, "starting with a letter or _"),
        ({"name": "w", "description": "", "parameters": {"type": "string"}}, "type object"),
        ({"name": "w", "description": "", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_a_malformed_declaration_is_refused(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Tool(**kwargs)


def test_a_tool_that_calls_sys_exit_is_an_error_the_model_sees() -> None:
    import sys

    def quits(code: int) -> str:
        """Leaves."""
        sys.exit(code)

    outcome = asyncio.run(Tool.from_function(quits).run('{"code": 3}'))
    assert outcome.error == "SystemExit: 3" and not outcome.result


def test_sync_tools_that_hang_past_their_timeout_do_not_starve_the_next_ones() -> None:
    """Hung tools keep their threads (Python cannot stop them); they are not the loop's default
    executor's threads, so a fast tool and the loop's own work (DNS lookups) still run."""
    import threading

    release = threading.Event()

    def hangs() -> str:
        """Never answers until released."""
        release.wait(30)
        return "late"

    def fast() -> str:
        """Answers at once."""
        return "fast"

    async def scenario() -> tuple[list[str | None], str | None, float]:
        slow = Tool.from_function(hangs, timeout_s=0.2)
        hung = await asyncio.gather(*(slow.run("{}") for _ in range(12)))  # twice the default pool here
        loop = asyncio.get_running_loop()
        started = loop.time()
        quick = await Tool.from_function(fast, timeout_s=5).run("{}")
        await loop.getaddrinfo("localhost", 80)  # on the default executor
        return [o.error for o in hung], quick.result, loop.time() - started

    try:
        errors, quick, _ = asyncio.run(scenario())
    finally:
        release.set()
    assert all(e and "did not answer within 0.2 s" in e for e in errors)
    assert quick == "fast"
