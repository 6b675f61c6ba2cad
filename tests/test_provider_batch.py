"""Provider Batch APIs over real HTTP to the loopback server: submit, poll, partial failure, expiry,
the budget reserved before submitting, the key only sent to its provider's host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift import errors
from promptlift.client import Client, ClientConfig
from promptlift.client.config import Budget
from promptlift.client.provider_batch import BatchSummary, MemoryJobStore, PollPolicy, run_provider_batch
from promptlift.pricing import batch_price, price_of
from promptlift.testing.server import LoopbackServer, bad_request, context_length_exceeded, ok

KEY = "sk-canary-provider-batch-0123456789"
FAST = PollPolicy(interval_s=0.01, max_interval_s=0.02)
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-sonnet-4-5"


@pytest.fixture(scope="module")
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def server(srv: LoopbackServer) -> LoopbackServer:
    srv.reset()
    srv.handler = lambda r: ok("answer to " + r.conversation[-1].text) if r.protocol != "batch" else None
    return srv


def client_for(server: LoopbackServer, model: str, **changes: object) -> Client:
    api_base = server.openai_base if model.startswith("openai/") else server.url
    return Client(ClientConfig(models=(model,), api_base=api_base, api_key=KEY, **changes))  # type: ignore[arg-type]


def batch_paths(server: LoopbackServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.requests if r.protocol == "batch"]


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_submit_poll_and_results_in_input_order_at_the_batch_rate(server: LoopbackServer, model: str) -> None:
    server.batches.polls_before_done = 3
    with client_for(server, model) as client:
        requests = [client.request(f"question {i}", max_tokens=20) for i in range(6)]
        summary = BatchSummary()
        results = run_provider_batch(client, requests, poll=FAST, summary=summary)
    assert [r.content for r in results if not isinstance(r, Exception)] == [
        f"answer to question {i}" for i in range(6)
    ]
    assert len(server.batches.created) == 1
    polls = [
        p
        for p in batch_paths(server)
        if p.startswith("GET") and p.rsplit("/", 1)[-1].startswith(("batch_", "msgbatch_"))
    ]
    assert len(polls) == 3
    first = results[0]
    assert not isinstance(first, Exception)
    assert first.served_by == "batch" and first.usage.reported
    listed, batched = price_of(model), batch_price(model)
    assert listed is not None and batched is not None
    assert first.cost_usd == pytest.approx(batched.cost(first.usage)) and first.cost_usd > 0
    assert first.cost_usd == pytest.approx(listed.cost(first.usage) / 2)
    assert summary.saved_usd == pytest.approx(summary.list_cost_usd / 2) and summary.ok == 6
    assert all(r.key == KEY for r in server.requests if r.protocol == "batch")


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_the_line_body_is_the_live_body(server: LoopbackServer, model: str) -> None:
    with client_for(server, model) as client:
        request = client.request(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            max_tokens=7,
            temperature=0.0,
            stop=["\n"],
        )
        client.complete(request)
        live = server.requests[-1].json
        run_provider_batch(client, [request], poll=FAST)
    job = server.batches.created[-1]
    assert job.lines[0][1] == live


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_partial_failure_gives_the_failed_lines_the_live_typed_errors(
    server: LoopbackServer, model: str
) -> None:
    with client_for(server, model) as client:
        requests = [client.request(f"q{i}", max_tokens=5) for i in range(4)]
        server.batches.fail = {1: bad_request("bad value"), 2: context_length_exceeded()}
        results = run_provider_batch(client, requests, poll=FAST)
    assert isinstance(results[0], type(results[3])) and not isinstance(results[0], Exception)
    assert type(results[1]) is errors.BadRequest and "bad value" in str(results[1])
    assert isinstance(results[2], errors.ContextWindowExceeded)
    assert KEY not in str(results[1])


@pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
def test_expiry_gives_the_unanswered_lines_batch_expired_saying_what_to_do(
    server: LoopbackServer, model: str
) -> None:
    server.batches.expire_after = 2
    with client_for(server, model) as client:
        requests = [client.request(f"q{i}", max_tokens=5) for i in range(5)]
        results = run_provider_batch(client, requests, poll=FAST)
    assert [isinstance(r, errors.BatchExpired) for r in results] == [False, False, True, True, True]
    assert "run again" in str(results[4]) and "not billed" in str(results[4])


def test_a_job_over_the_cost_cap_is_refused_before_any_upload(server: LoopbackServer) -> None:
    with client_for(server, OPENAI, budget=Budget(max_cost_usd=0.0001)) as client:
        requests = [client.request("q" * 400, max_tokens=1000) for _ in range(10)]
        results = run_provider_batch(client, requests, poll=FAST)
        assert client.budget is not None and client.budget.snapshot().reserved_usd == 0
    assert all(isinstance(r, errors.BudgetExceeded) for r in results)
    assert batch_paths(server) == []


def test_reconciled_from_the_reported_usage(server: LoopbackServer) -> None:
    with client_for(server, OPENAI, budget=Budget(max_cost_usd=1.0)) as client:
        requests = [client.request(f"q{i}", max_tokens=100) for i in range(3)]
        results = run_provider_batch(client, requests, poll=FAST)
        snap = client.budget.snapshot() if client.budget else None
    assert snap is not None and snap.reserved_usd == 0 and snap.in_flight == 0
    assert snap.spent_usd == pytest.approx(sum(r.cost_usd for r in results if not isinstance(r, Exception)))


def test_a_model_without_a_batch_api_is_refused_up_front(server: LoopbackServer) -> None:
    local = Client(ClientConfig(models=("local/gemma-3-270m",)))
    with local, pytest.raises(errors.ConfigError, match="no provider Batch API"):
        run_provider_batch(local, [local.request("hi")], poll=FAST)
    server.batches.enabled = False
    client = client_for(server, "openai/my-server-model")
    with client, pytest.raises(errors.ConfigError, match="has no Batch API"):
        run_provider_batch(client, [client.request("hi", max_tokens=3)], poll=FAST)
    assert not any(r.path.endswith("/files") for r in server.requests)


def test_the_providers_own_batch_host_must_be_allowed_too(server: LoopbackServer) -> None:
    client = Client(ClientConfig(models=(ANTHROPIC,), api_key=KEY, allowed_hosts=("127.0.0.1",)))
    with client, pytest.raises(errors.HostNotAllowed, match=r"api\.anthropic\.com"):
        run_provider_batch(client, [client.request("hi", max_tokens=3)], poll=FAST)


def test_a_results_url_on_another_host_is_refused_and_the_key_is_not_sent_there(
    server: LoopbackServer,
) -> None:
    server.batches.results_base = f"http://localhost:{server.port}"  # the same server, another host name
    with client_for(server, ANTHROPIC) as client, pytest.raises(errors.ConfigError, match="key is not sent"):
        run_provider_batch(client, [client.request("hi", max_tokens=3)], poll=FAST)
    assert not any(r.path.endswith("/results") for r in server.requests)


def test_max_wait_leaves_the_job_to_resume(server: LoopbackServer) -> None:
    server.batches.polls_before_done = 1000
    store = MemoryJobStore()
    with client_for(server, OPENAI) as client:
        requests = [client.request(f"q{i}", max_tokens=5) for i in range(3)]
        first = run_provider_batch(
            client, requests, store=store, poll=PollPolicy(0.01, 0.01, max_wait_s=0.05)
        )
        assert all(isinstance(r, errors.Timeout) and "run the same command again" in str(r) for r in first)
        assert store.record is not None and KEY not in json.dumps(store.record)
        server.batches.polls_before_done = 0
        summary = BatchSummary()
        again = run_provider_batch(client, requests, store=store, poll=FAST, summary=summary)
    assert len(server.batches.created) == 1 and summary.jobs_resumed == 1
    assert [r.content for r in again if not isinstance(r, Exception)] == [f"answer to q{i}" for i in range(3)]
    assert store.record is None


def test_a_line_for_openais_own_api_is_litellms_body_for_that_model() -> None:
    from promptlift.providers.batch import BatchEndpoint
    from promptlift.providers.litellm import LiteLLMProvider
    from promptlift.types import CompletionRequest, Message

    endpoint = BatchEndpoint(
        "openai", "https://api.openai.com/v1", None, prices=None, allowed_hosts=None,
        litellm_body=LiteLLMProvider().batch_body,
    )  # fmt: skip
    request = CompletionRequest("openai/o3-mini", (Message("user", "hi"),), max_tokens=9)
    line = endpoint.line("a", request)
    assert line["url"] == "/v1/chat/completions" and line["body"]["model"] == "o3-mini"
    assert line["body"]["max_completion_tokens"] == 9 and "max_tokens" not in line["body"]


def test_answers_go_to_the_cache_and_a_rerun_sends_no_job(server: LoopbackServer, tmp_path: Path) -> None:
    from promptlift.client.config import CacheConfig

    cache = CacheConfig(path=str(tmp_path / "cache.sqlite"))
    with client_for(server, OPENAI, cache=cache) as client:
        requests = [client.request(f"q{i}", max_tokens=5, temperature=0.0) for i in range(3)]
        first = run_provider_batch(client, requests, poll=FAST)
        summary = BatchSummary()
        again = run_provider_batch(client, requests, poll=FAST, summary=summary)
        live = client.complete(requests[1])
    assert len(server.batches.created) == 1 and summary.cached == 3 and summary.jobs_created == 0
    assert [c.content for c in again if not isinstance(c, Exception)] == [
        c.content for c in first if not isinstance(c, Exception)
    ]
    assert all(not isinstance(c, Exception) and c.cached for c in again) and live.cached
    assert not [r for r in server.requests if r.protocol == "openai"]  # the live call too: from the cache


def test_a_job_gone_at_the_provider_is_forgotten_and_the_next_run_submits_anew(
    server: LoopbackServer,
) -> None:
    server.batches.polls_before_done = 1000
    store = MemoryJobStore()
    with client_for(server, OPENAI) as client:
        requests = [client.request(f"q{i}", max_tokens=5) for i in range(2)]
        run_provider_batch(client, requests, store=store, poll=PollPolicy(0.01, 0.01, max_wait_s=0.03))
        server.batches.jobs.clear()  # the provider no longer knows it
        gone = run_provider_batch(client, requests, store=store, poll=FAST)
        assert all(isinstance(r, errors.ModelNotFound) for r in gone) and store.record is None
        server.batches.polls_before_done = 1
        fresh = run_provider_batch(client, requests, store=store, poll=FAST)
    assert len(server.batches.created) == 2 and all(not isinstance(r, Exception) for r in fresh)


def test_anthropic_lines_carry_the_prompt_cache_breakpoints_a_live_call_carries(
    server: LoopbackServer,
) -> None:
    with client_for(server, ANTHROPIC) as client:
        messages = [{"role": "system", "content": "long shared rules"}, {"role": "user", "content": "row"}]
        request = client.request(messages, max_tokens=7, cache_prefix=1)
        client.complete(request)
        live = server.requests[-1].json
        run_provider_batch(client, [request], poll=FAST)
    params = server.batches.created[-1].lines[0][1]
    assert params == live and params["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_a_wait_that_ran_out_counts_no_call_and_the_resumed_job_counts_each_line_once(
    server: LoopbackServer,
) -> None:
    server.batches.polls_before_done = 1000
    store = MemoryJobStore()
    with client_for(server, OPENAI, budget=Budget(max_calls=4)) as client:
        requests = [client.request(f"q{i}", max_tokens=5) for i in range(3)]
        run_provider_batch(client, requests, store=store, poll=PollPolicy(0.01, 0.01, max_wait_s=0.05))
        assert client.budget is not None
        waited = client.budget.snapshot()
        server.batches.polls_before_done = 0
        again = run_provider_batch(client, requests, store=store, poll=FAST)
        done = client.budget.snapshot()
    assert (waited.calls, waited.in_flight, waited.reserved_usd) == (0, 0, 0)  # nothing collected yet
    assert all(not isinstance(r, Exception) for r in again)  # 3 lines fit under max_calls 4, once
    assert (done.calls, done.in_flight) == (3, 0)


def test_a_line_answered_without_usage_is_charged_its_worst_case_never_0(server: LoopbackServer) -> None:
    from promptlift.testing.replies import metered

    server.handler = lambda r: (
        metered(ok("no usage here"), report_usage=False) if r.protocol != "batch" else None
    )
    with client_for(server, OPENAI, budget=Budget(max_cost_usd=1.0)) as client:
        request = client.request("q", max_tokens=50)
        (result,) = run_provider_batch(client, [request], poll=FAST)
        assert client.budget is not None
        spent = client.budget.snapshot().spent_usd
    assert not isinstance(result, Exception) and not result.usage.reported
    price = batch_price(OPENAI)
    assert price is not None and spent > 0
    assert spent >= price.output_per_mtok * 50 / 1e6  # at least its max_tokens at the batch rate
