"""The cache with real parts: two processes on one SQLite file, and LiteLLM over HTTP."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Secret
from promptlift.client.config import CacheConfig
from promptlift.testing.server import LoopbackServer, ok

CANARY = "sk-canary-cache-0123456789abcdef"

WRITER = textwrap.dedent(
    """
    import sys
    from promptlift import Client, ClientConfig
    from promptlift.client.config import CacheConfig
    from promptlift.testing import FunctionProvider

    path, who = sys.argv[1], sys.argv[2]
    provider = FunctionProvider(lambda r: who + ":" + r.messages[0].content)
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=path, memory_entries=0))
    with Client(config, provider=provider) as client:
        for i in range(150):
            client.complete(f"{who}-{i}", temperature=0)   # this process's own keys
            client.complete(f"shared-{i}", temperature=0)  # keys both processes write
    print(len(provider.requests))
    """
)


def test_two_processes_share_one_cache_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, who], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for who in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert 150 <= int(out) <= 300  # own keys always sent; shared keys maybe served by the other
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 450
    conn.close()
    # A third process (this one) sees every answer both wrote, and calls nothing.
    from promptlift.testing import ScriptedProvider

    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=path))
    with Client(config, provider=ScriptedProvider([])) as client:
        a = client.complete("a-7", temperature=0)
        b = client.complete("b-149", temperature=0)
        shared = client.complete("shared-3", temperature=0)
    assert (a.content, b.content) == ("a:a-7", "b:b-149")
    assert shared.content in ("a:shared-3", "b:shared-3") and shared.cached


MIGRATOR = textwrap.dedent(
    """
    import os, sys, time
    from promptlift.client.cache import SQLiteStore

    path, ready, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):  # both processes open the old file at the same moment
        if time.monotonic() > deadline:
            sys.exit("no go")
        time.sleep(0.001)
    store = SQLiteStore(path)
    hits = sum(store.get("default", f"k{i}", now=time.time()) is not None for i in range(n))
    store.close()
    print(store.migrated, hits)
    """
)


def test_two_processes_opening_one_old_file_at_once_migrate_it_once(
    tmp_path: Path, write_old_cache: Callable[[str, Sequence[tuple[str, str, str, float, None, float]]], None]
) -> None:
    """Both start when a file appears, after both have signalled that they are waiting for it. The
    rows move in batches of 500, so the two usually share them; every row moves exactly once."""
    path = str(tmp_path / "old.sqlite")
    n = 2000
    old = [("default", f"k{i}", f'{{"content":"answer {i}"}}', float(i), None, float(i)) for i in range(n)]
    write_old_cache(path, old)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, path, str(flag), str(go), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    reports = [tuple(int(x) for x in out.split()) for out, _ in outputs]
    assert sum(moved for moved, _ in reports) == n  # every row moved once, by one or the other
    assert [hits for _, hits in reports] == [n, n]  # each opened only once the migration was done
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'entries'").fetchall() == []
    rows = conn.execute("SELECT namespace, key, value, created, expires FROM responses").fetchall()
    conn.close()
    # Every row exactly once, unchanged (``last_used`` aside: the hits above refreshed it).
    assert sorted(rows, key=lambda r: r[3]) == [r[:5] for r in old]


@pytest.fixture(scope="module")
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


def test_over_http_api_base_separates_entries_and_key_is_not_stored(
    srv: LoopbackServer, tmp_path: Path
) -> None:
    srv.reset()
    path = str(tmp_path / "c.sqlite")
    other = LoopbackServer().start()
    try:
        srv.set_default(ok("from one"))
        other.set_default(ok("from two"))
        cache = CacheConfig(path=path)
        one = ClientConfig(
            models=("openai/x",), api_base=srv.openai_base, api_key=Secret(CANARY), cache=cache
        )
        two = one.merged(api_base=other.openai_base)
        with Client(one) as c1, Client(two) as c2:
            first = c1.complete("hello", temperature=0)
            again = c1.complete("hello", temperature=0)
            elsewhere = c2.complete("hello", temperature=0)  # same model and messages, other server
        assert (first.content, again.content, elsewhere.content) == ("from one", "from one", "from two")
        assert (first.cached, again.cached, elsewhere.cached) == (False, True, False)
        assert len(srv.requests) == 1 and len(other.requests) == 1
        assert srv.requests[0].key == CANARY  # the key was used on the wire...
    finally:
        other.close()
    # ...and the same key under another value (a rotated key) still hits: credentials are not in the key.
    rotated = one.merged(api_key=Secret("sk-rotated-key-abcdefghijk"))
    with Client(rotated) as c3:
        assert c3.complete("hello", temperature=0).cached
    assert len(srv.requests) == 1
    for f in tmp_path.iterdir():
        assert CANARY.encode() not in f.read_bytes(), f
