"""The response cache: keys, two levels, TTL, namespaces, eviction, stats, and the wrapper."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Completion, CompletionRequest, Message, Usage
from promptlift.client import cache as cache_module
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
    for (value,) in conn.execute("SELECT value FROM responses"):
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


# -- the file format -----------------------------------------------------------------------------

WriteOld = Callable[[str, Sequence[tuple[str, str, str, float, float | None, float]]], None]


def _tables(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {str(name) for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def test_an_old_format_file_is_migrated_on_open_and_keeps_every_row(
    tmp_path: Path, write_old_cache: WriteOld
) -> None:
    path = str(tmp_path / "old.sqlite")
    now = time.time()
    old = [
        ("default", "k1", json.dumps(answer("paid for", cost=0.5).to_dict()), now - 7200, None, now - 3600),
        ("default", "k2", json.dumps(answer("with a ttl").to_dict()), now - 60, now + 3600, now - 60),
        ("default", "gone", json.dumps(answer("expired").to_dict()), now - 7200, now - 1, now - 7200),
        ("other", "k1", json.dumps(answer("other namespace").to_dict()), now, None, now),
    ]
    write_old_cache(path, old)
    store = SQLiteStore(path)
    assert store.migrated == 4
    store.close()
    assert "entries" not in _tables(path) and "entries_last_used" not in _tables(path)
    conn = sqlite3.connect(path)
    assert set(
        conn.execute("SELECT namespace, key, value, created, expires, last_used FROM responses")
    ) == set(old)
    conn.close()

    cache = ResponseCache(CacheConfig(path=path, memory_entries=0))
    assert cache.store is not None and cache.store.migrated == 0  # done once
    hit = cache.get("k1")
    assert hit is not None and (hit.content, hit.cost_usd, hit.usage) == ("paid for", 0.5, Usage(10, 5))
    ttl = cache.get("k2")
    assert ttl is not None and ttl.content == "with a ttl"
    assert cache.get("gone") is None  # copied, but still expired
    assert cache.stats().entries == 4
    other = ResponseCache(CacheConfig(path=path, namespace="other"))
    got = other.get("k1")
    assert got is not None and got.content == "other namespace"
    assert other.store is not None and other.store.purge_expired() == 1
    for c in (cache, other):
        c.close()


def test_a_store_that_loses_the_migration_race_finds_it_done(
    tmp_path: Path, write_old_cache: WriteOld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores both see the old table before either holds the write lock: the second re-checks."""
    path = str(tmp_path / "old.sqlite")
    old = [("default", f"k{i}", json.dumps({"i": i}), float(i), None, float(i)) for i in range(50)]
    write_old_cache(path, old)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.executescript(cache_module._SCHEMA)  # both tables: what a concurrent opener leaves behind
    holder.execute("BEGIN IMMEDIATE")  # holds both stores at their BEGIN IMMEDIATE
    looks: list[bool] = []
    looked = threading.Semaphore(0)
    original = SQLiteStore._has_old_table

    def spy(self: SQLiteStore) -> bool:
        found = original(self)
        looks.append(found)
        looked.release()
        return found

    monkeypatch.setattr(SQLiteStore, "_has_old_table", spy)
    stores: list[SQLiteStore] = []
    threads = [threading.Thread(target=lambda: stores.append(SQLiteStore(path))) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(2):
        assert looked.acquire(timeout=30)
    assert looks == [True, True]  # both found the old table outside the transaction
    holder.execute("ROLLBACK")
    holder.close()
    for t in threads:
        t.join(timeout=60)
    assert sorted(s.migrated for s in stores) == [0, 50]
    assert looks[2:] == [True, False]  # under the lock: the first copies, the second finds it done
    for store in stores:
        store.close()
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT namespace, key, value, created, expires, last_used FROM responses ORDER BY created"
    )
    assert rows.fetchall() == old
    conn.close()


def test_the_file_is_far_smaller_than_in_the_old_without_rowid_format(
    tmp_path: Path, write_old_cache: WriteOld
) -> None:
    """2,000 values of 1,000 characters: the old format spilled each row into an overflow page."""
    rows = [
        (
            "default",
            hashlib.sha256(str(i).encode()).hexdigest(),
            f"{i:06d}" + "x" * 994,
            float(i),
            None,
            float(i),
        )
        for i in range(2000)
    ]
    new_path, old_path = str(tmp_path / "new.sqlite"), str(tmp_path / "old.sqlite")
    store = SQLiteStore(new_path)
    for namespace, key, value, created, expires, _ in rows:
        store.put(namespace, key, value, now=created, expires=expires)
    store.close()  # checkpoints the WAL into the file
    write_old_cache(old_path, rows)

    def size(path: str) -> int:
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))

    payload = sum(len(r[1]) + len(r[2]) for r in rows)
    assert size(new_path) < 0.6 * size(old_path)
    assert size(new_path) < 2 * payload  # ~1.4x here (the rows plus two indexes); the old one ~4.5x


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _rows(path: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT namespace, key, value, created, expires, last_used FROM responses ORDER BY created"
        ).fetchall()
    finally:
        conn.close()


class _Seen(logging.Handler):
    """Sets an event when the cache logs a message containing ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_an_opener_outlasts_a_write_lock_held_past_its_busy_timeout(
    tmp_path: Path,
    write_old_cache: WriteOld,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The migration retries its transactions when the lock outlasts the busy timeout (a VACUUM, or a
    promptlift of c8a7ce4 migrating a big file in one transaction): the store opens, none lost."""
    path = str(tmp_path / "old.sqlite")
    old = [("default", f"k{i}", json.dumps({"i": i}), float(i), None, float(i)) for i in range(23)]
    write_old_cache(path, old)
    monkeypatch.setattr(cache_module, "_MIGRATION_BATCH", 5)  # several batches
    holder = sqlite3.connect(path, isolation_level=None)
    holder.executescript(cache_module._SCHEMA)
    holder.execute("BEGIN IMMEDIATE")
    caplog.set_level(logging.INFO, logger="promptlift.cache")
    seen = _Seen("waiting to migrate")
    logging.getLogger("promptlift.cache").addHandler(seen)
    stores: list[SQLiteStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            stores.append(SQLiteStore(path, wait_s=0.05))
        except BaseException as exc:
            errors.append(exc)

    opener = threading.Thread(target=open_store)
    try:
        opener.start()
        assert seen.event.wait(timeout=30)  # its BEGIN IMMEDIATE timed out at least once...
        assert opener.is_alive() and not errors  # ...and it is still trying
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        opener.join(timeout=60)
        logging.getLogger("promptlift.cache").removeHandler(seen)
    assert not errors and len(stores) == 1 and stores[0].migrated == 23
    stores[0].close()
    assert _rows(path) == old and "entries" not in _tables(path)


def test_of_a_row_in_both_tables_the_later_created_is_kept(tmp_path: Path, write_old_cache: WriteOld) -> None:
    """An older promptlift still using a migrated file recreates ``entries`` and writes there; the next
    migration keeps, of two rows with one key, the one written last, and every other row."""
    path = str(tmp_path / "mixed.sqlite")
    write_old_cache(
        path, [("default", "a", "a-day-1", 1.0, None, 1.0), ("default", "b", "b-day-1", 1.0, None, 5.0)]
    )
    SQLiteStore(path).close()  # migrated: both rows now in ``responses``
    store = SQLiteStore(path)
    store.put("default", "c", "c-day-3-new", now=3.0, expires=None)  # a newer process answers c first
    store.close()
    write_old_cache(  # the old process restarts with an empty ``entries`` and answers again
        path,
        [
            ("default", "a", "a-day-2-old", 2.0, 2.0 + 3600, 2.0),  # newer than the migrated row
            ("default", "b", "b-day-0-old", 0.5, None, 0.5),  # older (clock skew): not kept
            ("default", "c", "c-day-2-old", 2.0, None, 2.0),  # older than the newer process's row
            ("default", "d", "d-day-2-old", 2.0, None, 2.0),
        ],
    )
    store = SQLiteStore(path)
    assert store.migrated == 4
    store.close()
    assert _rows(path) == [
        ("default", "b", "b-day-1", 1.0, None, 5.0),
        ("default", "a", "a-day-2-old", 2.0, 2.0 + 3600, 2.0),
        ("default", "d", "d-day-2-old", 2.0, None, 2.0),
        ("default", "c", "c-day-3-new", 3.0, None, 3.0),
    ]


def test_a_migrated_file_is_compacted_unless_another_connection_is_writing(
    tmp_path: Path,
    write_old_cache: WriteOld,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The old table's pages are freed by the migration; VACUUM gives them back to the file system.
    When another connection holds the write lock at that moment, the store skips it and opens."""
    rows = [("default", f"{i:064d}", f"{i:06d}" + "x" * 994, float(i), None, float(i)) for i in range(2000)]
    skipped, compacted = str(tmp_path / "skipped.sqlite"), str(tmp_path / "compacted.sqlite")
    for path in (skipped, compacted):
        write_old_cache(path, rows)
    old_size = _file_size(skipped)
    monkeypatch.setattr(cache_module, "_VACUUM_WAIT_S", 0.01)
    real_compact = SQLiteStore._compact

    def compact_while_another_writes(self: SQLiteStore) -> None:
        other = sqlite3.connect(self.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            real_compact(self)
        finally:
            other.execute("ROLLBACK")
            other.close()

    caplog.set_level(logging.INFO, logger="promptlift.cache")
    with monkeypatch.context() as m:
        m.setattr(SQLiteStore, "_compact", compact_while_another_writes)
        store = SQLiteStore(skipped)
    store.close()
    assert "not compacted after the migration (database is locked)" in caplog.text
    store = SQLiteStore(compacted)
    store.close()
    assert "compacted from" in caplog.text
    assert _rows(skipped) == _rows(compacted) == list(rows)
    # Measured: 9.1 MiB old, 9.8 MiB migrated (later batches reuse the pages earlier ones freed; one
    # transaction gave 1.31x the old size), 2.8 MiB compacted.
    assert _file_size(compacted) < 0.4 * _file_size(skipped) and _file_size(skipped) < 1.2 * old_size


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


def test_vertex_settings_key_vertex_answers_only() -> None:
    """Vertex's project and region reach the vertex_ai routes only: they key those routes' answers
    and leave every other route's keys (and so their cached answers) as they were."""
    from promptlift.client.config import VertexConfig
    from promptlift.client.stack import build_stack

    def key_of(model: str, vertex: VertexConfig | None) -> str:
        config = ClientConfig(models=(model,), cache=CacheConfig(), vertex=vertex)
        _, parts = build_stack(config, FunctionProvider(lambda r: "ok"))
        cache = parts["cache"]
        assert isinstance(cache, cache_module.CachingProvider)
        key = cache.key(CompletionRequest(model=model, messages=(Message("user", "hi"),), temperature=0))
        assert key is not None
        return key

    here, there = VertexConfig(project="p1", location="europe-west4"), VertexConfig(project="p2")
    assert key_of("openai/gpt-4o-mini", None) == key_of("openai/gpt-4o-mini", here)
    assert key_of("vertex_ai/gemini-2.5-flash", here) != key_of("vertex_ai/gemini-2.5-flash", there)
    assert key_of("vertex_ai/gemini-2.5-flash", None) == key_of("vertex_ai/gemini-2.5-flash", VertexConfig())
