"""The agent loop: model → tool calls → the user's tools → model … until an answer or a step limit.

Every model call goes through the one ``Client`` (budget, cache, retries, rate limits), so a loop
replayed after a kill -9 is answered from the cache step by step (the calls are deterministic at
temperature 0: the same history makes the same request). Tool calls of one answer run side by side;
a tool that raises or times out gives the model an error text (``promptlift.optimize.tools``).
A ``tool_choice`` that obliges a call is asked for on the first model call only (``run_agent``).

The trajectory keeps every step — each model call (its answer, tool calls, tokens, cost, latency,
cache hit) and each tool call (arguments, result or error, latency) — as plain data that the run
store keeps and reflective optimizers read as feedback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptlift.client import Client
from promptlift.optimize.tools import Tool, ToolOutcome
from promptlift.tracing import Tracer
from promptlift.types import Completion, Message, ToolCall, Usage

DEFAULT_MAX_STEPS = 8


@dataclass(frozen=True)
class ModelStep:
    content: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    cost_usd: float
    latency_s: float
    cached: bool
    finish_reason: str

    @classmethod
    def of(cls, completion: Completion) -> ModelStep:
        return cls(
            completion.content,
            completion.tool_calls,
            completion.usage,
            completion.cost_usd,
            completion.latency_s,
            completion.cached,
            completion.finish_reason,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "model",
            "content": self.content,
            "tool_calls": [t.to_dict() for t in self.tool_calls],
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
            "cached": self.cached,
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class ToolStep:
    call: ToolCall
    outcome: ToolOutcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "tool",
            "call": self.call.to_dict(),
            "result": self.outcome.result,
            "error": self.outcome.error,
            "latency_s": self.outcome.latency_s,
        }


Step = ModelStep | ToolStep


@dataclass(frozen=True)
class Trajectory:
    """One row's run of the loop. ``stopped``: "answer", or "step limit" when the model was still
    calling tools after ``max_steps`` model calls (``output`` is then its last text, often empty)."""

    output: str
    steps: tuple[Step, ...]
    messages: tuple[Message, ...]
    stopped: str
    completions: tuple[Completion, ...] = field(default=(), compare=False, repr=False)

    @property
    def model_calls(self) -> int:
        return sum(1 for s in self.steps if isinstance(s, ModelStep))

    @property
    def tool_calls(self) -> tuple[ToolStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, ToolStep))

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps if isinstance(s, ModelStep))

    def summary(self, width: int = 160) -> str:
        """The steps as short lines, for a reflecting model: each tool call with its arguments and
        what came back (or the error), and how the loop ended."""

        def cut(text: str) -> str:
            text = " ".join(text.split())
            return text if len(text) <= width else text[: width - 3] + "..."

        lines = []
        for step in self.steps:
            if isinstance(step, ToolStep):
                got = f"error: {step.outcome.error}" if step.outcome.error else step.outcome.result
                lines.append(f"called {step.call.name}({cut(step.call.arguments)}) -> {cut(got)}")
        if self.stopped != "answer":
            lines.append(f"stopped: {self.stopped} after {self.model_calls} model calls")
        return "\n".join(lines) or "answered without calling a tool"

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "stopped": self.stopped,
            "steps": [s.to_dict() for s in self.steps],
            "messages": [m.to_dict() for m in self.messages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        steps: list[Step] = []
        for step in data.get("steps") or ():
            if step.get("type") == "tool":
                outcome = ToolOutcome(
                    str(step.get("result", "")), str(step.get("error", "")), float(step.get("latency_s", 0.0))
                )
                steps.append(ToolStep(ToolCall.from_dict(step["call"]), outcome))
            else:
                steps.append(
                    ModelStep(
                        str(step.get("content", "")),
                        tuple(ToolCall.from_dict(t) for t in step.get("tool_calls") or ()),
                        Usage.from_dict(step.get("usage") or {}),
                        float(step.get("cost_usd") or 0.0),
                        float(step.get("latency_s") or 0.0),
                        bool(step.get("cached", False)),
                        str(step.get("finish_reason", "stop")),
                    )
                )
        messages = tuple(Message.from_dict(m) for m in data.get("messages") or ())
        return cls(str(data.get("output", "")), tuple(steps), messages, str(data.get("stopped", "answer")))


async def run_agent(
    client: Client,
    messages: Sequence[Message],
    tools: Sequence[Tool],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    on_call: Callable[[Completion], None] | None = None,
    **params: Any,
) -> Trajectory:
    """Run the loop from ``messages`` with ``tools`` offered on every call; ``params`` go to each
    request (model, temperature, tool_choice, ...), except that a ``tool_choice`` obliging a call
    ("required", or a named function) holds for the first model call only, and the later ones are
    "auto": a model obliged to call a tool on every step could never answer, and every row would
    end at the step limit. Model-call failures raise (the client's typed errors, after its
    retries); tool failures never do. At the step limit, the tools the last call asked for are not
    run (no model would read their results, and a tool may have side effects). ``on_call`` sees
    each model call as it returns, so a caller's ledger counts the calls of a loop that then fails."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    by_name = {tool.name: tool for tool in tools}
    specs = tuple(tool.spec() for tool in tools)
    history = list(messages)
    steps: list[Step] = []
    completions: list[Completion] = []
    later = {**params, "tool_choice": "auto"} if _obliges_a_call(params.get("tool_choice")) else params
    for step in range(max_steps):
        sent = params if step == 0 else later
        completion = await client.acomplete(client.request(history, tools=specs, **sent))
        completions.append(completion)
        if on_call is not None:
            on_call(completion)
        steps.append(ModelStep.of(completion))
        history.append(Message("assistant", completion.content, completion.tool_calls))
        if not completion.tool_calls:
            return Trajectory(completion.content, tuple(steps), tuple(history), "answer", tuple(completions))
        if step == max_steps - 1:
            break  # no model call is left to read the results: the tools asked for are not run
        outcomes = await asyncio.gather(
            *(_call(client.tracer, by_name, call) for call in completion.tool_calls)
        )
        for call, outcome in zip(completion.tool_calls, outcomes, strict=True):
            steps.append(ToolStep(call, outcome))
            history.append(Message("tool", outcome.shown, tool_call_id=call.id, name=call.name))
    last = completions[-1].content
    return Trajectory(last, tuple(steps), tuple(history), "step limit", tuple(completions))


def _obliges_a_call(tool_choice: Any) -> bool:
    """Whether ``tool_choice`` obliges a call: "required", or a named function (a mapping)."""
    return tool_choice == "required" or isinstance(tool_choice, Mapping)


async def _call(tracer: Tracer, tools: Mapping[str, Tool], call: ToolCall) -> ToolOutcome:
    """One tool call, in an ``execute_tool {name}`` span (GenAI conventions); its arguments and
    result are recorded only with the tracer's ``capture_content``."""
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id,
    }
    with tracer.span(f"execute_tool {call.name}", attrs) as span:
        tool = tools.get(call.name)
        if tool is None:  # the model made a tool up: it is told which exist, and may correct itself
            outcome = ToolOutcome(
                error=f"there is no tool {call.name!r}; the tools are: {', '.join(tools) or 'none'}"
            )
        else:
            outcome = await tool.run(call.arguments)
        span.set("error.type", "ToolError" if outcome.error else None)
        if tracer.capture_content:
            span.update(
                {"gen_ai.tool.call.arguments": call.arguments, "gen_ai.tool.call.result": outcome.shown}
            )
        return outcome
