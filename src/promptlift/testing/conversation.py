"""A model request's conversation read the same way whichever protocol carried it.

``RecordedRequest.conversation`` (``testing.server``) is built here, so a script playing a
tool-calling model (``LoopbackServer.handler``) can answer one request shape for every route:

    def model(request: RecordedRequest) -> Reply:
        results = [r for turn in request.conversation for r in turn.results]
        if not results:
            return ok("", tool_calls=(tool_call("get_weather", {"city": "Oslo"}, id="call_1"),))
        return ok(f"It is {results[0].content}.")

Each ``Turn`` is one message as sent: its role (``system``, ``user``, ``assistant`` or ``tool``),
its text, the tool calls an assistant turn carries and the tool results a ``tool`` turn carries.
The protocols group them differently, and the view keeps each one's grouping:

    openai, azure   ``messages``: an assistant message's ``tool_calls``, then one ``tool`` message
                    per result (``tool_call_id``)
    anthropic       ``system``, then ``messages`` of ``text``, ``tool_use`` and ``tool_result``
                    blocks; the results of one answer's calls arrive in one user message, read as
                    one ``tool`` turn (a user message with text beside its results stays ``user``)
    gemini, vertex  ``system_instruction``, then ``contents`` of ``text``, ``functionCall`` and
                    ``functionResponse`` parts (camelCase or snake_case); role ``model`` is
                    ``assistant``. Before Gemini 3.5 a call carries no id: ``id`` is then "" and a
                    result answers the call of its name, in order

A result's ``name`` is the protocol's, else the name of the call its id answers (Anthropic's
``tool_result`` names no tool). Its ``content`` is the text the model was given: Gemini takes a
result as a JSON object (LiteLLM sends ``{"content": TEXT}``, or the object a JSON text parses to),
shown here as that text, or as the object's JSON.

Ollama's native protocol is read like OpenAI's; other bodies (text completion, a token exchange)
have no conversation: an empty tuple.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Turn", "WireCall", "WireResult", "offered_tools", "read_conversation"]

TurnRole = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class WireCall:
    """A tool call an assistant turn carries, as the request sent it back to the model."""

    id: str  # "" when the protocol carries none (Gemini before 3.5)
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class WireResult:
    """A tool's result as the model was given it; ``id`` names the call it answers ("" on Gemini)."""

    id: str
    name: str
    content: str


@dataclass(frozen=True)
class Turn:
    role: TurnRole
    text: str = ""
    calls: tuple[WireCall, ...] = ()
    results: tuple[WireResult, ...] = ()


def read_conversation(protocol: str, body: Any) -> tuple[Turn, ...]:
    """The turns of a request ``body`` (parsed JSON) sent in ``protocol`` (see the module doc)."""
    if not isinstance(body, Mapping):
        return ()
    if protocol == "anthropic":
        turns = _anthropic(body)
    elif protocol in ("gemini", "vertex"):
        turns = _gemini(body)
    elif protocol in ("openai", "azure", "ollama"):
        turns = _openai(body)
    else:
        return ()
    return _named(turns)


def offered_tools(protocol: str, body: Any) -> tuple[str, ...]:
    """The names of the tools a request offers the model, in order."""
    if not isinstance(body, Mapping):
        return ()
    names: list[str] = []
    for tool in _dicts(body.get("tools")):
        if protocol == "anthropic":
            names.append(str(tool.get("name", "")))
        elif protocol in ("gemini", "vertex"):
            declared = tool.get("function_declarations", tool.get("functionDeclarations"))
            names += [str(d.get("name", "")) for d in _dicts(declared)]
        else:
            names.append(str((tool.get("function") or {}).get("name", "")))
    return tuple(names)


# -- per protocol ----------------------------------------------------------------------------------


def _openai(body: Mapping[str, Any]) -> list[Turn]:
    turns: list[Turn] = []
    for message in _dicts(body.get("messages")):
        role = str(message.get("role", ""))
        text = _text(message.get("content"))
        if role in ("tool", "function"):  # "function": the deprecated spelling of a tool result
            name = message.get("name") or message.get("tool_name") or ""  # tool_name: Ollama's
            result = WireResult(str(message.get("tool_call_id", "")), str(name), text)
            turns.append(Turn("tool", results=(result,)))
            continue
        calls = tuple(
            WireCall(
                str(call.get("id", "")),
                str((call.get("function") or {}).get("name", "")),
                _arguments((call.get("function") or {}).get("arguments")),
            )
            for call in _dicts(message.get("tool_calls"))
        )
        turns.append(Turn(_role(role), text, calls))
    return turns


def _anthropic(body: Mapping[str, Any]) -> list[Turn]:
    turns: list[Turn] = []
    system = _text(body.get("system"))
    if system:
        turns.append(Turn("system", system))
    for message in _dicts(body.get("messages")):
        content = message.get("content")
        blocks = list(_dicts(content)) if isinstance(content, list) else []
        text = _text(content)
        calls = tuple(
            WireCall(str(b.get("id", "")), str(b.get("name", "")), _arguments(b.get("input")))
            for b in blocks
            if b.get("type") == "tool_use"
        )
        results = tuple(
            WireResult(str(b.get("tool_use_id", "")), "", _text(b.get("content")))
            for b in blocks
            if b.get("type") == "tool_result"
        )
        role = _role(str(message.get("role", "")))
        turns.append(Turn("tool" if results and not text else role, text, calls, results))
    return turns


def _gemini(body: Mapping[str, Any]) -> list[Turn]:
    turns: list[Turn] = []
    system = body.get("system_instruction", body.get("systemInstruction"))
    if isinstance(system, Mapping):
        text = _part_text(system.get("parts"))
        if text:
            turns.append(Turn("system", text))
    for content in _dicts(body.get("contents")):
        parts = list(_dicts(content.get("parts")))
        calls = tuple(
            WireCall(str(c.get("id", "")), str(c.get("name", "")), _arguments(c.get("args")))
            for c in (_either(p, "functionCall", "function_call") for p in parts)
            if c is not None
        )
        results = tuple(
            WireResult(str(r.get("id", "")), str(r.get("name", "")), _response_text(r.get("response")))
            for r in (_either(p, "functionResponse", "function_response") for p in parts)
            if r is not None
        )
        text = _part_text(parts)
        role = "assistant" if content.get("role") == "model" else _role(str(content.get("role", "user")))
        turns.append(Turn("tool" if results and not text else role, text, calls, results))
    return turns


# -- helpers ---------------------------------------------------------------------------------------


def _named(turns: list[Turn]) -> tuple[Turn, ...]:
    """Each result without a name given the name of the call its id answers."""
    names = {c.id: c.name for t in turns for c in t.calls if c.id}
    out = []
    for turn in turns:
        if any(not r.name for r in turn.results):
            results = tuple(
                r if r.name else WireResult(r.id, names.get(r.id, ""), r.content) for r in turn.results
            )
            turn = Turn(turn.role, turn.text, turn.calls, results)
        out.append(turn)
    return tuple(out)


def _role(role: str) -> TurnRole:
    # "developer" is OpenAI's newer name for system; "function" its deprecated name for tool
    known: dict[str, TurnRole] = {"developer": "system", "function": "tool"}
    if role in ("system", "user", "assistant", "tool"):
        return role  # type: ignore[return-value]
    return known.get(role, "user")


def _dicts(value: Any) -> Iterable[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _text(content: Any) -> str:
    """A message's text: a string, or the ``text`` of its text blocks joined by newlines."""
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in _dicts(content) if b.get("type", "text") == "text")


def _part_text(parts: Any) -> str:
    return "\n".join(str(p["text"]) for p in _dicts(parts) if isinstance(p.get("text"), str))


def _either(part: Mapping[str, Any], *names: str) -> Mapping[str, Any] | None:
    for name in names:
        value = part.get(name)
        if isinstance(value, Mapping):
            return value
    return None


def _arguments(value: Any) -> dict[str, Any]:
    """Call arguments as an object: OpenAI sends a JSON text, Anthropic and Gemini an object. A
    text that is not a JSON object is kept whole under ``""``, so a script can still see it."""
    if isinstance(value, Mapping):
        return dict(value)
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {"": str(value)}
    return parsed if isinstance(parsed, dict) else {"": str(value)}


def _response_text(response: Any) -> str:
    if (
        isinstance(response, Mapping)
        and set(response) == {"content"}
        and isinstance(response["content"], str)
    ):
        return response["content"]
    return json.dumps(response, ensure_ascii=False)
