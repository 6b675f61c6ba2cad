"""The response cache: an in-memory LRU in front of an SQLite file or Redis, as a provider wrapper.

Key: the SHA-256 of the canonical request — route (provider), model, endpoint (``api_base``),
messages, every generation parameter, the namespace, and the sample index for sampled calls.
Never the credentials, never the timeout (neither changes the answer). Sync and async calls share
entries because both go through ``CachingProvider.acomplete``.

Values are ``Completion.to_dict()`` as JSON, never pickle: a cache file from an untrusted source
cannot run code. The SQLite file is in WAL mode with a busy timeout, so several processes may read
and write it at once; each process holds its own connection and its own memory level. With a
``redis://`` path the persistent level is a ``client.shared.RedisStore`` instead: the same keys and
values, shared by every process on that Redis; if Redis cannot be reached (at the start or mid-run)
the cache logs one warning and goes on with its memory level alone, never raising to the caller.

A hit returns the original content, usage and cost with ``cached=True``, ``attempts=0`` and the
lookup time as ``latency_s``: nothing was sent, and the budget counts it as zero new spend.

Thread-safety: every public method may be called from any thread or event loop; SQLite work is
done inline under a lock (a lookup is well under a millisecond, cheaper than a thread hop).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from promptlift.client.config import CacheConfig
from promptlift.client.shared import RedisStore, is_redis_url
from promptlift.errors import ClientClosed, ConfigError, SharedStateUnavailable
from promptlift.jsonout import dumps
from promptlift.log import get_logger
from promptlift.paths import make_parent
from promptlift.providers.base import Provider, closing, whole
from promptlift.providers.credentials import CREDENTIAL_HEADERS, CREDENTIAL_PARAMS
from promptlift.secrets import Secret
from promptlift.types import Completion, CompletionRequest, StreamEvent

log = get_logger("cache")

T = TypeVar("T")

_HEADER_PARAMS = ("extra_headers", "headers")

_CLOSED = "the response cache was closed with its client (Client.close()): make a new Client to use it"


def route_of(model: str) -> str:
    """``openai/gpt-4o`` → ``openai``; a bare name is routed to openai by LiteLLM."""
    return model.split("/", 1)[0] if "/" in model else "openai"


def canonical_request(
    request: CompletionRequest,
    *,
    api_base: str | None = None,
    namespace: str = "default",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The request as canonical JSON: what the cache key hashes. Credentials never enter it.

    ``api_base`` is the endpoint used when the request does not name one; ``extra`` holds
    provider parameters (e.g. ``api_version``): the credential parameters (``CREDENTIAL_PARAMS``),
    credential headers and any ``Secret`` value are dropped, every other parameter keys the answer.
    """
    safe_extra = _without_credentials(extra or {})
    body: dict[str, Any] = {
        "v": 1,
        "namespace": namespace,
        "provider": route_of(request.model),
        "model": request.model,
        "api_base": (request.api_base or api_base or "").rstrip("/"),
        "messages": [m.to_dict() for m in request.messages],
        "params": request.generation_params(),
        "extra": safe_extra,
    }
    if request.is_sampled:
        body["sample"] = request.sample
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _without_credentials(extra: Mapping[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for name, value in sorted(extra.items()):
        if name in CREDENTIAL_PARAMS or isinstance(value, Secret):
            continue
        if name in _HEADER_PARAMS and isinstance(value, Mapping):
            value = {
                h: v
                for h, v in value.items()
                if str(h).lower() not in CREDENTIAL_HEADERS and not isinstance(v, Secret)
            }
        safe[name] = _drop_secrets(value)
    return safe


def _drop_secrets(value: Any) -> Any:
    """``value`` with every ``Secret`` inside it (dicts and lists, at any depth) left out."""
    if isinstance(value, Mapping):
        return {k: _drop_secrets(v) for k, v in value.items() if not isinstance(v, Secret)}
    if isinstance(value, (list, tuple)):
        return [_drop_secrets(v) for v in value if not isinstance(v, Secret)]
    return value


def cache_key(request: CompletionRequest, **kwargs: Any) -> str:
    return hashlib.sha256(canonical_request(request, **kwargs).encode()).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    memory_hits: int
    entries: int  # in the SQLite file (all namespaces), or in memory when there is no file
    bytes: int  # JSON bytes stored

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "memory_hits": self.memory_hits,
            "hit_rate": self.hit_rate,
            "entries": self.entries,
            "bytes": self.bytes,
        }


class MemoryLRU:
    """A bounded LRU of JSON strings with per-entry expiry. Thread-safe."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> str | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[1] is not None and item[1] <= now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key: str, value: str, expires: float | None) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def bytes(self) -> int:
        with self._lock:
            return sum(len(v) for v, _ in self._data.values())


def retry_locked(step: Callable[[], T], wait_s: float, on_wait: Callable[[], None] | None = None) -> T:
    """``step()``, repeated after a short pause while it fails with "database is locked", for up to
    ``wait_s`` seconds; ``on_wait`` is called before the first pause. ``step`` must be safe to repeat
    (one whole transaction, or idempotent statements)."""
    deadline = time.monotonic() + wait_s
    delay = 0.005
    waited = False
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def open_sqlite(path: str, schema: str = "", *, wait_s: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit, usable from any thread (callers serialize it).

    Switching a new file to WAL and creating tables ignore the busy timeout when another process
    is doing the same at the same moment ("database is locked" at once), so those first steps
    are retried for up to ``wait_s`` seconds.
    """
    try:
        conn = sqlite3.connect(path, timeout=wait_s, check_same_thread=False, isolation_level=None)
    except sqlite3.OperationalError as exc:  # a folder this process may not write in, a dangling path
        raise ConfigError(f"{path} cannot be opened ({exc}); name a file in a writable folder") from None

    def setup() -> None:
        conn.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if schema:
            conn.executescript(schema)

    try:
        retry_locked(setup, wait_s)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "unable to open" in str(exc) or "readonly" in str(exc):
            raise ConfigError(f"{path} cannot be opened ({exc}); name a file in a writable folder") from None
        if "not a database" not in str(exc):
            raise
        raise ConfigError(f"{path} is not an SQLite file; name a new file or an SQLite one") from None
    except BaseException:
        conn.close()
        raise
    return conn


# An ordinary rowid table. A WITHOUT ROWID table keeps whole rows in its primary-key B-tree, where a
# row over ~1,000 bytes (a quarter of a 4 KiB page) keeps ~490 bytes and spills the rest into an
# overflow page of its own: 10,000 answers of 1,000 characters took 45.7 MiB there, 20.6 MiB here
# (BENCHMARKS.md, issue 4).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    last_used REAL NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX IF NOT EXISTS responses_last_used ON responses (last_used);
"""

# The table of files written before 2026-11-30 (same columns, WITHOUT ROWID); migrated on open.
_OLD_TABLE = "entries"
_COLUMNS = "namespace, key, value, created, expires, last_used"

# Old rows are moved this many per transaction (~0.7 MB of 1 KB answers), so the migration never holds
# the write lock for more than milliseconds, however large the file: a running process's insert and
# another opener wait one batch, not the whole copy.
_MIGRATION_BATCH = 500
# An opener that still finds the write lock taken after its busy timeout keeps trying this long before
# it gives up (a VACUUM of a large file, or a promptlift of c8a7ce4 copying one in one transaction).
_MIGRATION_WAIT_S = 600.0
# VACUUM after a migration waits at most this long for the write lock, then is skipped.
_VACUUM_WAIT_S = 1.0

# One batch: the first rows of the old table in key order, then the same rows deleted, in one
# transaction, so each row is moved exactly once. Of a row in both tables the later ``created`` wins:
# an older promptlift that recreated ``entries`` after a migration may have written the newer answer.
_COPY_BATCH = f"""
INSERT INTO responses ({_COLUMNS})
SELECT {_COLUMNS} FROM {_OLD_TABLE} WHERE true ORDER BY namespace, key LIMIT :n
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    created = excluded.created,
    expires = excluded.expires,
    last_used = max(responses.last_used, excluded.last_used)
WHERE excluded.created > responses.created
"""
_DELETE_BATCH = f"""
DELETE FROM {_OLD_TABLE} WHERE (namespace, key) IN
(SELECT namespace, key FROM {_OLD_TABLE} ORDER BY namespace, key LIMIT :n)
"""

# A hit refreshes ``last_used`` (for LRU eviction) at most this often: a write per hit would cost more
# than the hit itself.
_TOUCH_INTERVAL_S = 60.0


class SQLiteStore:
    """The persistent level: one SQLite file in WAL mode, shared safely by several processes.

    Eviction: when an insert finds more than ``max_entries`` rows, the least recently used tenth
    (at least the overflow) is deleted in the same transaction. Expired rows are never returned
    and are deleted by ``purge_expired`` and eviction.

    A file in the old format (table ``entries``) is migrated on open, every row kept, and then
    compacted; ``migrated`` is how many rows this store moved (0 when there was nothing to do; when
    several processes open the same old file at once, they share the rows between them).
    ``wait_s`` is the busy timeout: how long a statement waits for another connection's write lock.
    """

    def __init__(self, path: str, *, max_entries: int = 1_000_000, wait_s: float = 30.0):
        self.path = path
        self.max_entries = max_entries
        self.wait_s = wait_s
        make_parent(path, "cache")
        self._lock = threading.Lock()
        self._conn = open_sqlite(path, _SCHEMA, wait_s=wait_s)
        try:
            self.migrated = self._migrate()
        except BaseException:
            self._conn.close()
            raise
        self._approx_count = self._count()

    def _has_old_table(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (_OLD_TABLE,)
        ).fetchone()
        return row is not None

    def _migrate(self) -> int:
        """Moves the old table's rows into ``responses`` batch by batch, then drops it and compacts.

        Several processes may open the same old file at once: each takes batches until the old
        table is gone, and the store whose batch emptied it drops it and runs ``_compact``. The
        constructor returns only when the migration is finished, by whichever stores did it.
        """
        if not self._has_old_table():
            return 0

        def waiting() -> None:
            log.info("cache %s: another connection holds the write lock; waiting to migrate", self.path)

        moved = 0
        while True:
            started = time.monotonic()
            batch = retry_locked(self._move_batch, _MIGRATION_WAIT_S, waiting)
            if batch is None:  # another store finished the migration
                return moved
            moved += batch
            if batch < _MIGRATION_BATCH:  # this store's batch emptied the old table and dropped it
                break
            # Leave the lock free about half the time, so writers and openers waiting in their busy
            # handler get in between batches (a process writing every 10 ms during a 20,000-row
            # migration: at most 0.13-0.15 s per write, 1.5x the writes of back-to-back batches).
            time.sleep(min(time.monotonic() - started, 0.05))
        log.info("cache %s: moved %d entries to the new table format", self.path, moved)
        self._compact()
        return moved

    def _move_batch(self) -> int | None:
        """One transaction: up to ``_MIGRATION_BATCH`` rows moved (the table dropped when that
        empties it); how many rows, or None when the old table is already gone."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            moved = None
            if self._has_old_table():  # again, under the write lock
                self._conn.execute(_COPY_BATCH, {"n": _MIGRATION_BATCH})
                moved = self._conn.execute(_DELETE_BATCH, {"n": _MIGRATION_BATCH}).rowcount
                if moved < _MIGRATION_BATCH:
                    self._conn.execute(f"DROP TABLE {_OLD_TABLE}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return moved

    def _compact(self) -> None:
        """VACUUM once after a migration: the old table's pages were freed, not given back.

        Other processes go on reading meanwhile (WAL); their writes wait for it, ~0.3 s per 100 MiB
        of file measured here, well inside their 30 s busy timeout. If another connection is
        writing, or the disk lacks the room VACUUM needs, it is skipped with an INFO line: the free
        pages are then reused by later inserts instead.
        """
        before = self.file_bytes()
        self._conn.execute(f"PRAGMA busy_timeout={int(_VACUUM_WAIT_S * 1000)}")
        try:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file shrinks at the checkpoint
        except sqlite3.OperationalError as exc:
            log.info("cache %s: not compacted after the migration (%s)", self.path, exc)
            return
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={int(self.wait_s * 1000)}")
        log.info("cache %s: compacted from %d to %d bytes", self.path, before, self.file_bytes())

    def file_bytes(self) -> int:
        """The file's size on disk with its write-ahead log."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def _count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def get(self, namespace: str, key: str, now: float) -> tuple[str, float | None] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value, expires, last_used FROM responses WHERE namespace=? AND key=?",
                (namespace, key),
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                return None
            if now - row[2] > _TOUCH_INTERVAL_S:
                self._conn.execute(
                    "UPDATE responses SET last_used=? WHERE namespace=? AND key=?", (now, namespace, key)
                )
            return str(row[0]), row[1]

    def put(self, namespace: str, key: str, value: str, now: float, expires: float | None) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (namespace, key, value, created, expires, last_used)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (namespace, key, value, now, expires, now),
            )
            self._approx_count += 1
            if self._approx_count > self.max_entries:
                self._evict(now)

    def _evict(self, now: float) -> None:
        """Called under the lock. Other processes insert too, so count for real first."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("DELETE FROM responses WHERE expires IS NOT NULL AND expires <= ?", (now,))
            count = self._count()
            overflow = count - self.max_entries
            if overflow > 0:
                drop = max(overflow, self.max_entries // 10)
                self._conn.execute(
                    "DELETE FROM responses WHERE rowid IN "
                    "(SELECT rowid FROM responses ORDER BY last_used LIMIT ?)",
                    (drop,),
                )
                count -= drop
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._approx_count = count

    def purge_expired(self, now: float | None = None) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM responses WHERE expires IS NOT NULL AND expires <= ?", (now or time.time(),)
            )
            self._approx_count = self._count()
            return cur.rowcount

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                cur = self._conn.execute("DELETE FROM responses")
            else:
                cur = self._conn.execute("DELETE FROM responses WHERE namespace=?", (namespace,))
            self._approx_count = self._count()
            return cur.rowcount

    def summary(self) -> dict[str, Any]:
        """Entries and JSON bytes per namespace, and the file's size on disk."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT namespace, COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM responses"
                " GROUP BY namespace"
            ).fetchall()
        namespaces = {str(ns): {"entries": int(n), "bytes": int(b)} for ns, n, b in rows}
        return {
            "path": self.path,
            "entries": sum(v["entries"] for v in namespaces.values()),
            "bytes": sum(v["bytes"] for v in namespaces.values()),
            "file_bytes": self.file_bytes(),
            "namespaces": namespaces,
        }

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Store(Protocol):
    """The persistent level: ``SQLiteStore`` or ``client.shared.RedisStore``."""

    path: str

    def get(self, namespace: str, key: str, now: float) -> tuple[str, float | None] | None: ...
    def put(self, namespace: str, key: str, value: str, now: float, expires: float | None) -> None: ...
    def clear(self, namespace: str | None = None) -> int: ...
    def summary(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def open_store(config: CacheConfig) -> Store | None:
    """The persistent level ``config.path`` names: None, a Redis URL, or an SQLite file."""
    if not config.path:
        return None
    if is_redis_url(config.path):
        return RedisStore(config.path, prefix=config.key_prefix)
    return SQLiteStore(config.path, max_entries=config.max_entries)


class ResponseCache:
    """Two levels: memory LRU, then SQLite or Redis (when ``config.path`` is set). Thread-safe.

    A Redis that cannot be reached is dropped for the rest of this cache's life, with one WARNING:
    the answers already in memory stay hits, new ones are kept in memory.
    """

    def __init__(self, config: CacheConfig):
        self.config = config
        self.memory = MemoryLRU(config.memory_entries)
        self.store: Store | None = open_store(config)
        self._counts = {"hits": 0, "misses": 0, "memory_hits": 0}
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def _open(self) -> Iterator[None]:
        """Refuse use after ``close()`` with one typed error, not sqlite3's ProgrammingError."""
        if self._closed:
            raise ClientClosed(_CLOSED)
        try:
            yield
        except sqlite3.ProgrammingError:
            if self._closed:  # closed by another thread while this call was using the file
                raise ClientClosed(_CLOSED) from None
            raise

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _shared(self, step: Callable[[Store], T], default: T) -> T:
        """``step(store)``; ``default`` when there is no store, or the Redis store just went away
        (then it is dropped, with one warning, and the memory level carries on alone)."""
        store = self.store
        if store is None:
            return default
        try:
            return step(store)
        except SharedStateUnavailable as exc:
            with self._lock:
                lost, self.store = self.store is store, None
            if lost:
                log.warning("response cache: %s; going on with the in-memory cache only", exc)
                with contextlib.suppress(Exception):
                    store.close()
            return default

    def get(self, key: str) -> Completion | None:
        now = time.time()
        with self._open():
            value = self.memory.get(key, now)
            if value is not None:
                self._count("memory_hits")
            else:
                found = self._shared(lambda store: store.get(self.config.namespace, key, now), None)
                if found is not None:
                    value = found[0]
                    self.memory.put(key, value, found[1])
        if value is None:
            self._count("misses")
            return None
        self._count("hits")
        return Completion.from_dict(json.loads(value))

    def put(self, key: str, completion: Completion) -> None:
        now = time.time()
        expires = now + self.config.ttl_s if self.config.ttl_s is not None else None
        value = dumps(completion.replace(cached=False).to_dict(), separators=(",", ":"))
        with self._open():
            self.memory.put(key, value, expires)
            self._shared(lambda store: store.put(self.config.namespace, key, value, now, expires), None)

    # -- identical calls in flight in several processes (a Redis store only) -------------------------
    def claim(self, key: str, owner: str, lease_s: float) -> bool | None:
        """Claim ``key``'s call for this process: True to send it, False when another process is
        sending it (wait for its answer), None when no shared store can say (send it)."""
        if not isinstance(self.store, RedisStore):
            return None
        namespace = self.config.namespace
        return self._shared(lambda store: _redis(store).claim(namespace, key, owner, lease_s), None)

    def renew(self, key: str, owner: str, lease_s: float) -> None:
        namespace = self.config.namespace
        self._shared(lambda store: _redis(store).renew(namespace, key, owner, lease_s), False)

    def release(self, key: str, owner: str) -> None:
        namespace = self.config.namespace
        self._shared(lambda store: _redis(store).release(namespace, key, owner), None)

    def peek(self, key: str) -> tuple[Completion | None, bool]:
        """Another process's answer to ``key`` if it is in the store now (a hit, kept in memory
        too), and whether that process still holds the key's claim."""
        namespace = self.config.namespace
        gone: tuple[str | None, float | None, bool] = (None, None, False)  # Redis went away: send
        value, ttl, claimed = self._shared(lambda store: _redis(store).peek(namespace, key), gone)
        if value is None:
            return None, claimed
        self.memory.put(key, value, None if ttl is None else time.time() + ttl)
        self._count("hits")
        return Completion.from_dict(json.loads(value)), claimed

    def stats(self) -> CacheStats:
        with self._lock:
            counts = dict(self._counts)
        with self._open():
            summary = self._shared(lambda store: store.summary(), None)
            if summary is not None:
                entries, size = int(summary["entries"]), int(summary["bytes"])
            else:
                entries, size = len(self.memory), self.memory.bytes()
        return CacheStats(counts["hits"], counts["misses"], counts["memory_hits"], entries, size)

    def clear(self, *, all_namespaces: bool = False) -> int:
        """Drop this namespace's entries (or every namespace's); returns how many rows went."""
        with self._open():
            self.memory.clear()
            namespace = None if all_namespaces else self.config.namespace
            return self._shared(lambda store: store.clear(namespace), 0)

    def close(self) -> None:
        """Idempotent; afterwards every method raises ``ClientClosed``."""
        self._closed = True
        store = self.store
        if store is not None:
            store.close()


def _as_hit(completion: Completion, started: float) -> Completion:
    """``completion`` as served without a call: cached, no attempt, the wait since ``started``."""
    return completion.replace(cached=True, attempts=0, latency_s=time.perf_counter() - started)


def _redis(store: Store) -> RedisStore:
    assert isinstance(store, RedisStore)  # claim() let only a Redis store through
    return store


class CachingProvider(Provider):
    """Serves a request from the cache when it can; stores every successful answer.

    Sampled requests bypass the cache unless ``config.sampled`` is set. Errors are never cached.
    Identical requests in flight at once (in one process, on one event loop) are sent once: the
    others wait for that answer and get it as a cache hit, or its error; if the call they wait
    on is cancelled, the next one in line sends its own.

    With a Redis store the same holds across processes: the first to claim the key (a lease in
    Redis, renewed while its call runs) sends; the others poll the store until its answer is there
    (a hit) or its claim is gone — it failed, was cancelled, or its process died and the lease ran
    out — and then one of them sends. An error is not shared across processes (errors are never
    stored): each waiting process claims again and sends its own.
    """

    name = "cache"
    FLIGHT_LEASE_S = 30.0  # a killed process's claim holds others back this long at most
    FLIGHT_POLL_S = (0.01, 0.25)  # waiting on another process: first and longest poll interval

    def __init__(
        self,
        inner: Provider,
        cache: ResponseCache,
        *,
        api_base: str | None = None,
        extra: Mapping[str, Any] | None = None,
        route_extra: Mapping[str, Mapping[str, Any]] | None = None,
        model_settings: Mapping[str, tuple[str | None, Mapping[str, Any]]] | None = None,
    ):
        self.inner = inner
        self.cache = cache
        self.api_base = api_base
        self.extra = dict(extra or {})
        # A chain model's own (api_base, extra): where its calls go keys its answers.
        self.model_settings = dict(model_settings or {})
        # Settings that reach one route only (Vertex's project and region): they key that route's
        # answers and leave every other route's keys alone.
        self.route_extra = {route: dict(values) for route, values in (route_extra or {}).items()}
        self._in_flight: dict[tuple[int, str], asyncio.Future[Completion]] = {}

    def key(self, request: CompletionRequest) -> str | None:
        """The cache key for ``request``, or None when this request must not use the cache."""
        if request.is_sampled and not self.cache.config.sampled:
            return None
        own_base, own_extra = self.model_settings.get(request.model, (None, {}))
        extra = {**self.extra, **own_extra, **self.route_extra.get(route_of(request.model), {})}
        api_base = own_base or self.api_base
        return cache_key(request, api_base=api_base, namespace=self.cache.config.namespace, extra=extra)

    def lookup(self, request: CompletionRequest) -> Completion | None:
        """A cached answer for ``request`` marked as a hit, or None. Never calls the provider."""
        key = self.key(request)
        if key is None:
            return None
        started = time.perf_counter()
        hit = self.cache.get(key)
        if hit is None:
            return None
        return _as_hit(hit, started)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        hit = self.lookup(request)
        if hit is not None:
            return hit
        key = self.key(request)
        if key is None:
            return await self.inner.acomplete(request)
        slot = (id(asyncio.get_running_loop()), key)  # a future belongs to its loop
        while (leader := self._in_flight.get(slot)) is not None:
            started = time.perf_counter()
            try:
                shared = await asyncio.shield(leader)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not leader.cancelled() or (current is not None and current.cancelling()):
                    raise  # this call was cancelled, not the one it waited on
                continue  # the one it waited on was cancelled: the next in line sends
            return _as_hit(shared, started)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = future
        try:
            completion = await self._send_once(request, key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" noise when nobody waited
            raise
        finally:
            self._in_flight.pop(slot, None)
        future.set_result(completion)
        return completion

    async def _send_once(self, request: CompletionRequest, key: str) -> Completion:
        """Send ``request`` and store its answer, unless another process is sending it (then its
        answer, as a hit). The claim is released only after the answer is stored, so a process
        that sees the claim gone and no answer knows the call failed."""
        owner = f"{os.getpid()}:{os.urandom(8).hex()}"
        started = time.perf_counter()
        delay, longest = self.FLIGHT_POLL_S
        while (claimed := self.cache.claim(key, owner, self.FLIGHT_LEASE_S)) is not None:
            # Claimed or not, look first: the answer may have been stored by the process whose
            # claim just ended (it releases only after storing).
            other, still = self.cache.peek(key)
            if other is not None:
                if claimed:
                    self.cache.release(key, owner)
                return _as_hit(other, started)
            if claimed:
                break
            while still:  # another process is sending it: wait for its answer or for its claim to end
                await asyncio.sleep(delay)
                delay = min(longest, delay * 1.5)
                other, still = self.cache.peek(key)
                if other is not None:
                    return _as_hit(other, started)
        if not claimed:  # no shared store, or it went away: this process alone
            completion = await self.inner.acomplete(request)
            self._store(request, completion)
            return completion
        renewing = asyncio.create_task(self._renew(key, owner))
        try:
            completion = await self.inner.acomplete(request)
            self._store(request, completion)
            return completion
        finally:
            renewing.cancel()
            self.cache.release(key, owner)

    async def _renew(self, key: str, owner: str) -> None:
        while True:
            await asyncio.sleep(self.FLIGHT_LEASE_S / 3)
            self.cache.renew(key, owner, self.FLIGHT_LEASE_S)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """A hit comes whole (its text as one delta, then the completion, ``cached``); a stream that
        finished is stored as ``acomplete`` stores an answer, and one that failed is not."""
        hit = self.lookup(request)
        if hit is not None:
            for event in whole(hit):
                yield event
            return
        async with closing(self.inner.astream(request)) as stream:
            async for event in stream:
                if isinstance(event, Completion):
                    self._store(request, event)
                yield event

    def _store(self, request: CompletionRequest, completion: Completion) -> None:
        key = self.key(request)
        # An answer cut short by a budget's ceiling is not the answer to the request as keyed (which
        # has no max_tokens): it is returned, not stored.
        cut_by_budget = (
            request.max_tokens is None
            and request.output_cap is not None
            and completion.finish_reason == "length"
        )
        if key is not None and not cut_by_budget:
            self.cache.put(key, completion)

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.cache.close()


def default_cache_path() -> str:
    """``$PROMPTLIFT_CACHE``, else ``$XDG_CACHE_HOME/promptlift/cache.sqlite`` (``~/.cache/...``)."""
    explicit = os.environ.get("PROMPTLIFT_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "promptlift", "cache.sqlite")
