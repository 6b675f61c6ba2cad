"""What both providers share about streamed answers: turning OpenAI-style chunks into events and
the events into the final ``Completion``.

A chunk's delta carries a piece of text, pieces of tool calls (each by its ``index``: the first
piece names the call, the rest add argument fragments), and at the end a finish reason; usage
comes last, in a chunk of its own (``stream_options.include_usage``). Both paths feed the same
assembler, so the same stream gives the same events and the same completion through either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from promptlift import errors, pricing
from promptlift.providers.base import answer
from promptlift.types import (
    Completion,
    CompletionRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAssembler:
    """Collects one stream: ``feed`` each chunk's parts (it returns the events they make), then
    ``completion`` once the stream has ended."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.events = 0

    def feed(
        self,
        content: str | None,
        calls: Iterable[tuple[int, str, str, str]] = (),
        finish: str | None = None,
        usage: Usage | None = None,
    ) -> list[StreamEvent]:
        """One chunk: its text, its tool-call pieces as (index, id, name, arguments), its finish
        reason and its usage (each may be absent)."""
        events: list[StreamEvent] = []
        if content:
            self.text.append(content)
            events.append(TextDelta(content))
        for index, call_id, name, arguments in calls:
            call = self.calls.setdefault(index, _Call())
            call.id = call.id or call_id
            call.name = call.name or name
            if arguments:
                call.arguments.append(arguments)
            if call_id or name or arguments:
                events.append(ToolCallDelta(index, call_id, name, arguments))
        if finish:
            self.finish = finish
        if usage is not None and usage.reported:
            self.usage = usage
        self.events += len(events)
        return events

    def completion(
        self,
        request: CompletionRequest,
        provider: str,
        *,
        served_by: str,
        latency: float,
        prices: pricing.Prices | None,
    ) -> Completion:
        """The whole answer; ``ContentFiltered`` for a stream the filter cut to nothing."""
        content = "".join(self.text)
        tool_calls = tuple(
            ToolCall(c.name, "".join(c.arguments).strip() or "{}", c.id)
            for _, c in sorted(self.calls.items())
        )
        return answer(
            request,
            provider,
            content=content,
            tool_calls=tool_calls,
            finish=self.finish or "stop",
            usage=self.usage or Usage(reported=False),
            latency=latency,
            served_by=served_by,
            prices=prices,
        )


def cut_short(request: CompletionRequest, provider: str, received: int) -> errors.ConnectionFailed:
    """A stream that ended before the server said it was done."""
    return errors.ConnectionFailed(
        f"the stream ended before the answer did ({received} pieces received)",
        provider=provider,
        model=request.model,
    )
