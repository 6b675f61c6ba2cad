"""The response cache in a real Redis: shared by clients and processes, TTL native, and carrying on
in memory (one warning, no error) when Redis is unreachable at the start or goes down mid-run."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from promptlift import Client, ClientConfig
from promptlift.cli import main
from promptlift.client.cache import SQLiteStore
from promptlift.client.config import CacheConfig
from promptlift.testing import FunctionProvider, ScriptedProvider
from promptlift.testing.redis_server import RedisServer, free_port


def echo() -> FunctionProvider:
    return FunctionProvider(lambda r: "answer to " + r.messages[0].content)


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "promptlift.cache" and r.levelno == logging.WARNING]


def test_an_answer_written_by_one_client_is_a_hit_in_another(redis_server: RedisServer) -> None:
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=redis_server.url))
    with Client(config, provider=echo()) as writer:
        first = writer.complete("hello", temperature=0)
    with Client(config, provider=ScriptedProvider([])) as reader:  # would fail if it sent anything
        hit = reader.complete("hello", temperature=0)
    assert hit.cached and not first.cached
    assert hit.content == first.content == "answer to hello"
    assert hit.usage == first.usage and hit.cost_usd == first.cost_usd


def test_keys_and_values_are_the_sqlite_caches_own(redis_server: RedisServer, tmp_path: Path) -> None:
    sqlite_path = str(tmp_path / "c.sqlite")
    for path in (redis_server.url, sqlite_path):
        config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=path, namespace="proj"))
        with Client(config, provider=echo()) as client:
            client.complete("same question", temperature=0)
    store = SQLiteStore(sqlite_path)
    conn = store._conn
    key, value = conn.execute("SELECT key, value FROM responses WHERE namespace='proj'").fetchone()
    store.close()
    names = redis_client(redis_server).keys("*")
    assert names == [f"promptlift:cache:proj:{key}"]
    assert redis_client(redis_server).get(names[0]) == value


def test_the_key_prefix_separates_two_teams(redis_server: RedisServer) -> None:
    def config(prefix: str) -> ClientConfig:
        return ClientConfig(models=("openai/m",), cache=CacheConfig(path=redis_server.url, key_prefix=prefix))

    with Client(config("team-a:"), provider=echo()) as a:
        a.complete("q", temperature=0)
    provider = echo()
    with Client(config("team-b:"), provider=provider) as b:
        assert not b.complete("q", temperature=0).cached
    assert len(provider.requests) == 1
    assert sorted(k.split(":")[0] for k in redis_client(redis_server).keys("*")) == ["team-a", "team-b"]


WRITER = textwrap.dedent(
    """
    import sys
    from promptlift import Client, ClientConfig
    from promptlift.client.config import CacheConfig
    from promptlift.testing import FunctionProvider

    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=sys.argv[1]))
    provider = FunctionProvider(lambda r: "from the child: " + r.messages[0].content)
    with Client(config, provider=provider) as client:
        for i in range(20):
            client.complete(f"q{i}", temperature=0)
    print(len(provider.requests))
    """
)


def test_an_answer_written_by_another_process_is_a_hit_here(redis_server: RedisServer) -> None:
    child = subprocess.run(
        [sys.executable, "-c", WRITER, redis_server.url], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "20"
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=redis_server.url))
    with Client(config, provider=ScriptedProvider([])) as client:
        answers = [client.complete(f"q{i}", temperature=0) for i in range(20)]
    assert all(a.cached for a in answers)
    assert answers[7].content == "from the child: q7"


def test_entries_expire_in_redis_after_ttl(redis_server: RedisServer) -> None:
    cache = CacheConfig(path=redis_server.url, ttl_s=0.5, memory_entries=0)
    config = ClientConfig(models=("openai/m",), cache=cache)
    with Client(config, provider=echo()) as client:
        client.complete("short-lived", temperature=0)
    (name,) = redis_client(redis_server).keys("*")
    assert 0 < redis_client(redis_server).pttl(name) <= 500  # native expiry, set with the value
    provider = echo()
    with Client(config, provider=provider) as client:
        assert client.complete("short-lived", temperature=0).cached
        time.sleep(0.6)
        assert not client.complete("short-lived", temperature=0).cached
    assert len(provider.requests) == 1
    assert redis_client(redis_server).exists(name) == 1  # written again, by the second answer


def test_redis_killed_mid_run_degrades_to_memory_with_one_warning(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="promptlift.cache")
    provider = echo()
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=redis_server.url))
    with Client(config, provider=provider) as client:
        before = [client.complete(f"q{i}", temperature=0) for i in range(5)]
        redis_server.stop()
        again = [client.complete(f"q{i}", temperature=0) for i in range(5)]  # still hits, from memory
        new = [client.complete(f"new{i}", temperature=0) for i in range(5)]  # answered, kept in memory
        new_again = [client.complete(f"new{i}", temperature=0) for i in range(5)]
        assert client.cache is not None
        stats = client.cache.stats()
    assert [a.content for a in again] == [b.content for b in before] and all(a.cached for a in again)
    assert all(not n.cached for n in new) and all(n.cached for n in new_again)
    assert len(provider.requests) == 10
    assert stats is not None and stats.entries == 10  # what memory holds, once Redis is gone
    (warning,) = cache_warnings(caplog)
    assert "unreachable" in warning.getMessage() and "in-memory cache only" in warning.getMessage()
    assert "\n" not in warning.getMessage()


def test_redis_unreachable_from_the_start_costs_one_warning_and_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="promptlift.cache")
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=url))
    provider = echo()
    with Client(config, provider=provider) as client:
        assert not client.complete("a", temperature=0).cached
        assert client.complete("a", temperature=0).cached
        client.complete("b", temperature=0)
    assert len(provider.requests) == 2
    (warning,) = cache_warnings(caplog)
    assert "hunter2-secret" not in caplog.text and ":***@127.0.0.1" in warning.getMessage()


def test_cli_cache_stats_and_clear_read_redis(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=redis_server.url, namespace="x"))
    with Client(config, provider=echo()) as client:
        for q in ("a", "bb", "ccc"):
            client.complete(q, temperature=0)
    assert main(["cache", "stats", "--cache", redis_server.url]) == 0
    out = capsys.readouterr().out
    assert '"entries": 3' in out and '"x"' in out
    assert main(["cache", "clear", "--cache", redis_server.url, "--namespace", "x"]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert redis_client(redis_server).keys("*") == []


def test_the_benchmark_runs_small(redis_server: RedisServer) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside src/
    from bench.redis_cache import measure

    result = measure(redis_server.url, 0, entries=5, passes=2)
    assert result["get"]["n"] == result["acomplete"]["n"] == 10
