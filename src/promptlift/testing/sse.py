"""OpenAI's streamed chat answer (``"stream": true``) as the loopback server sends it: server-sent
events, one ``data: {chunk}`` per piece and ``data: [DONE]`` at the end.

A reply's content is split at word boundaries, one chunk per word; each tool call is one chunk
with its index, id and name, then its JSON arguments in three fragments; the finish reason comes in
a chunk of its own, and the usage in a last chunk with no choices, only when the request asked for
it (``stream_options.include_usage``), as OpenAI does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from promptlift.testing.replies import Reply, parsed_calls

_WORD = re.compile(r"\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """``text`` in pieces that join back to it: each word with the spaces after it."""
    return _WORD.findall(text)


def _fragments(text: str, parts: int = 3) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_chunks(
    reply: Reply,
    *,
    model: str,
    response_id: str,
    include_usage: bool,
    usage: Callable[[], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The chunks of ``reply``'s streamed answer, in order (``usage()`` gives the usage object)."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in split_words(reply.content)]
    for index, (call_id, name, arguments) in enumerate(parsed_calls(reply)):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [head]}))
        for piece in _fragments(json.dumps(arguments)):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, reply.finish_reason))
    if include_usage and reply.report_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = usage()
        chunks.append(last)
    return chunks


def event(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def wants_stream(body: Any) -> tuple[bool, bool]:
    """Whether a chat request asked for a stream, and for usage at its end."""
    if not isinstance(body, dict) or body.get("stream") is not True:
        return False, False
    options = body.get("stream_options")
    return True, isinstance(options, dict) and options.get("include_usage") is True


# In HTTP/1.1 chunks: a connection cut before the last one (``cut_after``) is then an incomplete
# body, as a client sees a server that died mid-answer (with no length at all, it would look done).
SSE_HEADERS = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}


def write_events(
    write: Callable[[bytes], Any], chunks: Sequence[dict[str, Any]], reply: Reply, closing: threading.Event
) -> bool:
    """Send ``chunks`` and ``[DONE]`` as chunked events; False when cut short (``reply.cut_after``,
    or the server closing during a ``hold``): the connection must then be closed."""
    payloads: list[dict[str, Any] | str] = [*chunks, "[DONE]"]
    for sent, payload in enumerate(payloads):
        if sent == reply.cut_after:
            return False
        if reply.hold is not None and sent == reply.hold[0]:
            while not reply.hold[1].wait(0.05):
                if closing.is_set():
                    return False
        data = event(payload)
        write(b"%x\r\n%s\r\n" % (len(data), data))
    write(b"0\r\n\r\n")
    return True
