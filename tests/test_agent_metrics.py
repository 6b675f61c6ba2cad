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


def _from_yaml(spec: dict, tmp_path=None):
    from promptlift.optimize.metrics import metric_from_config

    return metric_from_config(spec, base_dir=tmp_path)


def test_yaml_names_the_trajectory_metrics_and_a_weighted_mix() -> None:
    tool = _from_yaml({"type": "tool_called", "tool": "capital", "arguments": {"country": "{country}"}})
    assert scores(tool)[0] == [1.0, 1.0]
    assert scores(_from_yaml({"type": "steps", "max": 1}))[0] == [0.5, 0.5]  # two model calls each
    mix = _from_yaml(
        {
            "type": "weighted",
            "parts": [
                {"type": "exact_match", "field": "answer", "weight": 3},
                {"type": "tool_called", "tool": "capital", "arguments": {"country": "Spain"}},
            ],
        }
    )
    values, reasons = scores(mix)
    assert values == [0.75, 0.75]
    assert all(r.startswith("tool_called: expected a call to capital") for r in reasons)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"type": "tool_called"}, "tool"),
        ({"type": "steps", "max": 0}, "`metric.max`"),
        ({"type": "tool_called", "tool": "t", "arguments": {"x": "{oops"}}, "`metric.arguments.x`"),
        ({"type": "weighted", "parts": []}, "`metric.parts`"),
        (
            {"type": "weighted", "parts": [{"type": "exact_match", "field": "a", "weight": -1}]},
            "`metric.parts.0.weight`",
        ),
        ({"type": "weighted", "parts": [{"type": "contain", "field": "a"}]}, "`metric.parts.0.type`"),
        ({"type": "weighted", "parts": [{"type": "exact_match", "field": "a", "weight": 0}]}, "sum above 0"),
    ],
)
def test_a_bad_trajectory_metric_in_yaml_is_one_line_naming_its_key(spec: dict, says: str) -> None:
    from promptlift.errors import UserError

    with pytest.raises(UserError) as caught:
        _from_yaml(spec)
    message = str(caught.value)
    assert says in message and "\n" not in message


def test_the_fields_a_weighted_metric_reads_include_its_parts_and_tool_argument_slots() -> None:
    from promptlift.optimize.metrics import check_metric, metric_fields

    spec = check_metric(
        {
            "type": "weighted",
            "parts": [
                {"type": "exact_match", "field": "answer"},
                {"type": "tool_called", "tool": "capital", "arguments": {"country": "{country}", "n": 2}},
            ],
        }
    )
    assert spec["field"] == "answer"  # the first part's answer field is the mix's (what fewshot shows)
    assert metric_fields(spec) == [  # reported under the key the user wrote
        ("parts.0.field", "answer"),
        ("parts.1.arguments.country", "country"),
    ]


def test_a_python_metric_with_three_arguments_reads_the_trajectory(tmp_path) -> None:
    (tmp_path / "mymetric.py").write_text(
        "def score(row, output, trajectory):\n"
        "    return 1.0 if [s.call.name for s in trajectory.tool_calls] == ['capital'] else 0.0\n"
        "def plain(row, output):\n"
        "    return float(output == row['answer'])\n"
    )
    assert scores(_from_yaml({"python": "mymetric:score"}, tmp_path))[0] == [1.0, 1.0]
    assert scores(_from_yaml({"python": "mymetric:plain"}, tmp_path))[0] == [1.0, 1.0]
    # the same three-argument metric on a single-call prompt sees no tool call
    plain = Prompt(user="Capital of {country}")
    answer = lambda r: Completion("Paris", r.model, "function")  # noqa: E731
    assert scores(_from_yaml({"python": "mymetric:score"}, tmp_path), plain, answer)[0] == [0.0, 0.0]
