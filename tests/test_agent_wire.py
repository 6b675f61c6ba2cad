"""The agent's tool loop over the wire: Client → real LiteLLM → real HTTP → the loopback server
playing a tool-calling model, in OpenAI's, Anthropic's and Gemini's formats.

The scripted models read the request through ``RecordedRequest.conversation`` (the same view for
every protocol), and the assertions are on what each provider received in its own format: the
assistant's tool calls sent back, each result beside the id (or, on Gemini, the name and place) of
the call it answers, a tool's error text, the ``tool_choice`` shape. The clients are strict
(``strict_params=True``): a parameter LiteLLM would drop fails the test instead.

What LiteLLM 1.110.2 sends back to the model after a round of tool calls, as recorded here:

    openai      {"role": "assistant", "tool_calls": [{id, type, function: {name, arguments}}]},
                then one {"role": "tool", "content", "tool_call_id", "name"} per result
    anthropic   {"role": "assistant", "content": [{"type": "tool_use", id, name, input}]}, then one
                user message of {"type": "tool_result", "tool_use_id", "content"} blocks
    gemini      {"role": "model", "parts": [{"function_call": {name, args}}]}, then one user
                content of {"function_response": {name, "response": {"content": TEXT}}} parts;
                no ids (gemini-2.5): LiteLLM makes a new ``call_<uuid>`` per call it reads
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from promptlift import BudgetExceeded, Client, ClientConfig, Message, Secret
from promptlift.client.config import Budget, CacheConfig, ModelPrice
from promptlift.optimize.agent import ModelStep, ToolStep, Trajectory, run_agent
from promptlift.optimize.dataset import Dataset, Splits
from promptlift.optimize.evaluation import Evaluation, Evaluator
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.prompt import Prompt, Turn
from promptlift.optimize.run import RunSettings, Search
from promptlift.optimize.store import RunStore
from promptlift.optimize.tools import Tool
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, WireResult, ok, tool_call
from promptlift.types import Completion

KEY = "sk-agent-wire-0123456789"
SYSTEM = "Answer from the tools' results."
PRICE = ModelPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)  # $0.001 a token: budgets bite fast

# route: (model, its api_base on the loopback server); each route's protocol has the route's name
ROUTES: dict[str, tuple[str, Callable[[LoopbackServer], str]]] = {
    "openai": ("openai/gpt-4o-mini", lambda s: s.openai_base),
    "anthropic": ("anthropic/claude-3-5-haiku-20241022", lambda s: s.url),
    "gemini": ("gemini/gemini-2.5-flash", lambda s: s.url),
}
each_route = pytest.mark.parametrize("route", list(ROUTES))


# -- the tools -------------------------------------------------------------------------------------


TEMPERATURES = {"Oslo": 4, "Rome": 18, "Lima": 19}


def temperature(city: str) -> int:
    """Today's temperature in a city, in Celsius."""
    if city == "Atlantis":
        raise LookupError("no such city")
    return TEMPERATURES[city]


async def forecast(city: str) -> str:
    """Tomorrow's forecast for a city (this one never answers)."""
    await asyncio.Event().wait()
    return city


def humidity(city: str) -> int:
    """Today's humidity in a city (its service times out at once: a timeout of its own)."""
    raise TimeoutError(f"the humidity service timed out for {city}")  # socket.timeout is TimeoutError


# -- scripted models -------------------------------------------------------------------------------


def results_of(request: RecordedRequest) -> list[WireResult]:
    """The tool results sent since the user's last turn (a history's earlier ones are not the
    model's own doing in this loop)."""
    turns = request.conversation
    last_user = max(i for i, t in enumerate(turns) if t.role == "user")
    return [r for turn in turns[last_user + 1 :] for r in turn.results]


def user_text(request: RecordedRequest) -> str:
    return next(t.text for t in reversed(request.conversation) if t.role == "user")


def weather_model(request: RecordedRequest) -> Reply:
    """Asks for the temperature of every city the user names, all in one answer (parallel calls),
    then answers with the results joined; a user naming no city (no capitalized word) is answered
    without tools."""
    results = results_of(request)
    if results:
        return ok(" | ".join(r.content for r in results))
    cities = [w for w in user_text(request).split() if w[:1].isupper()]
    if not cities:
        return ok("No city, no tools needed.")
    calls = tuple(tool_call("temperature", {"city": c}, id=f"call_{c.lower()}") for c in cities)
    return ok("", tool_calls=calls)


def endless_model(request: RecordedRequest) -> Reply:
    """Never answers: each request gets one more call, with a new id."""
    n = len(results_of(request))
    return ok("still looking", tool_calls=(tool_call("temperature", {"city": "Oslo"}, id=f"call_{n}"),))


# -- the wire --------------------------------------------------------------------------------------


def config(route: str, srv: LoopbackServer, **knobs: Any) -> ClientConfig:
    model, api_base = ROUTES[route]
    return ClientConfig(
        models=(model,),
        api_base=api_base(srv),
        api_key=Secret(KEY),
        strict_params=True,
        prices={model: PRICE},
        **knobs,
    )


def run(
    route: str,
    srv: LoopbackServer,
    tools: Sequence[Tool],
    text: str = "Oslo Rome",
    *,
    knobs: dict[str, Any] | None = None,
    on_call: Callable[[Completion], None] | None = None,
    **params: Any,
) -> Trajectory:
    conversation = [Message("system", SYSTEM), Message("user", text)]
    with Client(config(route, srv, **(knobs or {}))) as client:
        loop = run_agent(client, conversation, tools, on_call=on_call, temperature=0.0, **params)
        return asyncio.run(loop)


def turns_of(protocol: str, body: dict[str, Any]) -> list[Any]:
    return list(body["contents" if protocol == "gemini" else "messages"])


Call = tuple[str, str, dict[str, Any]]  # id, name, arguments
Result = tuple[str, str, str]  # id of the call it answers, tool name, text the model is given


def exchange(protocol: str, calls: Sequence[Call], results: Sequence[Result]) -> list[dict[str, Any]]:
    """An assistant's tool calls and their results, as ``protocol`` sends them back to the model."""
    if protocol == "openai":
        functions = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in calls
        ]
        answers = [{"role": "tool", "content": t, "tool_call_id": i, "name": n} for i, n, t in results]
        return [{"role": "assistant", "tool_calls": functions}, *answers]
    if protocol == "anthropic":
        uses = [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls]
        got = [{"type": "tool_result", "tool_use_id": i, "content": t} for i, _, t in results]
        return [{"role": "assistant", "content": uses}, {"role": "user", "content": got}]
    parts = [{"function_call": {"name": n, "args": a}} for _, n, a in calls]
    responses = [{"function_response": {"name": n, "response": {"content": t}}} for _, n, t in results]
    return [{"role": "model", "parts": parts}, {"role": "user", "parts": responses}]


def assert_ids_pair_up(trajectory: Trajectory) -> None:
    """Every tool step answers a call its model step made, and the tool message names that call."""
    model_steps = [s for s in trajectory.steps if isinstance(s, ModelStep)]
    made = [c.id for s in model_steps for c in s.tool_calls]
    assert [s.call.id for s in trajectory.tool_calls] == made
    assert len(set(made)) == len(made) and all(made)
    assert [m.tool_call_id for m in trajectory.messages if m.role == "tool"] == made


# -- the loop ---------------------------------------------------------------------------------------


def side_by_side(kind: str) -> Callable[..., Any]:
    """``temperature`` that answers only once a second call is running beside it: a function run
    in a worker thread, or a coroutine run on the loop. Two calls one after the other break the
    barrier (after 2 s) and the first one's error reaches the model."""
    if kind == "thread":
        in_threads = threading.Barrier(2, timeout=2.0)

        def thread_tool(city: str) -> int:
            """Today's temperature in a city, in Celsius."""
            in_threads.wait()
            return temperature(city)

        return thread_tool
    on_the_loop = asyncio.Barrier(2)

    async def coroutine_tool(city: str) -> int:
        """Today's temperature in a city, in Celsius."""
        await asyncio.wait_for(on_the_loop.wait(), 2.0)
        return temperature(city)

    return coroutine_tool


@each_route
@pytest.mark.parametrize("kind", ["thread", "coroutine"])
def test_parallel_calls_run_side_by_side_and_every_result_reaches_the_model(
    loopback: LoopbackServer, route: str, kind: str
) -> None:
    loopback.handler = weather_model
    tool = Tool.from_function(side_by_side(kind), name="temperature", timeout_s=5.0)
    trajectory = run(route, loopback, [tool])

    assert [
        (s.call.parsed_arguments(), s.outcome.result, s.outcome.error) for s in trajectory.tool_calls
    ] == [
        ({"city": "Oslo"}, "4", ""),
        ({"city": "Rome"}, "18", ""),
    ]
    assert (trajectory.output, trajectory.stopped) == ("4 | 18", "answer")
    kinds = [type(s).__name__ for s in trajectory.steps]
    assert kinds == ["ModelStep", "ToolStep", "ToolStep", "ModelStep"]
    assert_ids_pair_up(trajectory)

    first, second = loopback.requests
    assert first.protocol == second.protocol == route and first.tools == second.tools == ("temperature",)
    ids = [s.call.id for s in trajectory.tool_calls]
    if route == "gemini":  # no id on the wire: LiteLLM made these, one per call
        assert all(i.startswith("call_") for i in ids) and ids != ["call_oslo", "call_rome"]
        ids = ["", ""]
    else:
        assert ids == ["call_oslo", "call_rome"]
    calls = [(i, "temperature", {"city": c}) for i, c in zip(ids, ("Oslo", "Rome"), strict=True)]
    results = [(i, "temperature", t) for i, t in zip(ids, ("4", "18"), strict=True)]
    sent = exchange(route, calls, results)
    # the second request is the first one's turns, then the calls and both results
    assert turns_of(route, second.json) == [*turns_of(route, first.json), *sent]


@each_route
def test_a_raising_a_timed_out_and_an_unknown_tool_reach_the_model_as_error_text(
    loopback: LoopbackServer, route: str
) -> None:
    """A tool's own TimeoutError (a network timeout inside it) is its error, not the loop's
    deadline: the model is told what the tool said, not that it did not answer in time."""
    calls = (
        tool_call("temperature", {"city": "Atlantis"}, id="call_raises"),
        tool_call("forecast", {"city": "Oslo"}, id="call_hangs"),
        tool_call("wind", {"city": "Oslo"}, id="call_unknown"),
        tool_call("humidity", {"city": "Oslo"}, id="call_own_timeout"),
    )

    def model(request: RecordedRequest) -> Reply:
        results = results_of(request)
        return ok(" / ".join(r.content for r in results)) if results else ok("", tool_calls=calls)

    loopback.handler = model
    tools = [
        Tool.from_function(temperature),
        Tool.from_function(forecast, timeout_s=0.2),
        Tool.from_function(humidity, timeout_s=5.0),
    ]
    trajectory = run(route, loopback, tools)

    errors = [
        "LookupError: no such city",
        "the tool did not answer within 0.2 s",
        "there is no tool 'wind'; the tools are: temperature, forecast, humidity",
        "TimeoutError: the humidity service timed out for Oslo",
    ]
    assert [s.outcome.error for s in trajectory.tool_calls] == errors
    assert all(s.outcome.result == "" for s in trajectory.tool_calls)
    assert trajectory.stopped == "answer" and trajectory.output == " / ".join(f"error: {e}" for e in errors)
    assert_ids_pair_up(trajectory)

    _, second = loopback.requests
    ids = [""] * 4 if route == "gemini" else ["call_raises", "call_hangs", "call_unknown", "call_own_timeout"]
    names = ["temperature", "forecast", "wind", "humidity"]
    arguments = [{"city": "Atlantis"}, {"city": "Oslo"}, {"city": "Oslo"}, {"city": "Oslo"}]
    sent = exchange(
        route,
        list(zip(ids, names, arguments, strict=True)),
        [(i, n, f"error: {e}") for i, n, e in zip(ids, names, errors, strict=True)],
    )
    assert turns_of(route, second.json)[-len(sent) :] == sent


@each_route
def test_the_step_limit_ends_a_model_that_keeps_calling_tools(loopback: LoopbackServer, route: str) -> None:
    loopback.handler = endless_model
    trajectory = run(route, loopback, [Tool.from_function(temperature)], max_steps=3)

    assert trajectory.stopped == "step limit" and trajectory.model_calls == 3 == len(loopback.requests)
    assert trajectory.output == "still looking"
    assert [s.outcome.result for s in trajectory.tool_calls] == ["4", "4", "4"]
    assert_ids_pair_up(trajectory)
    # The last request carries both earlier rounds, each result after the call it answers.
    turns = loopback.requests[-1].conversation
    rounds = [(t.calls, next_turn.results) for t, next_turn in itertools.pairwise(turns) if t.calls]
    assert len(rounds) == 2
    for n, (made, answered) in enumerate(rounds):
        assert [(c.name, dict(c.arguments)) for c in made] == [("temperature", {"city": "Oslo"})]
        assert [(r.name, r.content) for r in answered] == [("temperature", "4")]
        assert [c.id for c in made] == [r.id for r in answered] == ["" if route == "gemini" else f"call_{n}"]
    assert [t.text for t in turns if t.role == "assistant"] == ["still looking", "still looking"]


@each_route
def test_a_model_answering_without_tools_takes_one_request(loopback: LoopbackServer, route: str) -> None:
    ran: list[str] = []

    def watched(city: str) -> int:
        """Today's temperature in a city, in Celsius."""
        ran.append(city)
        return temperature(city)

    loopback.handler = weather_model
    trajectory = run(route, loopback, [Tool.from_function(watched, name="temperature")], text="thanks")
    (request,) = loopback.requests
    assert request.tools == ("temperature",)  # offered, not used
    assert (trajectory.output, trajectory.stopped, trajectory.model_calls) == (
        "No city, no tools needed.",
        "answer",
        1,
    )
    assert trajectory.tool_calls == () and ran == []
    assert [m.role for m in trajectory.messages] == ["system", "user", "assistant"]


# -- tool_choice -------------------------------------------------------------------------------------

NAMED = {"type": "function", "function": {"name": "temperature"}}
# what promptlift is given: what each provider must receive
CHOICES: dict[str, tuple[Any, dict[str, Any]]] = {
    "auto": ("auto", {"openai": "auto", "anthropic": {"type": "auto"}, "gemini": {"mode": "AUTO"}}),
    "required": ("required", {"openai": "required", "anthropic": {"type": "any"}, "gemini": {"mode": "ANY"}}),
    "named": (
        NAMED,
        {
            "openai": NAMED,
            "anthropic": {"type": "tool", "name": "temperature"},
            "gemini": {"mode": "ANY", "allowed_function_names": ["temperature"]},
        },
    ),
}


def choice_on_the_wire(protocol: str, body: dict[str, Any]) -> Any:
    if protocol == "gemini":
        return body["toolConfig"]["functionCallingConfig"]
    return body["tool_choice"]


def forced(protocol: str, body: dict[str, Any]) -> bool:
    """Whether the request obliges the model to call a tool (as a real provider then does)."""
    choice = choice_on_the_wire(protocol, body)
    if protocol == "openai":
        return choice == "required" or isinstance(choice, dict)
    if protocol == "anthropic":
        return bool(choice["type"] in ("any", "tool"))
    return bool(choice["mode"] == "ANY")


@each_route
@pytest.mark.parametrize("choice", list(CHOICES))
def test_tool_choice_reaches_each_provider_and_a_forced_call_is_asked_for_once(
    loopback: LoopbackServer, route: str, choice: str
) -> None:
    """A model obliged to call a tool always does; were the obligation sent on every step, the loop
    could never end with an answer. It is sent on the first model call, then the choice is auto."""

    def obedient(request: RecordedRequest) -> Reply:
        if forced(route, request.json) and results_of(request):
            return ok("", tool_calls=(tool_call("temperature", {"city": "Lima"}, id="call_again"),))
        return weather_model(request)

    given, sent = CHOICES[choice]
    loopback.handler = obedient
    trajectory = run(route, loopback, [Tool.from_function(temperature)], text="Oslo", tool_choice=given)

    shapes = [choice_on_the_wire(route, r.json) for r in loopback.requests]
    assert shapes == [sent[route], CHOICES["auto"][1][route]]
    assert (trajectory.output, trajectory.stopped) == ("4", "answer")


# -- the cache ---------------------------------------------------------------------------------------


def comparable(trajectory: Trajectory) -> dict[str, Any]:
    """A trajectory without what differs between a paid and a replayed run: latencies, cache flags."""
    data = trajectory.to_dict()
    for step in data["steps"]:
        step.pop("latency_s")
        step.pop("cached", None)
    return data


@each_route
def test_a_replay_with_the_cache_on_sends_nothing_and_gives_the_same_trajectory(
    loopback: LoopbackServer, route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loopback.handler = weather_model
    cache = {"cache": CacheConfig(path=str(tmp_path / "cache.sqlite"))}
    tools = [Tool.from_function(temperature)]
    paid = run(route, loopback, tools, knobs=cache)
    assert len(loopback.requests) == 2 and not any(s.cached for s in paid.steps if isinstance(s, ModelStep))

    replayed = run(route, loopback, tools, knobs=cache)  # a new client: answers come from the file
    assert len(loopback.requests) == 2
    assert all(s.cached for s in replayed.steps if isinstance(s, ModelStep))
    assert comparable(replayed) == comparable(paid)
    assert replayed.messages == paid.messages  # the same call ids, Gemini's made-up ones too

    # A tool that answers otherwise changes the second request: that one is sent, the first is not.
    monkeypatch.setitem(TEMPERATURES, "Rome", 21)
    changed = run(route, loopback, tools, knobs=cache)
    assert changed.output == "4 | 21" and len(loopback.requests) == 3
    assert [r.content for r in results_of(loopback.requests[-1])] == ["4", "21"]
    assert [s.cached for s in changed.steps if isinstance(s, ModelStep)] == [True, False]


@each_route
def test_a_replay_from_the_cache_is_served_under_a_budget_the_loop_could_not_afford_again(
    loopback: LoopbackServer, route: str, tmp_path: Path
) -> None:
    loopback.handler = weather_model
    cache = CacheConfig(path=str(tmp_path / "cache.sqlite"))
    tools = [Tool.from_function(temperature)]
    paid = run(route, loopback, tools, knobs={"cache": cache})
    with Client(config(route, loopback, cache=cache, budget=Budget(max_calls=1))) as client:
        conversation = [Message("system", SYSTEM), Message("user", "Oslo Rome")]
        replayed = asyncio.run(run_agent(client, conversation, tools, temperature=0.0))
        assert client.budget is not None and client.budget.calls == 0  # a hit costs nothing new
    assert len(loopback.requests) == 2 and comparable(replayed) == comparable(paid)


# -- Gemini's thought signatures ---------------------------------------------------------------------


def test_a_gemini_thought_signature_goes_back_with_the_call_it_came_with(loopback: LoopbackServer) -> None:
    """Thinking Gemini models sign each function call (``thoughtSignature``) and refuse a next turn
    that drops the signature. LiteLLM carries it inside the call's id: the trajectory, the cache and
    the next request keep it because they keep the id as it came."""
    signature = "c2lnbmVkIGJ5IHRoZSBtb2RlbA=="

    def signing_model(request: RecordedRequest) -> Reply:
        if results_of(request):
            return ok("It is 4.")
        part = {
            "functionCall": {"name": "temperature", "args": {"city": "Oslo"}},
            "thoughtSignature": signature,
        }
        usage = {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
        candidate = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}
        return Reply(
            body={"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}
        )

    loopback.handler = signing_model
    trajectory = run("gemini", loopback, [Tool.from_function(temperature)], text="Oslo")
    assert trajectory.output == "It is 4." and trajectory.tool_calls[0].outcome.result == "4"
    _, second = loopback.requests
    model_turn = second.json["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [
            {
                "function_call": {"name": "temperature", "args": {"city": "Oslo"}},
                "thoughtSignature": signature,
            }
        ],
    }


# -- budgets -----------------------------------------------------------------------------------------


@each_route
def test_a_call_budget_stops_a_multi_turn_loop_before_it_is_exceeded(
    loopback: LoopbackServer, route: str
) -> None:
    loopback.handler = endless_model
    seen: list[Completion] = []
    with pytest.raises(BudgetExceeded) as refused:
        run(
            route,
            loopback,
            [Tool.from_function(temperature)],
            knobs={"budget": Budget(max_calls=2)},
            on_call=seen.append,
            max_steps=5,
        )
    assert refused.value.limit == "calls" and refused.value.cap == 2
    assert len(loopback.requests) == 2 == len(seen)  # the third call was never sent


def max_tokens_sent(protocol: str, body: dict[str, Any]) -> Any:
    """The answer's cap as the request sent it."""
    if protocol == "gemini":
        return body["generationConfig"]["max_output_tokens"]
    return body["max_tokens"]


@each_route
def test_a_cost_budget_stops_a_multi_turn_loop_and_is_never_overspent(
    loopback: LoopbackServer, route: str
) -> None:
    def metered_model(request: RecordedRequest) -> Reply:
        reply = endless_model(request)  # 40 tokens in, 8 out: $0.048 a call at PRICE
        return dataclasses.replace(reply, input_tokens=40, output_tokens=8)

    loopback.handler = metered_model
    cap = 0.25
    seen: list[Completion] = []
    model = ROUTES[route][0]
    with Client(config(route, loopback)) as client, client.budget_scope(Budget(max_cost_usd=cap)) as ledger:
        loop = run_agent(
            client,
            [Message("user", "Oslo")],
            [Tool.from_function(temperature)],
            on_call=seen.append,
            max_steps=10,
            temperature=0.0,
            max_tokens=16,
        )
        with pytest.raises(BudgetExceeded) as refused:
            asyncio.run(loop)
    assert refused.value.limit == "cost_usd" and refused.value.cap == cap
    assert refused.value.spent == pytest.approx(ledger.spent_usd)  # nothing was in flight: all spent
    sent = len(loopback.requests)
    assert 2 <= sent < 10 and sent == len(seen) == ledger.calls  # several turns, then the refusal
    assert all(c.model == model and c.cost_usd == pytest.approx(0.048) for c in seen)
    assert ledger.spent_usd == pytest.approx(0.048 * sent) and ledger.spent_usd <= cap
    assert ledger.reserved_usd == 0 and ledger.in_flight == 0
    assert all(max_tokens_sent(route, r.json) == 16 for r in loopback.requests)


@each_route
def test_a_budget_stopping_an_evaluation_inside_a_rows_loop_raises_its_typed_error_with_every_call_counted(
    loopback: LoopbackServer, route: str
) -> None:
    loopback.handler = weather_model
    model = ROUTES[route][0]
    prompt = Prompt(user="{cities}", tools=(Tool.from_function(temperature),), max_steps=3)
    data = Dataset.from_records(
        [{"cities": c, "answer": str(TEMPERATURES[c])} for c in ("Oslo", "Rome", "Lima")]
    )
    paid: list[int] = []
    scored: list[int] = []
    knobs = {"budget": Budget(max_calls=3), "concurrency": 1}  # one row after the other
    with Client(config(route, loopback, **knobs)) as client:
        evaluator = Evaluator(client, ExactMatch("answer"), model)
        evaluation = evaluator.evaluate(
            prompt,
            data,
            on_row=lambda pos, row, spend: scored.append(pos),
            on_spend=lambda spend: paid.append(spend.calls),
        )
        with pytest.raises(BudgetExceeded) as refused:
            asyncio.run(evaluation)
    assert refused.value.limit == "calls"
    # the first row's two calls, then the second row's first: its second call is refused
    assert len(loopback.requests) == 3 == sum(paid) and scored == [0]
    assert [r.conversation[-1].role for r in loopback.requests] == ["user", "tool", "user"]


# -- the evaluator and the run store -----------------------------------------------------------------


def contains(sequence: Sequence[Any], part: Sequence[Any]) -> bool:
    return any(list(sequence[i : i + len(part)]) == list(part) for i in range(len(sequence)))


@each_route
def test_a_multi_turn_prompt_with_a_tool_exchange_in_its_history_reaches_each_provider_and_replays(
    loopback: LoopbackServer, route: str, tmp_path: Path
) -> None:
    """A row's conversation carries an earlier tool call and its result: each provider gets them in
    its own format before the new question, then the loop's own exchange; a second evaluation
    through a new client is answered from the cache."""
    before = {
        "id": "call_before",
        "type": "function",
        "function": {"name": "temperature", "arguments": '{"city": "Oslo"}'},
    }
    history = [
        {"role": "user", "content": "Oslo"},
        {"role": "assistant", "content": "", "tool_calls": [before]},
        {"role": "tool", "tool_call_id": "call_before", "name": "temperature", "content": "4"},
        {"role": "assistant", "content": "4"},
    ]
    data = Dataset.from_records([{"conversation": history, "question": "Rome", "answer": "18"}])
    prompt = Prompt(
        user="{question}",
        system=SYSTEM,
        turns=(Turn(history="conversation"),),
        tools=(Tool.from_function(temperature),),
        max_steps=3,
    )
    loopback.handler = weather_model
    model = ROUTES[route][0]
    cache = CacheConfig(path=str(tmp_path / "cache.sqlite"))

    def evaluate() -> Evaluation:
        with Client(config(route, loopback, cache=cache)) as client:
            return asyncio.run(Evaluator(client, ExactMatch("answer"), model).evaluate(prompt, data))

    paid = evaluate()
    assert paid.scores == [1.0] and paid.spend.calls == 2
    first, second = loopback.requests
    old_id, new_id = ("", "") if route == "gemini" else ("call_before", "call_rome")
    earlier = exchange(route, [(old_id, "temperature", {"city": "Oslo"})], [(old_id, "temperature", "4")])
    now = exchange(route, [(new_id, "temperature", {"city": "Rome"})], [(new_id, "temperature", "18")])
    assert contains(turns_of(route, first.json), earlier) and contains(turns_of(route, second.json), earlier)
    assert turns_of(route, second.json)[-len(now) :] == now
    assert [t.role for t in first.conversation] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]

    replayed = evaluate()
    assert len(loopback.requests) == 2 and replayed.spend.calls == 0 and replayed.spend.cached_calls == 2
    trajectory, again = paid.rows[0].trajectory, replayed.rows[0].trajectory
    assert trajectory is not None and again is not None and comparable(again) == comparable(trajectory)


@each_route
def test_an_agent_prompts_trajectories_are_stored_and_reloaded_from_the_run_store(
    loopback: LoopbackServer, route: str, tmp_path: Path
) -> None:
    loopback.handler = weather_model
    model = ROUTES[route][0]
    prompt = Prompt(
        user="{cities}",
        system=SYSTEM,
        tools=(Tool.from_function(temperature),),
        max_steps=3,
        params={"max_tokens": 64},
    )
    rows = [
        {"cities": "Oslo Rome", "answer": "4 | 18"},
        {"cities": "Atlantis", "answer": "unknown"},
        {"cities": "Lima", "answer": "19"},
    ]
    data = Dataset.from_records(rows)
    path = tmp_path / "runs.sqlite"

    def search(store: RunStore, run_id: str) -> Search:
        client = Client(config(route, loopback))
        evaluator = Evaluator(client, ExactMatch("answer"), model)
        return Search(client, evaluator, Splits(data, data, data), RunSettings(model, model), store, run_id)

    store = RunStore(path)
    run_id = store.create_run("wire-test", {"model": model})
    first = search(store, run_id)
    try:
        candidate = asyncio.run(first.evaluate(prompt))
    finally:
        first.client.close()
        store.close()
    evaluation = candidate.evaluation
    assert evaluation.scores == [1.0, 0.0, 1.0]
    assert len(loopback.requests) == 6  # two model calls per row
    trajectories = [r.trajectory for r in evaluation.rows]
    assert all(t is not None for t in trajectories)
    by_row = {r.output: r for r in evaluation.rows}
    atlantis = by_row["error: LookupError: no such city"].trajectory
    assert atlantis is not None and [s.outcome.error for s in atlantis.tool_calls] == [
        "LookupError: no such city"
    ]

    reopened = RunStore(path, create=False)
    try:
        (stored,) = reopened.candidates(run_id)
        loaded = Evaluation.from_dict(stored["evaluation"])
        assert [r.trajectory for r in loaded.rows] == trajectories  # every step, message and id
        assert loaded.rows == evaluation.rows
        first_row = loaded.rows[0].trajectory
        assert first_row is not None and isinstance(first_row.steps[1], ToolStep)
        assert (first_row.steps[1].call.name, first_row.steps[1].outcome.result) == ("temperature", "4")

        # A resumed run reads the evaluation back: nothing is sent, the same rows come out.
        resumed = search(reopened, run_id)
        try:
            again = asyncio.run(resumed.evaluate(prompt))
        finally:
            resumed.client.close()
    finally:
        reopened.close()
    assert len(loopback.requests) == 6
    assert again.evaluation.rows == evaluation.rows
