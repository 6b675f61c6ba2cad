"""Tool calls in plain text, for base models that have no tool-calling format of their own.

A base model sees a request's tools as a block of text and calls one by writing a line; the reply
is read back into ``ToolCall`` values, so the agent loop runs it like any chat model's calls. The
format is the ReAct one (Thought / Action / Observation), which the renderer
(``promptlift.providers.render``) also uses for the calls and results already in the conversation:

    Thought: I need the employee's team first.
    Action: find_employee({"name": "Mara Lindqvist"})
    Observation: {"name": "Mara Lindqvist", "id": "E101", "team": "Payments"}
    Thought: Now the team's office.
    Action: team_office({"team": "Payments"})
    Observation: Lisbon
    Answer: Lisbon

What ``parse_reply`` guarantees, and nothing more:

- An ``Action:`` line is a tool name (letters, digits, ``_``, ``-``) then its arguments in
  parentheses: a JSON object, or nothing (``{}``). Every such line becomes one call, in order; its
  ``arguments`` are the JSON text exactly as written when it decodes to an object, else the text
  up to the line's last ``)`` (a bad call is the tool's to refuse with an error the model is
  shown, as with any provider's malformed arguments). A line with no ``)`` was cut off and is not
  a call. The name is not checked against the offered tools: the agent loop tells the model which
  exist.
- The text before the first Action line is the reply's content (the model's thought). Text after
  an Action line that is not another Action line is dropped: it is the model imagining the
  observation, which generation is stopped before anyway (``STOP``).
- A line opening with ``Answer:`` or ``Final Answer:`` before any Action line ends the reply: it
  is the final answer, the text after the marker up to a line that opens another step
  (``Question:``, ``Thought:``, ``Action:``, ``Observation:``, ``Answer:``), so a model that runs on
  into a question of its own calls no tool from it.
- A reply with neither is the final answer as a whole.

Call ids are ``call_<n>`` numbered after the calls already in the conversation, so the same
conversation gives the same ids and a replayed loop hits the cache.

``render_tools`` shows each tool's description and its parameters' descriptions, so an optimizer
that rewrites a tool's description (``tool:NAME``) changes what the base model reads too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptlift.types import Message, ToolCall

# Where generation stops when tools are offered: past its Action line the model would go on to
# write the tool's result itself.
STOP = ("\nObservation",)

_ACTION = re.compile(r"^\s*Action\s*:\s*([A-Za-z0-9_-]{1,64})\s*\((.*)$")
_ANSWER = re.compile(r"^\s*(?:Final\s+)?Answer\s*:\s*", re.IGNORECASE)
_NEXT_STEP = re.compile(r"^\s*(?:Question|Thought|Action|Observation|(?:Final\s+)?Answer)\s*:", re.IGNORECASE)
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class Reply:
    """A base model's reply read as an assistant turn: its text and the calls it asked for."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()


def _call_in(line: str) -> tuple[str, str] | None:
    """``(name, arguments)`` of an Action line, or None when the line is not one."""
    match = _ACTION.match(line)
    if match is None:
        return None
    name, rest = match.group(1), match.group(2).strip()
    if rest.startswith(")"):
        return name, "{}"
    try:
        value, end = _decoder.raw_decode(rest)
    except json.JSONDecodeError:
        value, end = None, -1
    if isinstance(value, dict) and rest[end:].lstrip().startswith(")"):
        return name, rest[:end]
    close = rest.rfind(")")
    if close < 0:
        return None  # no closing parenthesis: the line was cut off, not a call
    return name, rest[:close].strip() or "{}"


def parse_reply(text: str, *, calls_before: int = 0) -> Reply:
    """Read a generated ``text`` (see the module docstring for the grammar); ``calls_before``: how
    many tool calls the conversation already holds, which numbers the new calls' ids."""
    lines = text.splitlines()
    calls: list[ToolCall] = []
    first = 0
    for i, line in enumerate(lines):
        found = _call_in(line)
        if found is not None:
            first = first if calls else i
            name, arguments = found
            calls.append(ToolCall(name, arguments, f"call_{calls_before + len(calls) + 1}"))
        elif calls:
            break  # past the Action lines: an imagined observation or a next step
        elif _ANSWER.match(line):
            return Reply(_answer_from(lines[i:]))  # answered: what follows is the model running on
    if calls:
        return Reply("\n".join(lines[:first]).strip(), tuple(calls))
    return Reply(text.strip())


def _answer_from(lines: list[str]) -> str:
    """The answer that opens ``lines`` (an Answer line), up to the line that opens another step."""
    head = _ANSWER.sub("", lines[0], count=1)
    rest = []
    for line in lines[1:]:
        if _NEXT_STEP.match(line):
            break
        rest.append(line)
    return "\n".join([head, *rest]).strip()


def _signature(parameters: Mapping[str, Any]) -> str:
    properties: Mapping[str, Any] = parameters.get("properties") or {}
    fields = ", ".join(
        f'"{name}": {schema.get("type", "value") if isinstance(schema, Mapping) else "value"}'
        for name, schema in properties.items()
    )
    return "{" + fields + "}" if fields else ""


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """A request's ``tools`` (OpenAI's shape) as one block of text: each tool as the call it takes
    and its description (with its parameters' descriptions), then how to call one and answer."""
    lines = ["Tools:"]
    for tool in tools:
        function: Mapping[str, Any] = tool.get("function") or tool
        parameters: Mapping[str, Any] = function.get("parameters") or {}
        described = [
            f"{name}: {schema['description']}"
            for name, schema in (parameters.get("properties") or {}).items()
            if isinstance(schema, Mapping) and schema.get("description")
        ]
        text = " ".join([str(function.get("description") or "").strip(), *described]).strip()
        head = f"{function.get('name', '')}({_signature(parameters)})"
        lines.append(f"{head}: {text}" if text else head)
    lines.append(
        'Call a tool with a line "Action: tool({...})"; its result follows as "Observation: ...". '
        'Give the final answer as "Answer: ...".'
    )
    return "\n".join(lines)


def calls_in(messages: Sequence[Message]) -> int:
    """How many tool calls the conversation already holds (numbers the next calls' ids)."""
    return sum(len(m.tool_calls) for m in messages)
