"""Batches: order, one shared concurrency limit, and the 2,000-call reliability run over HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Completion, Secret
from promptlift.client.retry import RetryPolicy
from promptlift.errors import BadRequest
from promptlift.testing import FunctionProvider, GatedProvider
from promptlift.testing.server import (
    LoopbackServer,
    RecordedRequest,
    Reply,
    bad_request,
    drop_connection,
    ok,
    rate_limited,
    server_error,
    slow,
)


def test_results_in_input_order_and_failures_in_place() -> None:
    provider = FunctionProvider(
        lambda r: BadRequest("no") if r.messages[0].content == "3" else r.messages[0].content
    )
    with Client(ClientConfig(models=("openai/m",), concurrency=4), provider=provider) as client:
        results = client.batch([client.request(str(i)) for i in range(10)])
    assert [r.content if isinstance(r, Completion) else "err" for r in results] == [
        "0", "1", "2", "err", "4", "5", "6", "7", "8", "9"
    ]  # fmt: skip


def test_one_limit_for_sync_async_threads_and_nested_batches() -> None:
    provider = GatedProvider(lambda r: r.messages[0].content, delay=0.005)  # records the peak in flight
    client = Client(ClientConfig(models=("openai/m",), concurrency=4), provider=provider)

    async def nested() -> None:  # an evaluator running batches inside a batch of its own
        async def inner(k: int) -> None:
            await client.abatch([client.request(f"{k}-{i}") for i in range(10)])

        await asyncio.gather(*(inner(k) for k in range(5)))

    threads = [threading.Thread(target=lambda: client.batch([client.request(f"t{i}") for i in range(40)]))]
    threads.append(threading.Thread(target=lambda: asyncio.run(nested())))
    for t in threads:
        t.start()
    asyncio.run(nested())
    for t in threads:
        t.join()
    client.close()
    assert len(provider.requests) == 40 + 50 + 50
    assert provider.peak == 4


def _faults() -> tuple[Reply, ...]:
    return (
        rate_limited(retry_after=0.01),
        server_error(500),
        server_error(503),
        drop_connection(),
        slow(8.0),  # well past the 3 s timeout below
    )


@pytest.mark.slow
def test_2000_calls_with_30_percent_retryable_faults(tmp_path: Path) -> None:
    """Lines i % 10 in {0,1,2} fail their first attempt, lines i % 20 == 0 their second too, with
    429 (Retry-After), 500, 503, dropped connections and timeouts in turn. 20 more lines get a 400."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    faults = _faults()

    def handler(request: RecordedRequest) -> Reply | None:
        text = request.json["messages"][-1]["content"]
        with lock:
            attempt = seen[text]
            seen[text] += 1
        if text.startswith("bad"):
            return bad_request("never retried")
        i = int(text)
        if (attempt == 0 and i % 10 < 3) or (attempt == 1 and i % 20 == 0):
            return faults[(i // 10 + attempt) % len(faults)]
        return ok(f"answer {i}")

    with LoopbackServer() as srv:
        srv.handler = handler
        config = ClientConfig(
            models=("openai/x",),
            api_base=srv.openai_base,
            api_key=Secret("sk-test-reliability-0000"),
            # 3 s, not 1: with the machine's 2 cores saturated (load 8) an ok answer took 2.9-3.3 s
            # over loopback, and three real timeouts on top of two scripted faults ran out of attempts.
            timeout=3.0,
            concurrency=64,
            # The script needs at most 3 attempts per line; the 4th and 5th are headroom for a real
            # timeout when a loaded 2-core machine answers an ok request after 1 s.
            retry=RetryPolicy(max_attempts=5, initial_wait=0.001, max_wait=0.02),
        )
        with Client(config) as client:
            results = client.batch(
                [client.request(str(i), temperature=0) for i in range(2000)]
                + [client.request(f"bad {i}", temperature=0) for i in range(20)]
            )
            snap = client.metrics_snapshot()
        sent = len(srv.requests)
    assert len(results) == 2020
    good, bad = results[:2000], results[2000:]
    failed = [(i, r) for i, r in enumerate(good) if not isinstance(r, Completion)]
    assert not failed, failed[:3]
    wrong = [
        (i, r.content) for i, r in enumerate(good) if isinstance(r, Completion) and r.content != f"answer {i}"
    ]
    assert not wrong, wrong[:5]
    assert all(isinstance(r, BadRequest) for r in bad)
    expected_attempts = 2000 + 600 + 100
    attempts = sum(r.attempts for r in good if isinstance(r, Completion))
    # At least the injected faults were retried; a few more when a loaded 2-core machine answered an
    # ok request after the 3 s timeout (a real timeout, rightly retried).
    assert expected_attempts <= attempts <= expected_attempts + 100
    assert all(r.attempts <= 5 for r in good if isinstance(r, Completion))
    assert all(seen[f"bad {i}"] == 1 for i in range(20))  # a 400 is never retried
    assert max(seen.values()) <= 5  # within the retry bound
    assert attempts + 20 == snap.total.attempts
    # The server logs a request once its body is read; an attempt that failed to connect (the
    # loopback server's listen backlog overflowing under 64 connections) never reaches its log.
    assert expected_attempts + 20 <= sent <= attempts + 20, (sent, attempts)


def test_a_stopped_batch_sends_nothing_more_and_marks_the_rest_not_sent() -> None:
    provider = FunctionProvider(lambda r: "ok")
    seen: list[int] = []
    with Client(ClientConfig(models=("scripted/m",), concurrency=1), provider=provider) as client:
        requests = [client.request(f"item {i}") for i in range(6)]
        results = client.batch(requests, on_result=lambda i, r: seen.append(i), stop=lambda: len(seen) >= 3)
    assert len(provider.requests) == 3 and seen == [0, 1, 2]
    assert [type(r).__name__ for r in results] == ["Completion"] * 3 + ["NotSent"] * 3


def test_an_async_callback_holds_up_its_own_worker_only() -> None:
    """Two workers; the callback for item 0 waits until item 3 is answered, which the other worker
    can only do if the waiting callback does not block it."""
    provider = FunctionProvider(lambda r: "ok")
    answered: set[int] = set()

    async def scenario() -> list[int]:
        order: list[int] = []

        async def callback(i: int, result: object) -> None:
            answered.add(i)
            if i == 0:
                for _ in range(200):
                    if 3 in answered:
                        break
                    await asyncio.sleep(0.01)
            order.append(i)

        with Client(ClientConfig(models=("scripted/m",), concurrency=2), provider=provider) as client:
            await client.abatch([client.request(f"item {i}") for i in range(4)], on_result=callback)
        return order

    order = asyncio.run(scenario())
    assert order.index(3) < order.index(0)  # item 0's callback finished only after item 3's answer


def test_a_sync_call_from_a_batch_callback_is_refused_not_a_deadlock() -> None:
    """The sync batch's callbacks run on the client's loop thread: a sync call there would wait for
    that thread forever. It is refused with the fix; the batch still returns."""
    from promptlift.errors import UserError

    raised: list[BaseException] = []
    with Client(ClientConfig(models=("scripted/m",)), provider=FunctionProvider(lambda r: "ok")) as client:

        def callback(i: int, result: object) -> None:
            try:
                client.complete("nested")
            except UserError as exc:
                raised.append(exc)

        results = client.batch([client.request("a"), client.request("b")], on_result=callback)
    assert len(results) == 2 and len(raised) == 2 and "await acomplete" in str(raised[0])
