"""Identical calls in flight in several processes sharing one Redis cache are sent once: the first
to claim the key sends, the others get its answer as a hit. A claimer that fails, or whose process
is killed, holds nobody back for longer than its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import redis

from promptlift import Client, ClientConfig
from promptlift.client.cache import CachingProvider
from promptlift.client.config import CacheConfig
from promptlift.testing.redis_server import RedisServer
from promptlift.testing.replies import bad_request, ok, slow
from promptlift.testing.server import LoopbackServer

KEY = "sk-single-flight-canary"

# A child: waits for "go" on stdin, sends one question, prints whether it was a hit and the answer.
CHILD = textwrap.dedent(
    """
    import sys
    from promptlift import Client, ClientConfig
    from promptlift.client.cache import CachingProvider
    from promptlift.client.config import CacheConfig
    from promptlift.client.retry import RetryPolicy

    redis_url, base, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    CachingProvider.FLIGHT_LEASE_S = lease
    config = ClientConfig(
        models=("openai/x",), api_base=base, api_key="sk-single-flight-canary", transport="native",
        cache=CacheConfig(path=redis_url), retry=RetryPolicy(max_attempts=1), timeout=60,
    )
    with Client(config) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            answer = client.complete("the same question", temperature=0)
            print("hit" if answer.cached else "sent", answer.content, flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, flush=True)
    """
)


def children(redis_url: str, base: str, n: int, lease: float = 30.0) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, base, str(lease)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return procs


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    try:
        return [proc.communicate(timeout=120)[0].strip() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_three_processes_asking_the_same_question_at_once_send_it_once(redis_server: RedisServer) -> None:
    with LoopbackServer() as srv:
        srv.set_default(slow(0.8, ok("the one answer")))  # long enough for all three to be waiting
        procs = children(redis_server.url, srv.openai_base, 3)
        for proc in procs:
            go(proc)
        lines = finish(procs)
        sent = len(srv.requests)
    assert sent == 1, lines
    assert sorted(line.split()[0] for line in lines) == ["hit", "hit", "sent"]
    assert all(line.endswith("the one answer") for line in lines)
    leftover = redis.Redis.from_url(redis_server.url, decode_responses=True).keys("promptlift:flight:*")
    assert leftover == []  # the claim is released once the answer is stored


def test_a_claimer_that_fails_lets_a_waiting_process_send_its_own(redis_server: RedisServer) -> None:
    with LoopbackServer() as srv:
        # The first request fails slowly (no retries), the next succeeds: the waiter must not take
        # the failure for an answer, nor wait for ever.
        srv.script(slow(0.8, bad_request("bad request, slowly")))
        srv.set_default(ok("second try"))
        first, second = children(redis_server.url, srv.openai_base, 2)
        go(first)
        deadline = time.monotonic() + 10
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        go(second)  # while the first one's call is in flight
        lines = finish([first, second])
        sent = len(srv.requests)
    assert lines[0].startswith("error"), lines
    assert lines[1] == "sent second try", lines
    assert sent == 2


def test_a_killed_claimer_holds_the_others_back_no_longer_than_its_lease(redis_server: RedisServer) -> None:
    lease = 1.5
    with LoopbackServer() as srv:
        srv.script(slow(30, ok("never read")))  # the first claimer hangs; it is killed mid-call
        srv.set_default(ok("after the lease"))
        first, second = children(redis_server.url, srv.openai_base, 2, lease=lease)
        go(first)
        deadline = time.monotonic() + 10
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)  # its claim stays in Redis until the lease runs out
        first.communicate(timeout=10)  # reaped, its pipes closed
        started = time.monotonic()
        go(second)
        (line,) = finish([second])
        waited = time.monotonic() - started
    assert line == "sent after the lease"
    assert waited < lease + 10  # not the 30 s hang: the lease ran out and the second one sent


def test_without_a_shared_store_a_process_sends_alone(redis_server: RedisServer) -> None:
    """A Redis that goes away between claims degrades to this process alone: the call is answered."""
    with LoopbackServer() as srv:
        config = ClientConfig(
            models=("openai/x",),
            api_base=srv.openai_base,
            api_key=KEY,
            transport="native",
            cache=CacheConfig(path=redis_server.url),
        )
        with Client(config) as client:
            assert not client.complete("one", temperature=0).cached
            redis_server.stop()
            assert client.complete("two", temperature=0).content
        assert len(srv.requests) == 2
    assert CachingProvider.FLIGHT_LEASE_S == 30.0  # the children's override never leaks here
