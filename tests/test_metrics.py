"""Metrics and the call log: counts equal what the server saw; secrets and contents kept out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from promptlift import Client, ClientConfig, Secret
from promptlift.client.config import CacheConfig, CallLogConfig
from promptlift.client.metrics import percentile
from promptlift.client.retry import RetryPolicy
from promptlift.errors import BadRequest
from promptlift.testing.server import LoopbackServer, bad_request, ok, rate_limited, server_error

CANARY = "sk-canary-metrics-0123456789abcdef"


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) == 0.0


def test_metrics_match_the_server_log_and_keep_secrets_out(tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        srv.script(
            rate_limited(retry_after=0.01), server_error(503), ok("fine", input_tokens=3, output_tokens=2)
        )
        srv.script(bad_request("no"))
        srv.set_default(ok("fine", input_tokens=3, output_tokens=2))
        config = ClientConfig(
            models=("openai/x",),
            api_base=srv.openai_base,
            api_key=Secret(CANARY),
            concurrency=1,
            retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.01),
            cache=CacheConfig(path=str(tmp_path / "cache.sqlite")),
            call_log=CallLogConfig(str(tmp_path / "calls.sqlite"), log_content=False),
        )
        with Client(config) as client:
            first = client.complete("one", temperature=0)  # 429, 503, then ok: 3 attempts
            bad = client.batch([client.request("two", temperature=0)])[0]  # the 400: final at once
            client.complete("one", temperature=0)  # a cache hit
            client.batch([client.request(f"n{i}", temperature=0) for i in range(5)])
            snap = client.metrics_snapshot()
        sent = len(srv.requests)
    assert first.attempts == 3 and isinstance(bad, BadRequest)
    t = snap.total
    assert sent == 3 + 1 + 5 == t.attempts
    assert (t.calls, t.ok, t.failed, t.cache_hits, t.retries) == (8, 7, 1, 1, 2)
    assert t.errors == {"BadRequest": 1}
    assert t.attempt_errors == {"RateLimited": 1, "ProviderUnavailable": 1, "BadRequest": 1}
    assert t.input_tokens == 6 * 3 and t.output_tokens == 6 * 2  # the cache hit adds no new tokens
    stats = snap.models["openai/x"]
    assert stats.calls == 8 and stats.latency_p50_s <= stats.latency_p99_s
    prom = snap.to_prometheus()
    assert 'promptlift_calls_total{provider="openai",model="openai/x"} 8' in prom
    assert 'promptlift_attempts_total{provider="openai",model="openai/x"} 9' in prom
    assert 'promptlift_errors_total{provider="openai",model="openai/x",type="BadRequest"} 1' in prom
    assert json.loads(snap.to_json())["total"]["calls"] == 8
    conn = sqlite3.connect(tmp_path / "calls.sqlite")
    rows = conn.execute(
        "SELECT ok, error_type, attempts, cached, messages, response FROM calls ORDER BY id"
    ).fetchall()
    conn.close()
    assert len(rows) == 8
    assert rows[0][:4] == (1, None, 3, 0) and rows[1][:2] == (0, "BadRequest") and rows[2][3] == 1
    assert all(r[4] is None and r[5] is None for r in rows)  # contents only when asked
    for text in (snap.to_json(), prom):
        assert CANARY not in text
    for f in tmp_path.iterdir():
        assert CANARY.encode() not in f.read_bytes(), f


def test_call_log_keeps_contents_when_asked(tmp_path: Path) -> None:
    from promptlift.testing import FunctionProvider

    config = ClientConfig(
        models=("openai/m",), call_log=CallLogConfig(str(tmp_path / "c.sqlite"), log_content=True)
    )
    with Client(config, provider=FunctionProvider(lambda r: "the answer")) as client:
        client.complete("the question")
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    messages, response = conn.execute("SELECT messages, response FROM calls").fetchone()
    conn.close()
    assert json.loads(messages) == [{"role": "user", "content": "the question"}] and response == "the answer"
