"""A budget shared through a real Redis: three processes never cross one cap together (counted at
the loopback server); Redis lost → nothing sent (a typed error), or local limits when configured."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from promptlift import Budget, BudgetExceeded, Client, ClientConfig, Secret
from promptlift.cli import main
from promptlift.client.budget import Reservation
from promptlift.client.config import CacheConfig
from promptlift.client.shared_budget import SharedLedger
from promptlift.errors import ConfigError, SharedStateUnavailable
from promptlift.pricing import ModelPrice
from promptlift.testing.redis_server import RedisServer
from promptlift.testing.server import LoopbackServer

KEY = Secret("sk-test-shared-budget-000000")

CHILD = textwrap.dedent(
    """
    import sys
    from promptlift import Budget, Client, ClientConfig, Secret

    redis_url, base, who = sys.argv[1:4]
    config = ClientConfig(
        models=("openai/x",), api_base=base, api_key=Secret("sk-test-shared-budget-000000"),
        budget=Budget(max_calls=10, shared=redis_url), transport="native", concurrency=4,
    )
    with Client(config) as client:
        results = client.batch([client.request(f"{who} {i}", temperature=0) for i in range(8)])
    print(sum(not isinstance(r, Exception) for r in results), flush=True)
    """
)


def test_three_processes_never_cross_one_shared_budget(redis_server: RedisServer) -> None:
    with LoopbackServer() as srv:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, redis_server.url, srv.openai_base, who],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who in ("a", "b", "c")
        ]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        sent = len(srv.requests)
    answered = 0
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        answered += int(out)
    assert sent == answered == 10  # 24 asked for, the shared cap of 10 held across the three


def client_for(srv: LoopbackServer, budget: Budget, **kwargs: object) -> Client:
    config = ClientConfig(
        models=("openai/x",),
        api_base=srv.openai_base,
        api_key=KEY,
        budget=budget,
        prices={"openai/x": ModelPrice(1000.0, 1000.0)},  # $0.001 a token
        transport="native",
        **kwargs,  # type: ignore[arg-type]
    )
    return Client(config)


def test_holds_in_one_ledger_count_in_another_with_a_local_ledgers_message(redis_server: RedisServer) -> None:
    budget = Budget(max_cost_usd=1.0, max_tokens=1000, shared=redis_server.url)
    a, b = SharedLedger(budget, "team"), SharedLedger(budget, "team")
    held = Reservation(cost_usd=0.6, tokens=100)
    a.reserve(held)  # in flight in "another process"
    with pytest.raises(BudgetExceeded) as refused:
        b.reserve(held)
    assert str(refused.value) == (
        "team budget: this call could cost up to $0.600000; $0.600000 spent or reserved of $1.000000"
    )
    assert (refused.value.limit, refused.value.spent, refused.value.cap) == ("cost_usd", 0.6, 1.0)
    a.release(held, cost_usd=0.1, tokens=40)  # the answer was cheaper than its worst case
    b.reserve(held)
    snap = b.snapshot()
    assert (snap.spent_usd, snap.spent_tokens, snap.calls, snap.reserved_usd, snap.in_flight) == (
        pytest.approx(0.1),
        40,
        1,
        pytest.approx(0.6),
        1,
    )
    assert snap.refused == 1
    other = SharedLedger(Budget(max_cost_usd=1.0, shared=redis_server.url, key_prefix="elsewhere:"), "team")
    other.reserve(Reservation(cost_usd=0.9, tokens=1))  # another prefix: another budget


def test_redis_killed_fails_closed_yet_serves_what_is_cached(redis_server: RedisServer) -> None:
    budget = Budget(max_calls=100, shared=redis_server.url)
    with LoopbackServer() as srv, client_for(srv, budget, cache=CacheConfig()) as client:
        first = client.complete("paid for", temperature=0)
        redis_server.stop()
        assert client.complete("paid for", temperature=0).content == first.content  # a hit: free
        with pytest.raises(SharedStateUnavailable, match="unreachable") as refused:
            client.complete("new", temperature=0)
        assert len(srv.requests) == 1
    assert "\n" not in str(refused.value)


def test_redis_lost_degrades_to_the_last_totals_when_configured(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="promptlift.shared")
    budget = Budget(max_calls=3, shared=redis_server.url, on_unreachable="local")
    with LoopbackServer() as srv, client_for(srv, budget) as client:
        client.complete("one", temperature=0)
        client.complete("two", temperature=0)
        redis_server.stop()
        client.complete("three", temperature=0)  # the third of 3, counted locally from Redis's two
        with pytest.raises(BudgetExceeded, match="3 of 3 calls"):
            client.complete("four", temperature=0)
        assert len(srv.requests) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "this process's own ledger" in warnings[0].getMessage()


def test_a_shared_budget_must_name_redis() -> None:
    with pytest.raises(ConfigError, match="Budget: shared must be a redis:// URL"):
        Budget(max_calls=1, shared="memcached://x")


def test_cli_batch_max_cost_is_shared_through_redis(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY.reveal())
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"prompt": "q{i}"}}\n' for i in range(3)), encoding="utf-8")
    argv = ["batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--model", "openai/x"]
    argv += ["--no-cache", "--max-cost", "5", "--input-price", "1", "--output-price", "1"]
    with LoopbackServer() as srv:
        assert main([*argv, "--api-base", srv.openai_base, "--shared-limits", redis_server.url]) == 0
        assert len(srv.requests) == 3
    totals = redis.Redis.from_url(redis_server.url, decode_responses=True).hgetall("promptlift:budget:client")
    assert totals["calls"] == "3" and totals["in_flight"] == "0" and 0 < float(totals["spent_usd"]) < 5


HOLDER = textwrap.dedent(
    """
    import sys, time
    from promptlift import Budget
    from promptlift.client import shared_budget
    from promptlift.client.budget import Reservation
    from promptlift.client.shared_budget import SharedLedger

    shared_budget.LEASE_S = float(sys.argv[2])
    ledger = SharedLedger(Budget(max_cost_usd=1.0, shared=sys.argv[1]), "team")
    held = Reservation(cost_usd=0.6, tokens=100)
    ledger.reserve(held)  # a call in flight
    print("held", flush=True)
    sys.stdin.readline()  # killed here, or told to finish
    ledger.release(held, cost_usd=0.05, tokens=10)
    print("released", flush=True)
    """
)


def holder(url: str, lease_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(lease_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read() if proc.stderr else line
    return proc


def test_a_killed_process_gives_its_holds_back_once_its_lease_runs_out(redis_server: RedisServer) -> None:
    lease = 1.0
    proc = holder(redis_server.url, lease)
    ledger = SharedLedger(Budget(max_cost_usd=1.0, shared=redis_server.url), "team")
    again = Reservation(cost_usd=0.6, tokens=100)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(again)  # the other process's hold counts
    proc.kill()  # kill -9 in the middle of its call: it never releases
    proc.communicate(timeout=10)
    deadline = time.monotonic() + lease + 10
    while True:
        try:
            ledger.reserve(again)
            break
        except BudgetExceeded:
            assert time.monotonic() < deadline, "the killed process's hold was never taken back"
            time.sleep(0.1)
    snap = ledger.snapshot()
    assert snap.reserved_usd == pytest.approx(0.6) and snap.in_flight == 1  # only this one's hold
    assert snap.spent_usd == 0 and snap.calls == 0
    ledger.release(again, sent=False)
    ledger.link.close()


def test_a_live_process_keeps_its_holds_past_the_lease_by_its_heartbeat(redis_server: RedisServer) -> None:
    lease = 0.6
    proc = holder(redis_server.url, lease)
    ledger = SharedLedger(Budget(max_cost_usd=1.0, shared=redis_server.url), "team")
    try:
        time.sleep(lease * 3)  # a long call: the heartbeat renews its lease meanwhile
        with pytest.raises(BudgetExceeded):
            ledger.reserve(Reservation(cost_usd=0.6, tokens=100))
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.strip() == "released", err
    held = Reservation(cost_usd=0.6, tokens=100)
    ledger.reserve(held)  # released: room again
    snap = ledger.snapshot()
    assert snap.spent_usd == pytest.approx(0.05) and snap.calls == 1 and snap.in_flight == 1
    ledger.release(held, sent=False)
    ledger.link.close()
