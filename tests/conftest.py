"""Shared fixtures. Append new fixtures below; do not rewrite others'."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from promptlift.testing.redis_server import RedisServer
from promptlift.testing.server import LoopbackServer


# -- issue 3: the loopback model server ------------------------------------------------------------
@pytest.fixture(scope="session")
def _loopback_session() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(_loopback_session: LoopbackServer) -> Iterator[LoopbackServer]:
    """One real HTTP server for the session, with its scripts and records cleared for each test."""
    _loopback_session.reset()
    yield _loopback_session
    _loopback_session.reset()


# -- issue 4 follow-up: response cache files in the format written before 2026-11-30 --------------
OLD_CACHE_DDL = """
CREATE TABLE entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    last_used REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX entries_last_used ON entries (last_used);
"""

# namespace, key, value, created, expires, last_used
OldRow = tuple[str, str, str, float, float | None, float]


@pytest.fixture
def write_old_cache() -> Callable[[str, Sequence[OldRow]], None]:
    """Writes a cache file with the old WITHOUT ROWID ``entries`` table (in WAL mode, as it was)."""

    def write(path: str, rows: Sequence[OldRow]) -> None:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(OLD_CACHE_DDL)
            conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.commit()
        finally:
            conn.close()

    return write


# -- warnings the provider gives once per process ----------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_parameter_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``providers.litellm`` warns once per model and kind of change for the whole process; each test
    starts with none given, so a test asserting a warning does not depend on which tests ran first."""
    from promptlift.providers import litellm as litellm_provider

    monkeypatch.setattr(litellm_provider, "_warned_params", set())


# -- isolation: no test reads or writes the user's response cache ----------------------------------
@pytest.fixture(autouse=True)
def _own_default_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """``promptlift batch`` without ``--cache`` uses ``~/.cache/promptlift``: a test that ran before
    (or the user's own runs) would answer this test's lines from it, and the test would see no request."""
    monkeypatch.setenv("PROMPTLIFT_CACHE", str(tmp_path_factory.mktemp("cache") / "cache.sqlite"))


# -- issue 18: a real redis-server on a free loopback port ------------------------------------------
@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """Debian's redis-server, started for one test (no persistence, a temp dir) and killed after.

    Missing binary: the test fails (``RedisServer.start`` raises); CI installs it (``.ci/run``)."""
    with RedisServer() as server:
        yield server
        # Clients the test dropped hold pooled Redis connections; collected while the server is still
        # up they close cleanly, instead of raising from Connection.__del__ in some later test.
        gc.collect()


# -- the examples run end to end: the CLI in a subprocess, its --json read back --------------------
@pytest.fixture
def promptlift_json() -> Callable[..., dict[str, Any]]:
    """``python -m promptlift ARGS`` in a subprocess with this environment; returns what it printed
    as JSON (pass ``--json``). A nonzero exit fails the test with the command's stderr."""

    def run(*args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-m", "promptlift", *args],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    return run


@pytest.fixture(autouse=True)
def _no_tracing_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's OTEL_EXPORTER_OTLP_ENDPOINT would turn tracing on in every client of every test
    (and each close() would wait on that collector): the tracing tests set their own."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
