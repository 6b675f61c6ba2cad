"""The response cache: keys, two levels, TTL, namespaces, eviction, stats, and the wrapper."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Completion, CompletionRequest, Message, Usage
from promptlift.client.cache import MemoryLRU, ResponseCache, SQLiteStore, cache_key, canonical_request
from promptlift.client.config import CacheConfig
from promptlift.testing import FunctionProvider, ScriptedProvider


def req(text: str = "hi", **kw: object) -> CompletionRequest:
    kw.setdefault("temperature", 0.0)
    return CompletionRequest(model="openai/m", messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


def answer(content: str = "A", cost: float = 0.25) -> Completion:
    return Completion(content, "openai/m", "openai", Usage(10, 5), cost_usd=cost, latency_s=0.5)


# -- keys --------------------------------------------------------------------------------------


def test_key_changes_with_every_part_of_the_request() -> None:
    base = cache_key(req())
    variants = [
        cache_key(req("other")),
        cache_key(req(max_tokens=5)),
        cache_key(req(top_p=0.5)),
        cache_key(req(stop=("\n",))),
        cache_key(req(seed=1)),
        cache_key(req(temperature=0.1, seed=3)),
        cache_key(req(response_format={"type": "json_object"})),
        cache_key(req(api_base="http://a")),
        cache_key(req(), api_base="http://b"),
        cache_key(req(), namespace="other"),
        cache_key(req().replace(model="anthropic/m")),
        cache_key(req(), extra={"api_version": "2024-01"}),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_key_ignores_timeout_and_credentials() -> None:
    assert cache_key(req(timeout=5)) == cache_key(req(timeout=500))
    plain = canonical_request(req(), extra={"api_version": "v1"})
    with_key = canonical_request(req(), extra={"api_version": "v1", "api_key": "sk-canary-123456789"})
    assert plain == with_key
    assert "canary" not in with_key


def test_sample_index_only_matters_for_sampled_requests() -> None:
    assert cache_key(req(sample=0)) == cache_key(req(sample=1))  # deterministic: one answer
    sampled = req(temperature=0.9)
    assert cache_key(sampled) != cache_key(sampled.replace(sample=1))


# -- levels --------------------------------------------------------------------------------------


def test_memory_lru_evicts_least_recently_used_and_expires() -> None:
    lru = MemoryLRU(2)
    lru.put("a", "1", None)
    lru.put("b", "2", None)
    assert lru.get("a", 0) == "1"  # a is now the most recent
    lru.put("c", "3", None)
    assert lru.get("b", 0) is None
    assert lru.get("a", 0) == "1"
    lru.put("d", "4", expires=10.0)
    assert lru.get("d", 9.0) == "4"
    assert lru.get("d", 10.0) is None


def test_sqlite_store_is_wal_json_and_caps_entries(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    store = SQLiteStore(path, max_entries=10)
    for i in range(25):
        store.put("ns", f"k{i}", json.dumps({"i": i}), now=float(i), expires=None)
    summary = store.summary()
    assert summary["entries"] <= 10
    assert store.get("ns", "k24", now=100.0) is not None  # the newest survive
    assert store.get("ns", "k0", now=100.0) is None  # the oldest went
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for (value,) in conn.execute("SELECT value FROM entries"):
        json.loads(value)  # JSON, not pickle
    conn.close()


def test_ttl_namespaces_clear_and_stats(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    a = ResponseCache(CacheConfig(path=path, namespace="a"))
    b = ResponseCache(CacheConfig(path=path, namespace="b", memory_entries=0))
    a.put("k", answer("from a"))
    assert b.get("k") is None  # same key, other namespace
    b.put("k", answer("from b"))
    got = a.get("k")
    assert got is not None and got.content == "from a"
    stats = a.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 0, 2)
    assert a.clear() == 1
    assert ResponseCache(CacheConfig(path=path, namespace="a")).get("k") is None
    fresh_b = b.get("k")
    assert fresh_b is not None and fresh_b.content == "from b"
    expired = ResponseCache(CacheConfig(path=path, namespace="t", ttl_s=-1.0))
    expired.put("k", answer())
    assert expired.get("k") is None
    for cache in (a, b, expired):
        cache.close()


# -- the wrapper, through a client ---------------------------------------------------------------


def test_hit_returns_original_usage_and_cost_marked_cached(tmp_path: Path) -> None:
    provider = ScriptedProvider([answer("first", cost=0.25)])
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=str(tmp_path / "c.sqlite")))
    with Client(config, provider=provider) as client:
        one = client.complete("hi", temperature=0)
        two = client.complete("hi", temperature=0)
    assert provider.calls == 1
    assert not one.cached and two.cached
    assert (two.content, two.usage, two.cost_usd, two.attempts) == ("first", Usage(10, 5), 0.25, 0)


def test_sync_and_async_share_entries_and_a_new_client_reads_the_file(tmp_path: Path) -> None:
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=str(tmp_path / "c.sqlite")))
    provider = FunctionProvider(lambda r: "x")
    with Client(config, provider=provider) as client:
        asyncio.run(client.acomplete("hi", temperature=0))
        assert client.complete("hi", temperature=0).cached
    with Client(config, provider=provider) as again:
        assert again.complete("hi", temperature=0).cached
    assert len(provider.requests) == 1


def test_sampled_calls_bypass_the_cache_unless_asked(tmp_path: Path) -> None:
    provider = FunctionProvider(lambda r: f"sample {len(provider.requests)}")
    path = str(tmp_path / "c.sqlite")
    with Client(ClientConfig(models=("openai/m",), cache=CacheConfig(path=path)), provider=provider) as c:
        assert not c.complete("hi", temperature=0.8).cached
        assert not c.complete("hi", temperature=0.8).cached
    assert len(provider.requests) == 2
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=path, sampled=True))
    with Client(config, provider=provider) as c:
        s0 = [c.complete("hi", temperature=0.8, sample=i).content for i in range(3)]
        s1 = [c.complete("hi", temperature=0.8, sample=i) for i in range(3)]
    assert len(set(s0)) == 3  # n samples stay n distinct samples
    assert [x.content for x in s1] == s0 and all(x.cached for x in s1)


def test_errors_are_not_cached(tmp_path: Path) -> None:
    from promptlift.errors import BadRequest

    provider = ScriptedProvider([BadRequest("no"), "fine"])
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=str(tmp_path / "c.sqlite")))
    with Client(config, provider=provider) as client:
        with pytest.raises(BadRequest):
            client.complete("hi", temperature=0)
        assert client.complete("hi", temperature=0).content == "fine"
        assert client.complete("hi", temperature=0).cached
    assert provider.calls == 2
