"""A scripted tool-calling model for this example, for tests and benchmarks without a key.

``answer(request_json)`` answers an OpenAI chat-completions request body the way a careless
agent would: it always looks the person up (find_employee), but calls team_office only when its
instruction or a tool's description tells it to ("then call team_office"); otherwise it answers
with the team's name, which is wrong. Called without tools it plays the reasoning model: it
proposes that text only when the reflection request shows it the rows' steps (or a cause found
from them earlier). Deterministic, so
runs replay and resume exactly. It shows that the machinery works, not how much a real model gains.
"""

from __future__ import annotations

import json
from typing import Any

from directory import EMPLOYEES, TEAM_OFFICES

from promptlift.testing.server import RecordedRequest, Reply, ok, tool_call

HINT = "then call team_office"
PROPOSAL = "Answer with the city only. First call find_employee with the full name, then call team_office."


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The reply as ``{"content": str}`` or ``{"tool_call": (name, arguments, id)}``."""
    messages = body["messages"]
    if not body.get("tools"):  # the reasoning model
        shown = json.dumps(messages)
        # it proposes the second hop when it reads the rows' steps, or a cause that names it already
        # (a later step of a reflective optimizer, given the first step's answer)
        seen = "called find_employee(" in shown or HINT in shown
        return {"content": PROPOSAL if seen else "Answer the question carefully."}
    last = messages[-1]
    if last["role"] == "user":
        name = next((n for n in EMPLOYEES if n in str(last["content"])), "someone")
        return {"tool_call": ("find_employee", {"name": name}, "call_1")}
    if last["role"] == "tool" and last["content"] in TEAM_OFFICES.values():
        return {"content": last["content"]}
    try:
        team = json.loads(last["content"])["team"]
    except (ValueError, KeyError, TypeError):
        return {"content": "I could not find them."}
    told = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    told += " ".join(t["function"]["description"] for t in body["tools"])
    if HINT not in told:
        return {"content": f"They are on the {team} team."}
    return {"tool_call": ("team_office", {"team": team}, "call_2")}


def handle(request: RecordedRequest) -> Reply:
    """``answer`` as a LoopbackServer handler: ``server.handler = handle``."""
    reply = answer(request.json)
    if "tool_call" in reply:
        name, arguments, call_id = reply["tool_call"]
        return ok("", tool_calls=(tool_call(name, arguments, id=call_id),))
    return ok(reply["content"])
