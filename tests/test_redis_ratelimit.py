"""Rate limits shared through a real Redis: three processes hold one rpm limit in the loopback
server's timestamps; Redis lost → nothing sent (a typed error) or, when configured, local limits."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
import yaml

from promptlift import Client, ClientConfig, Secret
from promptlift.cli import main
from promptlift.client.config import RateLimit
from promptlift.client.ratelimit import RateLimitedProvider, SharedBucket
from promptlift.client.shared import RedisBucket, RedisLink, RedisStore
from promptlift.errors import ConfigError, SharedStateUnavailable
from promptlift.optimize.config import load_config
from promptlift.optimize.session import prepare
from promptlift.testing.redis_server import RedisServer
from promptlift.testing.server import LoopbackServer

KEY = Secret("sk-test-shared-limit-000000")
RATE, BURST = 10.0, 2  # 600 rpm, 0.2 s of burst
SLACK = 0.03  # seconds: the gap between a send and the server's arrival stamp may shrink by this much


def shared_limit(url: str, on_unreachable: str = "fail") -> RateLimit:
    return RateLimit(
        "openai/x", rpm=RATE * 60, burst_s=BURST / RATE, shared=url, on_unreachable=on_unreachable
    )


def assert_rate_held(times: list[float]) -> None:
    """No window of the arrivals holds more than the burst plus the rate times its length."""
    times = sorted(times)
    for i in range(len(times)):
        for j in range(i + BURST, len(times)):
            assert times[j] - times[i] >= (j - i - BURST) / RATE - SLACK, (i, j, times[j] - times[i])


def test_a_redis_bucket_takes_queues_and_slows_down_like_a_local_one(redis_server: RedisServer) -> None:
    bucket = RedisBucket(RedisLink(redis_server.url), "t:bucket", RATE, BURST)
    assert bucket.take(1) == 0.0 and bucket.take(1) == 0.0  # the burst
    third = bucket.take(1)
    assert 0.08 <= third <= 0.1  # one request at 10/s: the queue
    bucket.give_back(5)  # a refund fills the bucket up to its capacity, no further
    assert bucket.take(2) == 0.0
    bucket.slow_down(None)  # halved to 5/s, and emptied
    assert 0.18 <= bucket.take(1) <= 0.2
    bucket.slow_down(1.5)  # paused by Retry-After
    assert bucket.take(1) >= 1.5


CHILD = textwrap.dedent(
    """
    import sys
    from promptlift import Client, ClientConfig, Secret
    from promptlift.client.config import RateLimit

    redis_url, base, who, n = sys.argv[1:5]
    limit = RateLimit("openai/x", rpm=600, burst_s=0.2, shared=redis_url)
    config = ClientConfig(
        models=("openai/x",), api_base=base, api_key=Secret("sk-test-shared-limit-000000"),
        concurrency=16, rate_limits=(limit,), transport="native",
    )
    with Client(config) as client:
        client.complete("warm up " + who, temperature=0)  # imports done before the limit counts
        print("ready", flush=True)
        sys.stdin.readline()
        results = client.batch([client.request(f"{who} {i}", temperature=0) for i in range(int(n))])
    print(sum(isinstance(r, Exception) for r in results), flush=True)
    """
)


def test_three_processes_share_one_rpm_limit(redis_server: RedisServer) -> None:
    per_process = 8
    with LoopbackServer() as srv:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, redis_server.url, srv.openai_base, who, str(per_process)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who in ("a", "b", "c")
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
            time.sleep(BURST / RATE + 0.2)  # the shared bucket full again
            srv.reset()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outputs = [proc.communicate(timeout=120) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        times = [r.time for r in srv.requests]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "0", err  # no call failed
    total = 3 * per_process
    assert len(times) == total
    assert_rate_held(times)
    # Three local limits would have let all 24 through in ~0.7 s; the shared one takes 2.2 s.
    assert max(times) - min(times) >= (total - BURST) / RATE - SLACK


def client_for(srv: LoopbackServer, limit: RateLimit) -> Client:
    config = ClientConfig(
        models=("openai/x",), api_base=srv.openai_base, api_key=KEY, rate_limits=(limit,), transport="native"
    )
    return Client(config)


def test_redis_killed_mid_run_fails_closed_and_sends_nothing(redis_server: RedisServer) -> None:
    with LoopbackServer() as srv, client_for(srv, shared_limit(redis_server.url)) as client:
        assert client.complete("before", temperature=0).content
        redis_server.stop()
        with pytest.raises(SharedStateUnavailable) as refused:
            client.complete("after", temperature=0)
        assert len(srv.requests) == 1  # the second call never reached the wire
    message = str(refused.value)
    assert "\n" not in message and f"Redis at {redis_server.url}" in message and "unreachable" in message


def test_a_limit_that_failed_closed_opens_again_when_redis_is_back(redis_server: RedisServer) -> None:
    with LoopbackServer() as srv, client_for(srv, shared_limit(redis_server.url)) as client:
        redis_server.stop()
        with pytest.raises(SharedStateUnavailable):
            client.complete("while down", temperature=0)
        redis_server.start()
        assert client.complete("when back", temperature=0).content
        assert len(srv.requests) == 1


def test_redis_lost_degrades_to_local_limits_with_one_warning_when_configured(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="promptlift.shared")
    limit = shared_limit(redis_server.url, on_unreachable="local")
    with LoopbackServer() as srv, client_for(srv, limit) as client:
        client.complete("before", temperature=0)
        redis_server.stop()
        time.sleep(BURST / RATE + 0.1)
        srv.reset()
        results = client.batch([client.request(f"q{i}", temperature=0) for i in range(8)])
        times = [r.time for r in srv.requests]
    assert not any(isinstance(r, Exception) for r in results)
    assert len(times) == 8
    assert_rate_held(times)  # the local buckets hold the same limit
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using local limits instead" in warnings[0].getMessage()


def test_a_shared_limit_must_name_redis_and_a_known_failure_mode() -> None:
    with pytest.raises(ConfigError, match="shared must be a redis:// URL"):
        RateLimit("*", rpm=60, shared="http://:pw@example.com")
    with pytest.raises(ConfigError, match="on_unreachable must be one of fail, local"):
        RateLimit("*", rpm=60, shared="redis://127.0.0.1:6379/0", on_unreachable="ignore")


def test_yaml_names_a_redis_cache_and_a_shared_limit(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY.reveal())  # prepare checks the model's key before any call
    rows = "".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(4))
    (tmp_path / "d.jsonl").write_text(rows, encoding="utf-8")
    raw = {
        "model": "openai/x",
        "prompt": {"user": "{text}"},
        "dataset": {"path": "d.jsonl"},
        "metric": {"type": "exact_match", "field": "label"},
        "cache": redis_server.url,
        "rate_limits": [
            {"scope": "openai", "rpm": 600, "shared": redis_server.url, "on_unreachable": "local"}
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load_config(path)
    assert config.cache == redis_server.url
    (limit,) = config.rate_limits
    assert (limit.shared, limit.on_unreachable, limit.key_prefix) == (
        redis_server.url,
        "local",
        "promptlift:",
    )
    client = prepare(config).client
    try:
        assert client.cache is not None and isinstance(client.cache.store, RedisStore)
        limiter = client.parts["ratelimit"]
        assert isinstance(limiter, RateLimitedProvider)
        (bucket,) = limiter.limiter.limits[0].buckets()
        assert isinstance(bucket, SharedBucket) and bucket.degrade
    finally:
        client.close()
    raw["rate_limits"] = [{"scope": "openai", "rpm": 600, "shared": "localhost:6379"}]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml: rate_limits: RateLimit\('openai'\): shared must be"):
        load_config(path)


def test_cli_batch_shares_its_limit_and_cache_through_redis(
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY.reveal())
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"prompt": "q{i}"}}\n' for i in range(3)), encoding="utf-8")
    with LoopbackServer() as srv:
        argv = [
            "batch",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--model",
            "openai/x",
        ]
        argv += ["--api-base", srv.openai_base, "--cache", redis_server.url]
        assert main([*argv, "--rpm", "600", "--shared-limits", redis_server.url]) == 0
        assert len(srv.requests) == 3
        names = redis.Redis.from_url(redis_server.url, decode_responses=True).keys("*")
        assert "promptlift:ratelimit:*:rpm" in names
        assert sum(n.startswith("promptlift:cache:") for n in names) == 3
        redis_server.stop()
        (tmp_path / "out.jsonl").unlink()
        # Redis gone: the cache would degrade, but the shared limit refuses every line unsent.
        main([*argv, "--rpm", "600", "--shared-limits", redis_server.url])
        assert len(srv.requests) == 3
    out = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert out.count("SharedStateUnavailable") == 3, out
    capsys.readouterr()
    assert main([*argv, "--shared-limits", redis_server.url]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--shared-limits keeps --rpm, --tpm and --max-cost in Redis: give one of them too")
    )


def test_the_shared_rpm_benchmark_runs_small(redis_server: RedisServer) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside src/
    from bench.shared_rpm import measure, worst_window

    assert worst_window([0.0, 0.0, 0.0], rate=1.0, burst=2) == 1  # three at once over a burst of two
    assert worst_window([0.0, 0.0, 1.0], rate=1.0, burst=2) == 0
    with LoopbackServer() as srv:
        result = measure(srv, redis_server.url, 2, 6, rpm=600, burst_s=0.2)
    assert result["calls"] == 12 and result["over_limit_in_worst_window"] == 0
