"""Client.stream / astream through the whole stack, on the wire (LoopbackServer), for both
transports where the provider matters: the budget reserves before sending and settles on the final
usage, retries and fallback act only before the first event, the cache serves and stores streams,
metrics and the call log record one call each."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.client.config import Budget, CacheConfig, CallLogConfig, ModelPrice
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.testing.doubles import ScriptedProvider
from promptlift.testing.server import LoopbackServer, cut_stream, held_stream, metered, ok, server_error
from promptlift.types import Completion, StreamEvent, TextDelta

MODEL, BACKUP = "openai/stream-model", "openai/stream-backup"
PRICE = ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)
TRANSPORTS = pytest.mark.parametrize("transport", ["litellm", "native"])


def client_for(server: LoopbackServer, transport: str, **config: Any) -> Client:
    settings: dict[str, Any] = {
        "models": (MODEL,),
        "api_base": server.openai_base,
        "api_key": Secret("sk-stream-test-0000"),
        "transport": transport,
        "retry": RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.01),
        "fallback": FallbackPolicy(failure_threshold=0),
        "prices": {MODEL: PRICE, BACKUP: PRICE},
    }
    return Client(ClientConfig(**{**settings, **config}))


def texts(events: list[StreamEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def final(events: list[StreamEvent]) -> Completion:
    assert isinstance(events[-1], Completion)
    return events[-1]


def fails(client: Client, prompt: str = "Say hello.", **call: Any) -> tuple[list[StreamEvent], Exception]:
    events: list[StreamEvent] = []
    try:
        for event in client.stream(prompt, **call):
            events.append(event)
    except errors.PromptliftError as exc:
        return events, exc
    raise AssertionError(f"the stream did not fail: {events}")


@TRANSPORTS
def test_a_503_before_the_first_chunk_is_retried(transport: str) -> None:
    with LoopbackServer() as server, client_for(server, transport) as client:
        server.script(server_error(503), ok("Second time lucky."))
        events = list(client.stream("Say hello.", temperature=0))
        assert len(server.requests) == 2
    assert texts(events) == ["Second ", "time ", "lucky."]
    assert final(events).attempts == 2


@TRANSPORTS
def test_a_stream_dropped_mid_answer_is_never_sent_again(transport: str) -> None:
    with LoopbackServer() as server, client_for(server, transport) as client:
        server.script(cut_stream(3, ok("one two three four")), ok("a resent answer"))
        events, exc = fails(client, temperature=0)
        assert len(server.requests) == 1 and server.pending() == 1
    assert isinstance(exc, errors.ConnectionFailed) and exc.attempts == 1
    assert texts(events) and not any(isinstance(e, Completion) for e in events)


@TRANSPORTS
def test_the_budget_refuses_before_any_request(transport: str) -> None:
    with (
        LoopbackServer() as server,
        client_for(server, transport, budget=Budget(max_cost_usd=1e-9)) as client,
    ):
        events, exc = fails(client, max_tokens=100)
        assert server.requests == []
    assert isinstance(exc, errors.BudgetExceeded) and events == []
    assert client.budget is not None and client.budget.snapshot().refused == 1


@TRANSPORTS
def test_the_budget_settles_on_the_streamed_usage(transport: str) -> None:
    with LoopbackServer() as server, client_for(server, transport, budget=Budget(max_cost_usd=1.0)) as client:
        server.script(ok("Counted.", input_tokens=1000, output_tokens=500))
        out = final(list(client.stream("Say hello.", max_tokens=600)))
        snap = client.budget.snapshot() if client.budget else None
    assert snap is not None and out.usage.reported
    assert out.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert snap.spent_usd == pytest.approx(out.cost_usd) and snap.spent_tokens == 1500
    assert (snap.reserved_usd, snap.reserved_tokens, snap.in_flight, snap.calls) == (0.0, 0, 0, 1)


@TRANSPORTS
def test_a_stream_without_usage_or_cut_short_is_charged_its_worst_case(transport: str) -> None:
    budget = Budget(max_cost_usd=1.0)
    with (
        LoopbackServer() as server,
        client_for(server, transport, budget=budget, retry=RetryPolicy(1)) as client,
    ):
        server.script(metered(ok("No usage here."), report_usage=False), cut_stream(3))
        unreported = final(list(client.stream("Say hello.", max_tokens=200)))
        after_first = client.budget.snapshot() if client.budget else None
        fails(client, max_tokens=200)
        after_second = client.budget.snapshot() if client.budget else None
    assert after_first is not None and after_second is not None
    assert not unreported.usage.reported and unreported.usage.output_tokens == 200  # the worst case
    assert after_first.spent_usd == pytest.approx(unreported.cost_usd) and unreported.cost_usd > 0
    # the same request again: the same worst case, though the stream died after a few words
    assert after_second.spent_usd == pytest.approx(2 * unreported.cost_usd)
    assert (after_second.reserved_usd, after_second.in_flight, after_second.calls) == (0.0, 0, 2)


@TRANSPORTS
def test_a_cache_hit_streams_without_a_request_and_a_stream_is_stored(transport: str) -> None:
    with (
        LoopbackServer() as server,
        client_for(server, transport, cache=CacheConfig()) as client,
    ):
        server.script(ok("Stored for later."))
        first = list(client.stream("Say hello.", temperature=0))
        again = list(client.stream("Say hello.", temperature=0))
        whole = client.complete("Say hello.", temperature=0)
        assert len(server.requests) == 1
    assert len(texts(first)) == 3 and not final(first).cached
    assert texts(again) == ["Stored for later."] and len(again) == 2 and final(again).cached
    assert whole.cached and whole.content == "Stored for later."


def test_a_stream_cut_short_is_not_cached() -> None:
    with LoopbackServer() as server, client_for(server, "native", cache=CacheConfig()) as client:
        server.script(cut_stream(3), ok("The whole answer."))
        fails(client, temperature=0)
        out = final(list(client.stream("Say hello.", temperature=0)))
        assert len(server.requests) == 2
    assert out.content == "The whole answer." and not out.cached


@TRANSPORTS
def test_metrics_and_the_call_log_record_one_call_per_stream(transport: str, tmp_path) -> None:
    log = CallLogConfig(str(tmp_path / "calls.sqlite"))
    with LoopbackServer() as server, client_for(server, transport, call_log=log) as client:
        server.script(server_error(503), ok("fine", input_tokens=3, output_tokens=2), cut_stream(3))
        list(client.stream("one", temperature=0))
        fails(client, "two", temperature=0)
        t = client.metrics_snapshot().total
    assert (t.calls, t.ok, t.failed, t.attempts, t.retries) == (2, 1, 1, 3, 1)
    assert (t.input_tokens, t.output_tokens) == (3, 2)
    assert t.errors == {"ConnectionFailed": 1}
    conn = sqlite3.connect(tmp_path / "calls.sqlite")
    rows = conn.execute("SELECT ok, error_type, attempts FROM calls ORDER BY id").fetchall()
    conn.close()
    assert rows == [(1, None, 2), (0, "ConnectionFailed", 1)]  # a failed call logs the attempts it made


@TRANSPORTS
def test_the_chain_falls_back_before_the_first_chunk(transport: str) -> None:
    with (
        LoopbackServer() as server,
        client_for(server, transport, models=(MODEL, BACKUP), retry=RetryPolicy(1)) as client,
    ):
        server.script(server_error(503), model="stream-model")
        server.script(ok("From the backup."), model="stream-backup")
        out = final(list(client.stream("Say hello.", temperature=0)))
        assert [r.model for r in server.requests] == ["stream-model", "stream-backup"]
    assert out.model == BACKUP and out.fallback_used and out.attempts == 2
    assert out.content == "From the backup."


def test_a_stream_cut_mid_answer_does_not_fall_back() -> None:
    with (
        LoopbackServer() as server,
        client_for(server, "native", models=(MODEL, BACKUP), retry=RetryPolicy(1)) as client,
    ):
        server.script(cut_stream(3), model="stream-model")
        _, exc = fails(client, temperature=0)
        assert [r.model for r in server.requests] == ["stream-model"]
    assert isinstance(exc, errors.ConnectionFailed)


def test_deltas_arrive_before_the_answer_is_finished() -> None:
    """The server holds the rest of its answer until the test has seen the first word."""
    release = threading.Event()
    with LoopbackServer() as server, client_for(server, "native") as client:
        server.script(held_stream(2, release, ok("early late")))
        events = client.stream("Say hello.", temperature=0)
        first = next(events)
        assert first == TextDelta("early ")  # received while the server still holds "late"
        release.set()
        rest = list(events)
    assert texts(rest) == ["late"] and final(rest).content == "early late"


def test_leaving_a_stream_early_gives_its_concurrency_slot_back() -> None:
    with LoopbackServer() as server, client_for(server, "native", concurrency=1) as client:
        for event in client.stream("Say hello.", temperature=0):
            assert isinstance(event, TextDelta)
            break
        assert client._limit.in_use == 0
        assert client.complete("Again.", temperature=0).content


def test_the_async_api_streams_too() -> None:
    async def run(client: Client) -> list[StreamEvent]:
        return [event async for event in client.astream("Say hello.", temperature=0)]

    with LoopbackServer() as server, client_for(server, "native") as client:
        server.script(ok("Async words."))
        events = asyncio.run(run(client))
    assert texts(events) == ["Async ", "words."] and final(events).served_by == "native"


def test_a_provider_without_streaming_of_its_own_streams_its_answer_whole() -> None:
    provider = ScriptedProvider(["All at once."])
    with Client(ClientConfig(models=("scripted/x",)), provider=provider) as client:
        events = list(client.stream("Say hello."))
    assert events[0] == TextDelta("All at once.") and len(events) == 2
    assert final(events).content == "All at once." and client.metrics_snapshot().total.calls == 1


def test_a_failure_mid_stream_after_a_fallback_counts_every_request() -> None:
    with (
        LoopbackServer() as server,
        client_for(server, "native", models=(MODEL, BACKUP), retry=RetryPolicy(1)) as client,
    ):
        server.script(server_error(503), model="stream-model")
        server.script(cut_stream(3), model="stream-backup")
        _, exc = fails(client, temperature=0)
        assert len(server.requests) == 2
    assert isinstance(exc, errors.ConnectionFailed) and exc.attempts == 2


def test_a_run_budget_scope_caps_streams_from_the_sync_api() -> None:
    with LoopbackServer() as server, client_for(server, "native") as client:
        with client.budget_scope(Budget(max_calls=1)) as run:
            assert final(list(client.stream("one", temperature=0))).content
            events, exc = fails(client, "two", temperature=0)
        assert len(server.requests) == 1
    assert isinstance(exc, errors.BudgetExceeded) and events == []
    assert run.snapshot().calls == 1 and run.snapshot().refused == 1


def test_falling_back_to_a_dearer_model_mid_chain_is_reserved_or_refused() -> None:
    dear = ModelPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)
    with (
        LoopbackServer() as server,
        client_for(
            server,
            "native",
            models=(MODEL, BACKUP),
            retry=RetryPolicy(1),
            prices={MODEL: PRICE, BACKUP: dear},
            budget=Budget(max_cost_usd=0.01),
        ) as client,
    ):
        server.script(server_error(503), model="stream-model")
        events, exc = fails(client, max_tokens=100, temperature=0)
        assert [r.model for r in server.requests] == ["stream-model"]  # the backup was never called
    assert isinstance(exc, errors.BudgetExceeded) and "falling back" in str(exc) and events == []


def test_a_rate_limited_client_streams_after_a_429_before_the_first_chunk() -> None:
    from promptlift.client.config import RateLimit
    from promptlift.testing.server import rate_limited

    limits = (RateLimit(MODEL, rpm=6000, tpm=1_000_000),)
    with LoopbackServer() as server, client_for(server, "native", rate_limits=limits) as client:
        server.script(rate_limited(retry_after=0), ok("Within the limit."))
        out = final(list(client.stream("Say hello.", temperature=0, max_tokens=50)))
        assert len(server.requests) == 2
        attempt_errors = client.metrics_snapshot().total.attempt_errors
    assert out.attempts == 2 and out.content == "Within the limit."
    assert attempt_errors == {"RateLimited": 1}


@pytest.mark.model
def test_the_embedded_model_streams_its_answer_whole() -> None:
    with Client() as client:
        events = list(client.stream("The capital of France is", max_tokens=4, temperature=0))
    out = final(events)
    assert out.served_by == "litellm" and out.model.startswith("local/")
    assert texts(events) == ([out.content] if out.content else []) and len(events) <= 2


def test_a_stream_left_early_is_recorded_as_one_closed_call(tmp_path) -> None:
    log = CallLogConfig(str(tmp_path / "calls.sqlite"))
    with LoopbackServer() as server, client_for(server, "native", call_log=log) as client:
        server.script(ok("one two three"))
        for _ in client.stream("Say hello.", temperature=0):
            break
        t = client.metrics_snapshot().total
    assert (t.calls, t.ok, t.failed) == (1, 0, 1) and t.errors == {"StreamClosed": 1}
    conn = sqlite3.connect(tmp_path / "calls.sqlite")
    rows = conn.execute("SELECT ok, error_type FROM calls").fetchall()
    conn.close()
    assert rows == [(0, "StreamClosed")]


def test_a_stream_left_early_is_charged_its_worst_case() -> None:
    with LoopbackServer() as server, client_for(server, "native", budget=Budget(max_cost_usd=1.0)) as client:
        server.script(ok("one two three", input_tokens=3, output_tokens=3))
        for _ in client.stream("Say hello.", temperature=0, max_tokens=100):
            break
        snap = client.budget.snapshot() if client.budget else None
        worst = client.parts["budget"].estimate(client.request("Say hello.", temperature=0, max_tokens=100))
    assert snap is not None and (snap.in_flight, snap.reserved_usd, snap.calls) == (0, 0.0, 1)
    assert snap.spent_usd == pytest.approx(worst.cost_usd) and worst.cost_usd > (3 + 3 * 2) / 1e6


@pytest.mark.parametrize("transport", ["litellm", "native"])
def test_closing_a_stream_settles_every_wrapper_before_aclose_returns(transport: str) -> None:
    """Each wrapper closes the stream under it when it is closed: the budget's settlement and the
    metrics' record are done when ``aclose()`` returns, not at a later turn of the loop when the
    garbage collector gets to the inner streams."""

    async def scenario(client: Client) -> tuple[Any, int]:
        events = client.astream("Say hello.", temperature=0, max_tokens=100)
        async for _ in events:
            break
        await events.aclose()
        snapshot = client.budget.snapshot() if client.budget else None  # no await since aclose
        return snapshot, client.metrics_snapshot().total.calls

    with LoopbackServer() as server, client_for(server, transport, budget=Budget(max_cost_usd=1.0)) as client:
        server.script(ok("one two three", input_tokens=3, output_tokens=3))
        snap, calls = asyncio.run(scenario(client))
    assert snap is not None and (snap.in_flight, snap.reserved_usd, snap.calls) == (0, 0.0, 1)
    assert calls == 1
