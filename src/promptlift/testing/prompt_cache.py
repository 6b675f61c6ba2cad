"""The loopback server's emulation of the providers' prompt caches (``LoopbackServer.emulate_prompt_cache``).

Tokens are the server's own unit, words (as its usage counts them), so a reported cache read is
never more than the input it is part of. Each protocol caches as its provider does:

- OpenAI, Azure (``openai``/``azure``): automatic; the longest prefix seen before, counted in
  steps of ``step`` words from ``minimum`` up (OpenAI's 1,024 then 128-token increments), is
  reported as ``prompt_tokens_details.cached_tokens``. No writes are reported.
- Anthropic: only at blocks marked ``cache_control`` (system blocks, message content blocks,
  tools), and only a prefix of at least ``minimum`` words: the longest marked prefix seen before
  is read (``cache_read_input_tokens``), and from there up to the last qualifying mark is written
  (``cache_creation_input_tokens``); nothing marked, nothing cached.
- Gemini, Vertex: implicit, like OpenAI's, reported as ``usageMetadata.cachedContentTokenCount``.

A prefix enters the cache when the request that wrote it is answered (after its reply's
``delay``), not when it arrives: requests in flight together all miss, as they do at the
providers. Entries are kept per protocol and model, and expire ``ttl_s`` after they were last
written or read (Anthropic's default 5 minutes; OpenAI's 5 to 10 of inactivity). Thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metered", "PromptCacheEmulator"]

_AUTOMATIC = ("openai", "azure", "gemini", "vertex")


@dataclass(frozen=True)
class Metered:
    """What one request read from and wrote to the cache, and the entries it adds once answered."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0
    entries: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Block:
    """A piece of the prompt in order: ``key`` (a role, a tool list) is part of its identity,
    ``text`` also counts as tokens."""

    key: str
    text: str = ""
    marked: bool = False

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass
class PromptCacheEmulator:
    """``minimum`` words before anything is cached; ``step``: the automatic caches' increment;
    ``ttl_s``: how long an entry lives unused."""

    minimum: int = 1024
    step: int = 128
    ttl_s: float = 300.0
    _entries: dict[str, float] = field(default_factory=dict)  # entry -> when last written or read
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def meter(self, protocol: str, model: str, body: Any) -> Metered:
        """What a request with ``body`` reads and writes now (nothing for other protocols)."""
        if not isinstance(body, dict):
            return Metered()
        scope = f"{protocol}\x00{model}\x00"
        if protocol == "anthropic":
            return self._marked(scope, list(_anthropic_blocks(body)))
        if protocol in _AUTOMATIC:
            blocks = _gemini_blocks(body) if protocol in ("gemini", "vertex") else _openai_blocks(body)
            return self._automatic(scope, list(blocks))
        return Metered()

    def commit(self, metered: Metered) -> None:
        """The request was answered: the prefixes it wrote can be read from now on."""
        now = time.monotonic()
        with self._lock:
            self._entries.update(dict.fromkeys(metered.entries, now))

    def _known(self, entry: str) -> bool:
        """Whether ``entry`` is cached and alive; a hit refreshes its life."""
        now = time.monotonic()
        with self._lock:
            seen = self._entries.get(entry)
            if seen is None or now - seen > self.ttl_s:
                self._entries.pop(entry, None)
                return False
            self._entries[entry] = now
            return True

    def _automatic(self, scope: str, blocks: list[_Block]) -> Metered:
        digest = hashlib.sha256(scope.encode())
        entries: list[str] = []
        seen, cached, hit = 0, 0, True
        for block in blocks:
            digest.update(b"\x1e" + block.key.encode() + b"\x1f")
            for word in block.text.split():
                digest.update(word.encode() + b" ")
                seen += 1
                if seen >= self.minimum and (seen - self.minimum) % self.step == 0:
                    entry = digest.hexdigest()
                    entries.append(entry)
                    hit = hit and self._known(entry)
                    cached = seen if hit else cached
        return Metered(cached_tokens=cached, entries=tuple(entries))

    def _marked(self, scope: str, blocks: list[_Block]) -> Metered:
        digest = hashlib.sha256(scope.encode())
        seen, read, last = 0, 0, 0
        entries: list[str] = []
        for block in blocks:
            digest.update(block.key.encode() + b"\x1f" + block.text.encode() + b"\x1e")
            seen += block.words
            if block.marked and seen >= self.minimum:
                entry = digest.hexdigest()
                entries.append(entry)
                last = seen
                read = seen if self._known(entry) else read
        return Metered(cached_tokens=read, cache_write_tokens=last - read, entries=tuple(entries))


def _tools_block(body: dict[str, Any], marked: bool = False) -> Iterator[_Block]:
    """The tools' schemas: part of the prefix's identity (the server's usage does not count them)."""
    tools = body.get("tools")
    if tools:
        yield _Block("tools:" + json.dumps(tools, sort_keys=True), "", marked)


def _parts(content: Any) -> Iterator[tuple[str, bool]]:
    """A content's text pieces, each with whether it carries a ``cache_control`` mark."""
    if isinstance(content, str):
        yield content, False
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                yield str(part.get("text", "")), part.get("cache_control") is not None


def _openai_blocks(body: dict[str, Any]) -> Iterator[_Block]:
    yield from _tools_block(body)
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            text = " ".join(t for t, _ in _parts(message.get("content")))
            yield _Block(str(message.get("role")), text)


def _anthropic_blocks(body: dict[str, Any]) -> Iterator[_Block]:
    tools = body.get("tools") or []
    yield from _tools_block(body, any(isinstance(t, dict) and t.get("cache_control") for t in tools))
    for text, marked in _parts(body.get("system")):
        yield _Block("system", text, marked)
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            for text, marked in _parts(message.get("content")):
                yield _Block(str(message.get("role")), text, marked)


def _gemini_blocks(body: dict[str, Any]) -> Iterator[_Block]:
    yield from _tools_block(body)
    system = body.get("system_instruction") or body.get("systemInstruction") or {}
    items = [("system", system), *[(str(c.get("role")), c) for c in body.get("contents") or ()]]
    for role, item in items:
        if isinstance(item, dict):
            text = " ".join(str(p.get("text", "")) for p in item.get("parts") or () if isinstance(p, dict))
            yield _Block(role, text)
