"""What real gateways and servers send, end to end: the real LiteLLM over real HTTP to the loopback
server. Waits are asserted as the value the retry policy was given (an injected sleep), never timed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.cli import main
from promptlift.client.calllog import CallLog
from promptlift.client.config import CallLogConfig
from promptlift.client.retry import RetryingProvider, RetryPolicy
from promptlift.optimize.store import RunStore
from promptlift.providers.litellm import LiteLLMProvider
from promptlift.testing.server import LoopbackServer, ok, rate_limited
from promptlift.types import CompletionRequest, Message

KEY = "sk-wire-edges-0123456789"


def _waits_before_success(srv: LoopbackServer, headers: Mapping[str, str]) -> list[float]:
    """One 429 carrying ``headers``, then an answer; the waits the retry policy asked to sleep."""
    srv.script(dataclasses.replace(rate_limited(), headers=dict(headers)), ok("after the wait"))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    provider = LiteLLMProvider(api_base=srv.openai_base, api_key=Secret(KEY))
    retrying = RetryingProvider(
        provider, RetryPolicy(max_attempts=2, initial_wait=0.3, max_wait=120), sleep=sleep
    )
    request = CompletionRequest(model="openai/gpt-4o-mini", messages=(Message("user", "hi"),))
    completion = asyncio.run(retrying.acomplete(request))
    assert completion.content == "after the wait" and completion.attempts == 2
    assert len(srv.requests) == 2
    return waits


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"llm_provider-retry-after": "60"}, 60.0),  # a LiteLLM proxy's own rpm limiter
        ({"retry-after-ms": "1500"}, 1.5),
        ({"llm_provider-retry-after-ms": "2500"}, 2.5),
        ({"Retry-After": "7", "llm_provider-retry-after": "20"}, 20.0),  # the longer hop wins
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30s"}, 90.0),
        (
            {
                "x-ratelimit-remaining-requests": "12",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "20ms",
            },
            0.02,
        ),
    ],
)
def test_every_retry_after_header_a_gateway_sends_sets_the_wait(
    loopback: LoopbackServer, headers: dict[str, str], wait: float
) -> None:
    assert _waits_before_success(loopback, headers) == [pytest.approx(wait)]


def test_a_reset_of_a_limit_with_room_left_is_not_a_wait(loopback: LoopbackServer) -> None:
    headers = {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "50s"}
    (wait,) = _waits_before_success(loopback, headers)
    assert wait <= 0.3  # the policy's own backoff (full jitter from 0.3 s), not the 50 s reset


def test_retry_after_header_forms() -> None:
    from promptlift.providers.retry_after import parse_duration, retry_after_from_headers

    assert retry_after_from_headers({"Retry-After-Ms": "250"}) == 0.25
    assert retry_after_from_headers({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0
    assert (
        retry_after_from_headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    )
    assert retry_after_from_headers({"content-type": "application/json"}) is None
    assert [parse_duration(v) for v in ("1h2m3.5s", "20ms", "4", "5 minutes", "")] == [
        3723.5,
        0.02,
        4.0,
        None,
        None,
    ]


def test_an_error_carries_the_proxied_wait(loopback: LoopbackServer) -> None:
    loopback.script(dataclasses.replace(rate_limited(), headers={"llm_provider-retry-after": "60"}))
    provider = LiteLLMProvider(api_base=loopback.openai_base, api_key=Secret(KEY))
    request = CompletionRequest(model="openai/gpt-4o-mini", messages=(Message("user", "hi"),))
    with pytest.raises(errors.RateLimited) as info:
        asyncio.run(provider.acomplete(request))
    assert info.value.retry_after == 60.0


# -- an endpoint that is not an http(s) URL -------------------------------------------------------


@pytest.mark.parametrize(
    ("api_base", "problem"),
    [
        ("not a url", "contains spaces"),
        ("localhost:8000/v1", "does not start with http:// or https://"),
        ("ftp://files.example.com/v1", "scheme is not http or https"),
        ("http://", "has no host"),
        ("http://127.0.0.1:80x/v1", "port is not a number"),
    ],
)
def test_an_endpoint_that_is_not_a_url_is_refused_when_the_client_is_built(
    api_base: str, problem: str
) -> None:
    with pytest.raises(errors.ConfigError) as info:
        Client(ClientConfig(models=("openai/gpt-4o-mini",), api_base=api_base, api_key=Secret(KEY)))
    assert problem in str(info.value) and "http://localhost:8000/v1" in str(info.value)


def test_an_endpoint_problem_never_quotes_the_value() -> None:
    pasted = "sk-my-real-key-pasted-in-the-wrong-box"  # not a registered Secret: only its shape is known
    with pytest.raises(errors.ConfigError) as info:
        Client(ClientConfig(models=("openai/gpt-4o-mini",), api_base=pasted.replace("-", " ")))
    assert "pasted" not in str(info.value)


def test_cli_refuses_a_non_url_api_base_in_one_line_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["complete", "--model", "openai/gpt-4o-mini", "--api-base", "not a url", "--max-retries", "3", "hi"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "ConfigError" in err and "not an http(s) URL" in err
    assert "Traceback" not in err and "retry" not in err.lower()


# -- credentials in an endpoint's query ---------------------------------------------------------

QUERY_SECRETS = ("gw-query-key-7f3a9c", "gw-query-token-81b2d4")


def test_query_credentials_in_api_base_never_reach_the_call_log(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    """LiteLLM appends its route's path after the query (``?api-key=K/chat/completions``), so such an
    endpoint is answered 404 here; the row is written either way, and must not hold the key."""
    api_base = f"{loopback.openai_base}?api-key={QUERY_SECRETS[0]}&token={QUERY_SECRETS[1]}&api-version=1"
    config = ClientConfig(
        models=("openai/gpt-4o-mini",),
        api_base=api_base,
        api_key=Secret(KEY),
        retry=RetryPolicy(max_attempts=1),
        call_log=CallLogConfig(str(tmp_path / "calls.sqlite"), log_content=True),
    )
    with Client(config) as client, pytest.raises(errors.ProviderError):
        client.complete("hi")
    assert QUERY_SECRETS[0] in loopback.requests[0].query["api-key"]  # it did go on the wire
    (row,) = CallLog(str(tmp_path / "calls.sqlite")).rows()
    assert row["ok"] == 0 and row["api_base"].endswith("?api-key=***&token=***&api-version=1")
    _assert_nowhere_in(tmp_path, QUERY_SECRETS)


def test_query_credentials_in_api_base_never_reach_the_run_store(tmp_path: Path) -> None:
    api_base = f"https://gw.example.com/v1?api-key={QUERY_SECRETS[0]}&token={QUERY_SECRETS[1]}"
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run("fewshot", {"model": "openai/gpt-4o-mini", "api_base": api_base})
    store.finish_run(run_id, "failed", {"error": f"ConnectionFailed: the connection to {api_base} failed"})
    stored = store.run(run_id)
    store.close()
    assert stored["config"]["api_base"] == "https://gw.example.com/v1?api-key=***&token=***"
    assert stored["result"]["error"].startswith("ConnectionFailed")
    _assert_nowhere_in(tmp_path, QUERY_SECRETS)


def _assert_nowhere_in(folder: Path, secrets: tuple[str, ...]) -> None:
    """No file under ``folder`` (the database, its WAL and shared-memory files) holds a secret."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), path


# -- text-completion routes (base models behind /v1/completions) -----------------------------------


def _text_completion_client(srv: LoopbackServer) -> Client:
    config = ClientConfig(
        models=("text-completion-openai/base",),
        api_base=srv.openai_base,
        api_key=Secret(KEY),
        retry=RetryPolicy(max_attempts=3, initial_wait=0.01),
    )
    return Client(config)


def test_text_completion_sends_a_conversation_as_one_prompt(loopback: LoopbackServer) -> None:
    loopback.set_default(ok("positive"))
    messages = [
        {"role": "system", "content": "Classify the sentiment."},
        {"role": "user", "content": "Review: great film\nSentiment:"},
    ]
    with _text_completion_client(loopback) as client:
        assert client.complete(messages).content == "positive"
        assert client.complete("Review: dull\nSentiment:").content == "positive"
    first, second = loopback.requests
    assert first.path == "/v1/completions" and first.key == KEY
    assert first.json["prompt"] == "Classify the sentiment.\n\nReview: great film\nSentiment:"
    assert second.json["prompt"] == "Review: dull\nSentiment:"  # one message: sent as it is


def test_text_completion_leaves_no_http_connection_open(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every aiohttp connector opened for the calls is closed once the client is: one left open is
    what asyncio reports as "Unclosed client session" / "Unclosed connector" when it is collected
    (when that happens depends on the collector, so the connectors are held and asserted on)."""
    opened: list[aiohttp.BaseConnector] = []
    original = aiohttp.BaseConnector.__init__

    def recording_init(self: aiohttp.BaseConnector, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(aiohttp.BaseConnector, "__init__", recording_init)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    with _text_completion_client(loopback) as client:
        for _ in range(4):
            client.complete(messages)
    left_open = [c for c in opened if not c.closed]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for connector in left_open:  # so that this test's leak is not reported in a later one
            connector._close()
    assert len(loopback.requests) == 4
    assert left_open == []
