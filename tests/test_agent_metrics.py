"""Trajectory metrics: the right tool with the right arguments, the number of steps, and a weighted
mix with an answer metric; run through the evaluator on an agent and on a single-call prompt."""

from __future__ import annotations

import asyncio
import json

import pytest

from promptlift import Client, ClientConfig, Completion, CompletionRequest, ToolCall
from promptlift.errors import ConfigError
from promptlift.optimize.agent_metrics import Steps, ToolCalled, Weighted
from promptlift.optimize.dataset import Row
from promptlift.optimize.evaluation import Evaluator
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.tools import Tool
from promptlift.testing import FunctionProvider


def capital(country: str) -> str:
    """The capital city of a country."""
    return {"France": "Paris", "Peru": "Lima"}.get(country.title(), "unknown")


def agent(request: CompletionRequest) -> Completion:
    """Looks the capital up for the last word of the question (spelled as asked), then answers."""
    last = request.messages[-1]
    if last.role == "user":
        call = ToolCall("capital", json.dumps({"country": last.text.split()[-1]}), "c1")
        return Completion("", request.model, "function", tool_calls=(call,))
    return Completion(last.text, request.model, "function")


AGENT = Prompt(user="Capital of {country}", tools=(Tool.from_function(capital),))
ROWS = [Row(0, {"country": "France", "answer": "Paris"}), Row(1, {"country": "peru", "answer": "Lima"})]


def scores(metric, prompt: Prompt = AGENT, fn=agent):
    with Client(ClientConfig(models=("scripted/agent",)), provider=FunctionProvider(fn)) as client:
        evaluation = asyncio.run(Evaluator(client, metric).evaluate(prompt, ROWS))
    return evaluation.scores, [r.reason for r in evaluation.rows]


def test_tool_called_checks_the_tool_and_the_arguments_filled_from_the_row() -> None:
    assert scores(ToolCalled("capital", {"country": "{country}"}))[0] == [1.0, 1.0]  # case is normalized
    values, reasons = scores(ToolCalled("capital", {"country": "Spain"}))
    assert values == [0.0, 0.0]
    assert (
        'expected a call to capital({"country": "Spain"}); it called capital({"country": "France"})'
        in reasons[0]
    )
    values, reasons = scores(ToolCalled("weather"))
    assert values == [0.0, 0.0] and "it called capital" in reasons[0]
    # a single-call prompt calls no tool
    values, reasons = scores(ToolCalled("capital"), Prompt(user="{country}"), lambda r: "Paris")
    assert values == [0.0, 0.0] and reasons[0].endswith("it called no tool")


def test_tool_called_names_a_template_field_the_row_lacks() -> None:
    with pytest.raises(ConfigError, match=r"uses \{city\}, which row 1 does not have"):
        scores(ToolCalled("capital", {"country": "{city}"}))


def test_steps_scores_shorter_loops_higher() -> None:
    assert scores(Steps(2))[0] == [1.0, 1.0]
    values, reasons = scores(Steps(1))
    assert values == [0.5, 0.5] and reasons[0] == "took 2 model calls (aim: at most 1)"
    with pytest.raises(ConfigError):
        Steps(0)


def test_weighted_mixes_the_answer_and_the_trajectory() -> None:
    metric = Weighted(((ExactMatch("answer"), 3.0), (ToolCalled("capital", {"country": "France"}), 1.0)))
    values, reasons = scores(metric)
    assert values == [1.0, 0.75]  # Peru: the right answer, the wrong tool arguments
    assert reasons[1].startswith("tool_called: expected a call to capital")
    assert metric.reads_trajectory and metric.calls_per_row == 0
    with pytest.raises(ConfigError):
        Weighted(((ExactMatch("answer"), 0.0),))
