"""LiteLLM's streamed chunks, read for ``LiteLLMProvider.astream``: no litellm import here, only the
objects it yields (OpenAI's chunk shape, as attributes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from promptlift.providers.streaming import StreamAssembler
from promptlift.types import StreamEvent, Usage


class UsageSpy:
    """Stands in for the provider's own stream under LiteLLM's stream wrapper, to see whether the
    provider reported usage. LiteLLM's last chunk carries usage either way: when the server sent
    none, LiteLLM counts tokens itself, which a whole answer (``usage_of``) does not do, and which a
    budget must not take for the provider's bill."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._chunks = aiter(inner)
        self.seen = False

    @classmethod
    def install(cls, wrapper: Any) -> UsageSpy | None:
        inner = getattr(wrapper, "completion_stream", None)
        if inner is None or not hasattr(inner, "__aiter__"):
            return None  # a shape we do not know: LiteLLM's usage is taken as reported
        spy = cls(inner)
        wrapper.completion_stream = spy
        return spy

    def __aiter__(self) -> UsageSpy:
        return self

    async def __anext__(self) -> Any:
        chunk = await anext(self._chunks)
        usage = chunk.get("usage") if isinstance(chunk, dict) else getattr(chunk, "usage", None)
        self.seen = self.seen or bool(usage)
        return chunk

    def __getattr__(self, name: str) -> Any:  # close, aclose, response: the stream's own
        return getattr(self._inner, name)


def feed(
    assembler: StreamAssembler, chunk: Any, usage_of: Callable[[Any], Usage], *, trust_usage: bool = True
) -> list[StreamEvent]:
    """One of LiteLLM's stream chunks into the assembler (OpenAI's shape, as objects); its usage
    only when the provider reported some (``UsageSpy``)."""
    choices = list(getattr(chunk, "choices", None) or ())
    choice = choices[0] if choices else None
    delta = getattr(choice, "delta", None)
    calls = []
    for piece in getattr(delta, "tool_calls", None) or ():
        function = getattr(piece, "function", None)
        calls.append(
            (
                int(getattr(piece, "index", 0) or 0),
                str(getattr(piece, "id", "") or ""),
                str(getattr(function, "name", "") or ""),
                str(getattr(function, "arguments", "") or ""),
            )
        )
    content = getattr(delta, "content", None)
    usage = usage_of(chunk) if trust_usage and getattr(chunk, "usage", None) is not None else None
    return assembler.feed(
        content if isinstance(content, str) else None,
        calls,
        str(getattr(choice, "finish_reason", "") or ""),
        usage,
    )
