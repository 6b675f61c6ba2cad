"""Chat messages rendered as plain text, for base models that have no chat template.

A base model continues text; it does not take turns. So a conversation becomes one document:

    <system text>

    <user 1> <assistant 1>

    <user 2>

Blocks are separated by a blank line, and a blank line is the default stop sequence, so the
model answers the last input once. A user turn that ends with a cue (``Sentiment:``) is followed
on the same line by its answer; otherwise the answer starts on the next line. Few-shot turns read
as worked input/output pairs, which is what a base model needs to answer in the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptlift.types import Message

BLOCK_SEPARATOR = "\n\n"


def _joiner(user_text: str) -> str:
    return " " if user_text.rstrip().endswith(":") else "\n"


def render_plain(messages: Sequence[Message]) -> str:
    """Render a conversation for a base model; the result ends where the answer should begin."""
    blocks: list[str] = []
    pending_user: str | None = None
    for message in messages:
        text = message.text.strip()
        if message.tool_calls:  # a base model reads a call as a line of text, as it would write one
            calls = "\n".join(f"Action: {c.name}({c.arguments})" for c in message.tool_calls)
            text = f"{text}\n{calls}".strip()
        if message.role == "tool":  # a tool's result reads as the next input
            text = f"Observation: {text}"
        if message.role == "system":
            if pending_user is not None:
                blocks.append(pending_user)
                pending_user = None
            if text:
                blocks.append(text)
        elif message.role in ("user", "tool"):
            if pending_user is not None:
                blocks.append(pending_user)
            pending_user = text
        else:  # assistant: closes the pending user turn as a worked example
            if pending_user is None:
                blocks.append(text)
            else:
                blocks.append(pending_user + _joiner(pending_user) + text)
                pending_user = None
    if pending_user is None:
        return BLOCK_SEPARATOR.join(blocks) + BLOCK_SEPARATOR
    blocks.append(pending_user)
    return BLOCK_SEPARATOR.join(blocks) + _joiner(pending_user).replace(" ", "")
