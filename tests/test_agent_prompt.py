"""Agent and multi-turn prompts: their messages, their YAML, what a run exports loading back, and
the evaluator running the tool loop per row (a FunctionProvider under the real Client)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Completion, CompletionRequest, ToolCall
from promptlift.errors import ConfigError, TemplateError, UserError
from promptlift.optimize.config import load_config
from promptlift.optimize.dataset import Row
from promptlift.optimize.evaluation import Evaluation, Evaluator, RowResult
from promptlift.optimize.metrics import ExactMatch, Score
from promptlift.optimize.prompt import Prompt, Turn
from promptlift.optimize.tools import Tool
from promptlift.testing import FunctionProvider

MODEL = "scripted/agent"
TOOLS_PY = '''
def capital(country: str) -> str:
    """The capital city of a country.

    Args:
        country: the country's English name
    """
    return {"France": "Paris", "Peru": "Lima"}[country]
'''


def capital(country: str) -> str:
    """The capital city of a country."""
    if country == "Atlantis":
        raise LookupError("no such country")
    return {"France": "Paris", "Peru": "Lima", "Chad": "N'Djamena"}[country]


def agent(request: CompletionRequest) -> Completion:
    """Calls capital(country) with the last user word, then answers with the tool's result."""
    last = request.messages[-1]
    if last.role == "user":
        call = ToolCall("capital", json.dumps({"country": last.text.split()[-1]}), "call_1")
        return Completion("", request.model, "function", tool_calls=(call,))
    return Completion(last.text.removeprefix("error: "), request.model, "function")


def rows(*countries: str) -> list[Row]:
    answers = {"France": "Paris", "Peru": "Lima", "Atlantis": "?"}
    return [Row(i, {"country": c, "answer": answers[c]}) for i, c in enumerate(countries)]


def evaluate(
    prompt: Prompt, data: list[Row], fn=agent, metric=None, **kw
) -> tuple[Evaluation, FunctionProvider]:
    provider = FunctionProvider(fn)
    with Client(ClientConfig(models=(MODEL,)), provider=provider) as client:
        evaluator = Evaluator(client, metric or ExactMatch("answer"))
        return asyncio.run(evaluator.evaluate(prompt, data, **kw)), provider


AGENT = Prompt(user="Capital of {country}", system="Use the tool.", tools=(Tool.from_function(capital),))


# -- the prompt -------------------------------------------------------------------------------------
def test_a_multi_turn_prompt_places_the_rows_conversation_where_its_slot_is() -> None:
    prompt = Prompt(
        user="And now: {question}",
        system="You are {persona}.",
        turns=(Turn("user", "Hi, I am {name}."), Turn("assistant", "Hello {name}!"), Turn(history="chat")),
    )
    chat = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    messages = prompt.messages({"persona": "terse", "name": "Ada", "chat": chat, "question": "3+3?"})
    assert [(m.role, m.text) for m in messages] == [
        ("system", "You are terse."),
        ("user", "Hi, I am Ada."),
        ("assistant", "Hello Ada!"),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And now: 3+3?"),
    ]
    assert prompt.fields() == ["persona", "name", "chat", "question"]
    # a history given as JSON text (a CSV column) works too; anything else is one clear error
    assert len(prompt.messages({"persona": "", "name": "", "chat": json.dumps(chat), "question": ""})) == 6
    with pytest.raises(TemplateError, match="history field 'chat' holds int"):
        prompt.messages({"persona": "", "name": "", "chat": 3, "question": ""})
    with pytest.raises(TemplateError, match="history field 'chat'"):
        prompt.messages({"persona": "", "name": "", "chat": [{"role": "robot"}], "question": ""})


def test_a_conversation_may_end_in_the_rows_history_without_a_user_template() -> None:
    prompt = Prompt(user="", turns=(Turn(history="chat"),))
    assert [m.text for m in prompt.messages({"chat": [{"role": "user", "content": "hey"}]})] == ["hey"]
    with pytest.raises(TemplateError, match="no user template and no history slot"):
        Prompt(user="")


def test_what_a_prompt_exports_loads_back_with_its_tools_turns_and_step_limit() -> None:
    prompt = Prompt(
        user="{q}",
        system="s",
        turns=(Turn("assistant", "ready"), Turn(history="h")),
        tools=(Tool.from_function(capital, timeout_s=3),),
        max_steps=4,
        params={"tool_choice": "auto"},
    )
    exported = json.loads(json.dumps(prompt.to_dict()))
    assert exported["tools"][0]["function"] == f"{__name__}:capital"
    again = Prompt.from_dict(exported)
    assert again == prompt and again.key() == prompt.key()
    assert again.tools[0].function is capital and again.tools[0].timeout_s == 3
    # a single-call prompt keeps its four keys, so keys of earlier runs (and their stores) still match
    assert set(Prompt(user="{q}").to_dict()) == {"system", "user", "demos", "params"}


def test_tool_descriptions_are_components_an_optimizer_can_change() -> None:
    prompt = AGENT.replace(turns=(Turn("assistant", "ok {country}"),))
    assert prompt.components() == {
        "system": "Use the tool.",
        "user": "Capital of {country}",
        "turn:0": "ok {country}",
        "tool:capital": "The capital city of a country.",
    }
    changed = prompt.with_component("tool:capital", "Look up a capital; pass the country's name.")
    assert changed.tools[0].description.startswith("Look up") and changed.tools[0].function is capital
    assert changed.key() != prompt.key()  # a new description is a new candidate
    assert prompt.with_component("turn:0", "sure").turns[0].content == "sure"
    with pytest.raises(KeyError, match="no component 'tool:nope'"):
        prompt.with_component("tool:nope", "x")


def test_two_tools_with_one_name_and_a_bad_step_limit_are_refused() -> None:
    tool = Tool.from_function(capital)
    with pytest.raises(TemplateError, match="two tools share a name"):
        Prompt(user="{q}", tools=(tool, tool))
    with pytest.raises(TemplateError, match="max_steps"):
        Prompt(user="{q}", tools=(tool,), max_steps=0)


# -- YAML ------------------------------------------------------------------------------------------
def write_config(tmp_path: Path, prompt_yaml: str) -> Path:
    (tmp_path / "mytools.py").write_text(TOOLS_PY)
    (tmp_path / "data.jsonl").write_text(
        "\n".join(
            json.dumps({"country": c, "answer": c[::-1]})
            for c in ["France", "Peru", "Chad", "Fiji", "Oman", "Laos", "Mali", "Cuba"]
        )
    )
    path = tmp_path / "config.yaml"
    body = textwrap.indent(textwrap.dedent(prompt_yaml).strip(), "  ")
    path.write_text(
        f"model: openai/gpt-4o-mini\nprompt:\n{body}\ndataset: {{path: data.jsonl}}\n"
        "metric: {type: exact_match, field: answer}\n"
    )
    return path


def test_a_yaml_agent_takes_messages_and_tools_from_a_module_beside_the_config(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            """
            system: "Answer with the city only."
            messages:
              - {role: user, content: "I have a geography question."}
              - {role: assistant, content: "Go ahead."}
              - {role: user, content: "Capital of {country}?"}
            tools:
              - {function: "mytools:capital"}
              - {function: "mytools:capital", name: capital_city, description: "Same, by another name."}
            max_steps: 3
            """,
        )
    )
    prompt = config.prompt
    assert prompt.user == "Capital of {country}?" and [t.role for t in prompt.turns] == ["user", "assistant"]
    assert [t.name for t in prompt.tools] == ["capital", "capital_city"]
    assert prompt.tools[0].description == "The capital city of a country."
    assert prompt.tools[0].parameters["properties"]["country"]["description"] == "the country's English name"
    assert prompt.tools[1].description == "Same, by another name." and prompt.max_steps == 3
    assert prompt.tools[0].function is not None and prompt.tools[0].function(country="Peru") == "Lima"


@pytest.mark.parametrize(
    ("prompt_yaml", "message"),
    [
        ('user: "{country}"\ntools: [{function: "mytools:nope"}]', "prompt.tools.0.*has no function 'nope'"),
        ('user: "{country}"\ntools: [{function: "nomodule:f"}]', "prompt.tools.0.*cannot import 'nomodule'"),
        ('user: "{country}"\ntools: [{functoin: "mytools:capital"}]', "prompt.tools.0.functoin"),
        (
            'user: "{country}"\ntools: [{name: "bad name", parameters: {type: object}}]',
            "tool name 'bad name'",
        ),
        ('user: "{country}"\ntools: {function: "mytools:capital"}', "`prompt.tools` must be a list"),
        ('user: "{country}"\ntools: [{function: "mytools:capital"}]\nmax_steps: 0', "prompt.max_steps"),
        ("messages: [{role: robot, content: hi}]", "prompt.messages.0.role"),
        ("messages: [{history: chat, role: user}]", "history slot is"),
        ("messages: [{role: assistant, content: hi}]", "prompt.user. is missing"),
        ('user: "{country}"\nmessages: [{role: user}]', "needs `content:`"),
        ('user: "{country}"\nparams: {tool_choice: sometimes}', "prompt.params.tool_choice"),
    ],
)
def test_a_bad_agent_prompt_in_yaml_is_one_line_naming_where(
    tmp_path: Path, prompt_yaml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write_config(tmp_path, prompt_yaml))
    assert "\n" not in str(caught.value)
    assert "config.yaml" in str(caught.value)


# -- the evaluator ----------------------------------------------------------------------------------
def test_the_evaluator_runs_the_tool_loop_per_row_and_keeps_each_trajectory() -> None:
    evaluation, provider = evaluate(AGENT, rows("France", "Peru"))
    assert evaluation.scores == [1.0, 1.0] and [r.output for r in evaluation.rows] == ["Paris", "Lima"]
    assert len(provider.requests) == 4  # two model calls per row: the tool call, then the answer
    assert all(len(r.tools) == 1 for r in provider.requests)  # the tool is offered on every call
    assert evaluation.spend.calls == 4
    trajectory = evaluation.rows[0].trajectory
    assert trajectory is not None and trajectory.model_calls == 2 and evaluation.rows[0].steps == 2
    assert [s.call.name for s in trajectory.tool_calls] == ["capital"]
    assert trajectory.tool_calls[0].outcome.result == "Paris"
    # the stored form (the run store's JSON) gives the same rows back, trajectories included
    again = Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())))
    assert again.rows == evaluation.rows and again.rows[1].trajectory.tool_calls[0].call.arguments  # type: ignore[union-attr]


def test_a_tool_that_raises_costs_the_row_its_score_never_the_evaluation() -> None:
    evaluation, _ = evaluate(AGENT, rows("France", "Atlantis"))
    assert evaluation.scores == [1.0, 0.0]
    failed = evaluation.rows[1].trajectory
    assert failed is not None and "LookupError: no such country" in failed.tool_calls[0].outcome.error


def test_the_step_limit_bounds_the_calls_and_the_budget_counts_it() -> None:
    def looping(request: CompletionRequest) -> Completion:
        call = ToolCall("capital", json.dumps({"country": "France"}), f"c{len(request.messages)}")
        return Completion("", request.model, "function", tool_calls=(call,))

    prompt = AGENT.replace(max_steps=3)
    evaluation, provider = evaluate(prompt, rows("France"), fn=looping)
    assert len(provider.requests) == 3 and evaluation.rows[0].trajectory.stopped == "step limit"  # type: ignore[union-attr]
    with Client(ClientConfig(models=(MODEL,)), provider=FunctionProvider(looping)) as client:
        assert Evaluator(client, ExactMatch("answer")).calls_per_row(prompt) == 3
        assert Evaluator(client, ExactMatch("answer")).calls_per_row(Prompt(user="{q}")) == 1


def test_a_metric_may_read_the_trajectory() -> None:
    class UsedTheTool:
        name = "used_the_tool"
        reads_trajectory = True

        def __call__(self, row: Row, output: str, trajectory) -> Score:
            called = [s.call.name for s in trajectory.tool_calls]
            return Score(1.0 if called == ["capital"] else 0.0, f"called {called}")

    evaluation, _ = evaluate(AGENT, rows("France"), metric=UsedTheTool())
    assert evaluation.scores == [1.0]
    # a single-call prompt's row is a one-step trajectory, so the same metric runs on it
    plain, _ = evaluate(Prompt(user="{country}"), rows("France"), fn=lambda r: "Paris", metric=UsedTheTool())
    assert plain.scores == [0.0] and plain.rows[0].reason == "called []" and plain.rows[0].trajectory is None


def test_a_row_checkpointed_mid_evaluation_is_not_run_again() -> None:
    seen: list[tuple[int, RowResult]] = []
    first, _ = evaluate(AGENT, rows("France", "Peru"), on_row=lambda pos, row, spend: seen.append((pos, row)))
    done = {pos: (row, first.rows[pos] and first.spend) for pos, row in seen if pos == 0}
    second, provider = evaluate(AGENT, rows("France", "Peru"), done=done)
    assert len(provider.requests) == 2  # only Peru's two calls
    assert second.rows[0].trajectory == first.rows[0].trajectory


# -- the plan ---------------------------------------------------------------------------------------
def test_the_plan_counts_an_agents_step_limit_per_row(tmp_path: Path) -> None:
    from promptlift.optimize.plan import make_plan

    single = make_plan(load_config(write_config(tmp_path, 'user: "Capital of {country}?"')))
    agent_path = write_config(
        tmp_path, 'user: "Capital of {country}?"\ntools: [{function: "mytools:capital"}]\nmax_steps: 3'
    )
    plan = make_plan(load_config(agent_path))
    assert plan.steps == 3 and plan.calls.task == 3 * single.calls.task
    assert plan.calls.reasoning == single.calls.reasoning  # the reasoning model's calls do not loop
    assert "at most 3 model calls per row" in plan.render()
    assert plan.cost_usd is not None and single.cost_usd is not None
    assert plan.cost_usd[1] > 3 * single.cost_usd[1]  # three calls a row, each with the tool's schema
    # a call budget that covers the start only if the agent answered at once is refused before any call
    text = agent_path.read_text() + "budget: {max_calls: 12}\n"
    agent_path.write_text(text)
    with pytest.raises(UserError, match="max_calls"):
        make_plan(load_config(agent_path)).check()
