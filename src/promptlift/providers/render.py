"""Chat messages rendered as plain text, for base models that have no chat template.

A base model continues text; it does not take turns. So a conversation becomes one document:

    <system text>

    <user 1> <assistant 1>

    <user 2>

Blocks are separated by a blank line, and a blank line is the default stop sequence, so the
model answers the last input once. A user turn that ends with a cue (``Sentiment:``) is followed
on the same line by its answer; otherwise the answer starts on the next line. Few-shot turns read
as worked input/output pairs, which is what a base model needs to answer in the same shape.

A tool exchange stays inside its question's block, one line per step, the shape a worked agent
demo has when written out as text (``promptlift.providers.react``)::

    <user>
    <thought>
    Action: name({json arguments})
    Observation: <tool result>

A request's tools are shown as a block after the system text (``react.render_tools``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptlift.providers.react import render_tools
from promptlift.types import Message

BLOCK_SEPARATOR = "\n\n"


def _joiner(user_text: str) -> str:
    return " " if user_text.rstrip().endswith(":") else "\n"


def _text_of(message: Message) -> str:
    text = message.text.strip()
    if message.tool_calls:  # a base model reads a call as a line of text, as it would write one
        calls = "\n".join(f"Action: {c.name}({c.arguments})" for c in message.tool_calls)
        text = f"{text}\n{calls}".strip()
    if message.role == "tool":
        text = f"Observation: {text}"
    return text


def _with_result(blocks: list[str], pending: str | None, result: str, exchange: bool) -> str:
    """The pending input once a tool's ``result`` is added: the next line of the exchange it
    answers (reopening the block the call closed), else an input of its own."""
    if exchange and pending is not None:
        return f"{pending}\n{result}"
    if exchange and blocks:
        return f"{blocks.pop()}\n{result}"
    if pending is not None:
        blocks.append(pending)
    return result


def render_plain(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] = ()) -> str:
    """Render a conversation for a base model; the result ends where the answer should begin.
    ``tools`` (a request's, OpenAI's shape) are listed after the leading system text."""
    blocks: list[str] = []
    pending_user: str | None = None
    tools_shown = not tools
    exchange = False  # inside a tool exchange: the last turn was a call or its result
    for message in messages:
        text = _text_of(message)
        if not tools_shown and message.role != "system":
            blocks.append(render_tools(tools))
            tools_shown = True
        if message.role == "tool":
            pending_user, exchange = _with_result(blocks, pending_user, text, exchange), True
            continue
        exchange = bool(message.tool_calls)
        if message.role == "system":
            if pending_user is not None:
                blocks.append(pending_user)
                pending_user = None
            if text:
                blocks.append(text)
        elif message.role == "user":
            if pending_user is not None:
                blocks.append(pending_user)
            pending_user = text
        else:  # assistant: closes the pending user turn as a worked example
            if pending_user is None:
                blocks.append(text)
            else:
                blocks.append(pending_user + _joiner(pending_user) + text)
                pending_user = None
    if not tools_shown:
        blocks.append(render_tools(tools))
    if pending_user is None:
        return BLOCK_SEPARATOR.join(blocks) + BLOCK_SEPARATOR
    blocks.append(pending_user)
    return BLOCK_SEPARATOR.join(blocks) + _joiner(pending_user).replace(" ", "")
