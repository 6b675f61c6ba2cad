"""Failures end to end: Client → real LiteLLM → real HTTP → the loopback server.

Counts are of requests that reached the server, so they prove that LiteLLM's and the OpenAI SDK's
own retries are off and that our policy alone decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.secrets import redact
from promptlift.testing.server import (
    LoopbackServer,
    Reply,
    bad_request,
    content_filtered,
    context_length_exceeded,
    drop_connection,
    forbidden,
    http_date,
    malformed_json,
    not_found,
    ok,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

KEY = "sk-wire-test-0123456789"
NO_RETRY = RetryPolicy(max_attempts=1)
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01)

ROUTES = {
    "openai": ("openai/gpt-4o-mini", "v1", {}),
    "azure": ("azure/dep", "", {"api_version": "2024-06-01"}),
    "anthropic": ("anthropic/claude-3-5-haiku-20241022", "", {}),
    "gemini": ("gemini/gemini-1.5-flash", "", {}),
}


NO_BREAKER = FallbackPolicy(failure_threshold=0)


def make_client(
    srv: LoopbackServer, route: str = "openai", *, retry: RetryPolicy = NO_RETRY, **kw: object
) -> Client:
    """A one-model client; breakers off, so a run of failures does not pause the model."""
    model, suffix, extra = ROUTES[route]
    base = srv.url + ("/" + suffix if suffix else "")
    config = ClientConfig(models=(model,), api_base=base, api_key=Secret(KEY), retry=retry, extra=dict(extra))
    return Client(config.merged(fallback=NO_BREAKER, **kw))


CASES: list[tuple[Reply, type[errors.ProviderError], int | None]] = [
    (rate_limited(), errors.RateLimited, 429),
    (server_error(500), errors.ProviderUnavailable, 500),
    (server_error(503), errors.ProviderUnavailable, 503),
    (unauthorized(), errors.AuthenticationFailed, 401),
    (forbidden(), errors.PermissionDenied, 403),
    (not_found(), errors.ModelNotFound, 404),
    (bad_request(), errors.BadRequest, 400),
    (context_length_exceeded(), errors.ContextWindowExceeded, 400),
    (drop_connection(), errors.ConnectionFailed, None),
    (malformed_json(), errors.ProviderUnavailable, None),
]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_each_error_maps_to_our_type_with_one_request(loopback: LoopbackServer, route: str) -> None:
    with make_client(loopback, route) as client:
        for reply, expected, status in CASES:
            loopback.reset()
            loopback.script(reply)
            with pytest.raises(errors.ProviderError) as info:
                client.complete("hi")
            err = info.value
            label = f"{route}: {reply.error or reply.action}"
            assert type(err) is expected, f"{label}: got {type(err).__name__}: {err}"
            if status is not None:
                assert err.status == status, label
            assert err.provider == route and err.model == ROUTES[route][0]
            assert len(loopback.requests) == 1, label
            assert err.__context__ is None and err.__cause__ is None  # no LiteLLM exception behind it


@pytest.mark.parametrize("route", ["openai", "azure"])
def test_content_filter_is_recognised_by_its_code(loopback: LoopbackServer, route: str) -> None:
    loopback.script(content_filtered())  # its message is neutral: only the error code says so
    with make_client(loopback, route, retry=FAST) as client, pytest.raises(errors.ContentFiltered):
        client.complete("hi")
    assert len(loopback.requests) == 1


@pytest.mark.parametrize(
    ("route", "finish"),
    [
        ("openai", "content_filter"),
        ("azure", "content_filter"),
        ("anthropic", "refusal"),
        ("gemini", "SAFETY"),
    ],
)
def test_a_refusal_in_a_200_answer_is_content_filtered_and_final(
    loopback: LoopbackServer, route: str, finish: str
) -> None:
    """Providers also refuse inside a successful answer: no text, and the finish reason in each
    protocol's own words (OpenAI/Azure ``content_filter``, Anthropic ``refusal``, Gemini ``SAFETY``)."""
    loopback.script(ok("", finish_reason=finish))
    with make_client(loopback, route, retry=FAST) as client, pytest.raises(errors.ContentFiltered) as caught:
        client.complete("hi")
    assert len(loopback.requests) == 1  # never retried
    assert caught.value.provider == route and caught.value.model == ROUTES[route][0]


def test_final_errors_are_sent_once_even_with_retries_on(loopback: LoopbackServer) -> None:
    with make_client(loopback, retry=RetryPolicy(max_attempts=5, initial_wait=0.01)) as client:
        for reply in (unauthorized(), bad_request(), context_length_exceeded(), forbidden(), not_found()):
            loopback.reset()
            loopback.set_default(reply)
            with pytest.raises(errors.ProviderError):
                client.complete("hi")
            assert len(loopback.requests) == 1, reply


@pytest.mark.slow
def test_retry_after_seconds_is_honoured_on_the_wire(loopback: LoopbackServer) -> None:
    loopback.script(rate_limited(retry_after=2), ok("finally"))
    with make_client(loopback, retry=RetryPolicy(max_attempts=3, initial_wait=0.01)) as client:
        result = client.complete("hi")
    first, second = loopback.requests
    assert result.content == "finally" and result.attempts == 2
    assert second.time - first.time >= 2.0


def test_retry_after_http_date_reaches_the_error(loopback: LoopbackServer) -> None:
    loopback.script(rate_limited(retry_after=http_date(30)))
    with make_client(loopback) as client, pytest.raises(errors.RateLimited) as info:
        client.complete("hi")
    assert info.value.retry_after is not None and 28 <= info.value.retry_after <= 30


def test_retry_after_is_capped_by_max_wait(loopback: LoopbackServer) -> None:
    loopback.script(rate_limited(retry_after=3600), ok())
    with make_client(loopback, retry=RetryPolicy(max_attempts=2, max_wait=0.2)) as client:
        client.complete("hi")
    first, second = loopback.requests
    assert 0.2 <= second.time - first.time < 2


def test_a_500_storm_makes_exactly_max_attempts_then_the_fallback(loopback: LoopbackServer) -> None:
    loopback.set_default(server_error(500), model="primary")
    loopback.set_default(ok("backup here"), model="backup")
    config = ClientConfig(
        models=("openai/primary", "openai/backup"),
        api_base=loopback.openai_base,
        api_key=Secret(KEY),
        retry=RetryPolicy(max_attempts=4, initial_wait=0.01),
    )
    with Client(config) as client:
        result = asyncio.run(client.acomplete("hi"))
    assert [r.model for r in loopback.requests] == ["primary"] * 4 + ["backup"]
    assert (result.model, result.fallback_used, result.attempts) == ("openai/backup", True, 5)


def test_timeouts_dropped_connections_and_malformed_bodies_are_retried(loopback: LoopbackServer) -> None:
    loopback.script(slow(5), drop_connection(), malformed_json(), ok("made it"))
    # A 1.5 s timeout: the answered attempts must fit in it on a loaded machine too.
    with make_client(loopback, retry=RetryPolicy(max_attempts=4, initial_wait=0.01), timeout=1.5) as client:
        result = client.complete("hi")
    assert result.content == "made it" and result.attempts == 4 and len(loopback.requests) == 4


def test_context_window_falls_back_to_a_larger_model(loopback: LoopbackServer) -> None:
    loopback.set_default(context_length_exceeded(), model="small")
    config = ClientConfig(
        models=("openai/small", "openai/large"), api_base=loopback.openai_base, api_key=Secret(KEY)
    )
    with Client(config) as client:
        result = client.complete("a long prompt")
    assert result.model == "openai/large" and result.fallback_used
    assert [r.model for r in loopback.requests] == ["small", "large"]


def test_breaker_skips_a_dead_endpoint_then_probes_it(loopback: LoopbackServer) -> None:
    loopback.set_default(server_error(503), model="dead")
    config = ClientConfig(
        models=("openai/dead", "openai/alive"),
        api_base=loopback.openai_base,
        api_key=Secret(KEY),
        retry=RetryPolicy(max_attempts=2, initial_wait=0.01),
        fallback=FallbackPolicy(failure_threshold=1, cooldown=30),
    )
    now = [0.0]
    with Client(config) as client:
        # The breaker's clock, not the wall's: on a loaded machine call 2 came after a real 0.5 s
        # cool-down had ended, and probed where the test means it to skip.
        client.parts["fallback"]._clock = lambda: now[0]  # type: ignore[attr-defined]
        client.complete("one")
        client.complete("two")
        now[0] += 31
        client.complete("three")
    # call 1: dead twice (its retries), then alive; call 2: dead skipped; call 3: the half-open
    # probe of dead (one call, with its retries) fails, and alive answers.
    expected = ["dead", "dead", "alive", "alive", "dead", "dead", "alive"]
    assert [r.model for r in loopback.requests] == expected


# -- credentials -----------------------------------------------------------------------------------


def test_a_401_refreshes_the_credential_once_and_retries_once(loopback: LoopbackServer) -> None:
    keys = iter(["token-stale-000001", "token-fresh-000002"])
    asked: list[str] = []

    def source(provider: str) -> str:
        asked.append(provider)
        return next(keys)

    loopback.require_key("token-fresh-000002")
    config = ClientConfig(models=("azure/dep",), api_base=loopback.url, extra={"api_version": "2024-06-01"})
    with Client(config.merged(credential_provider=source, retry=FAST)) as client:
        result = client.complete("hi")
        client.complete("again")  # the fresh key is kept
    assert result.content and asked == ["azure", "azure"]
    assert [r.key for r in loopback.requests] == [
        "token-stale-000001",
        "token-fresh-000002",
        "token-fresh-000002",
    ]


def test_a_second_401_is_final(loopback: LoopbackServer) -> None:
    loopback.require_key("never-given-000000")
    config = ClientConfig(models=("openai/gpt-4o-mini",), api_base=loopback.openai_base, retry=FAST)
    client = Client(config.merged(credential_provider=lambda p: "always-stale-0001"))
    with client, pytest.raises(errors.AuthenticationFailed):
        client.complete("hi")
    assert len(loopback.requests) == 2


def test_keys_come_from_the_environment(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0001")
    config = ClientConfig(models=("anthropic/claude-3-5-haiku-20241022",), api_base=loopback.url)
    with Client(config) as client:
        client.complete("hi")
    assert loopback.requests[0].headers["x-api-key"] == "sk-ant-from-env-0001"


def test_a_missing_key_is_a_config_error_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = Client(ClientConfig(models=("anthropic/claude-3-5-haiku-20241022",)))
    with client, pytest.raises(errors.ConfigError, match="ANTHROPIC_API_KEY"):
        client.complete("hi")


# -- parameters and hosts --------------------------------------------------------------------------


def test_unsupported_parameter_is_dropped_with_a_warning(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client(loopback, "anthropic") as client, caplog.at_level(logging.WARNING, "promptlift"):
        client.complete("hi", seed=7, temperature=0.2)
    body = loopback.requests[0].json
    assert "seed" not in body and body["temperature"] == 0.2
    assert any("does not support 'seed'" in r.getMessage() for r in caplog.records)


def test_strict_mode_refuses_an_unsupported_parameter(loopback: LoopbackServer) -> None:
    client = make_client(loopback, "anthropic", strict_params=True)
    with client, pytest.raises(errors.ConfigError, match="does not support the parameter 'seed'; remove it"):
        client.complete("hi", seed=7)
    assert loopback.requests == []


def test_api_base_outside_the_allow_list_is_refused(loopback: LoopbackServer) -> None:
    with pytest.raises(errors.ConfigError, match="not in the allowed hosts"):
        make_client(loopback, allowed_hosts=("api.openai.com", ".openai.azure.com"))  # refused when built
    client = make_client(loopback, allowed_hosts=("127.0.0.1",))
    with client, pytest.raises(errors.ConfigError, match="not in the allowed hosts"):
        client.complete("hi", api_base="http://localhost:9/v1")  # a per-request api_base is checked too
    assert loopback.requests == []
    with make_client(loopback, allowed_hosts=("127.0.0.1",)) as client:
        client.complete("hi")
    assert len(loopback.requests) == 1


# -- secrets -------------------------------------------------------------------------------------


def test_a_canary_key_never_leaks(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    canary = "sk-canary-7f3a9c2e5b1d4f60"
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)  # every logger, LiteLLM's included
    replies = [
        unauthorized(f"Incorrect API key provided: {canary}"),  # a provider that echoes the key
        bad_request(f"bad request for key {canary}"),
        server_error(500, f"boom {canary}"),
        rate_limited(1),
        ok("fine"),
    ]
    for route in ROUTES:
        model, suffix, extra = ROUTES[route]
        base = loopback.url + ("/" + suffix if suffix else "")
        config = ClientConfig(models=(model,), api_base=base, api_key=Secret(canary), extra=dict(extra))
        with Client(config.merged(retry=NO_RETRY)) as client:
            for reply in replies:
                loopback.script(reply)
                try:
                    seen.append(repr(client.complete("hi").to_dict()))
                except errors.PromptliftError as exc:
                    seen += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
            seen.append(repr(client.config))
    out, err = capfd.readouterr()
    seen += [out, err, caplog.text]
    assert all(canary not in text for text in seen)
    assert len(loopback.requests) == 4 * len(replies)  # and the key did go out, where it belongs
    assert all(r.key == canary for r in loopback.requests)


def test_a_refused_connection_says_where_and_what_to_check() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1?api-key=canary-q-7731"  # a key in the query is redacted too
    config = ClientConfig(
        models=("openai/m",),
        api_base=base,
        api_key=Secret(KEY),
        retry=RetryPolicy(max_attempts=2, initial_wait=0.01),
    )
    with Client(config) as client, pytest.raises(errors.ConnectionFailed) as info:
        client.complete("hi")
    err = info.value
    assert err.status is None and err.retryable and err.attempts == 2
    assert str(err) == (
        f"ConnectionFailed from openai/m: connection refused at http://127.0.0.1:{port}/v1?api-key=***: "
        "is the server running, and is api_base right?"
    )


def test_a_dropped_connection_names_the_transports_error(loopback: LoopbackServer) -> None:
    loopback.set_default(drop_connection())
    with (
        make_client(loopback, retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(errors.ConnectionFailed) as info,
    ):
        client.complete("hi")
    assert info.value.status is None
    assert (
        info.value.message
        == f"the connection to {loopback.openai_base} failed (ServerDisconnectedError: Server disconnected)"
    )


def test_credentials_inside_a_url_never_reach_a_message() -> None:
    """A proxy's basic-auth password in api_base is refused when the client is built (LiteLLM's HTTP client
    would refuse it beside the key as a retried 500), with the password redacted; so are a
    Gemini-style ?key= and a SAS sig= in any text."""
    config = ClientConfig(
        models=("openai/m",), api_base="http://alice:pw-canary-7731@127.0.0.1:9/v1", api_key=Secret(KEY)
    )
    with pytest.raises(errors.ConfigError) as info:
        Client(config)  # refused as the client is built, before any call
    assert "pw-canary-7731" not in str(info.value) and "alice:***@127.0.0.1:9" in str(info.value)
    assert "api_key" in str(info.value)
    assert (
        redact("GET /v1/m:generate?alt=sse&key=AQ.canary99&x=1") == "GET /v1/m:generate?alt=sse&key=***&x=1"
    )
    assert redact("https://acct.blob/c?sv=2024&sig=c2lnbmF0dXJl%3D") == "https://acct.blob/c?sv=2024&sig=***"
    assert redact("mail alice@example.com about https://example.com/a@b?monkey=1") == (
        "mail alice@example.com about https://example.com/a@b?monkey=1"
    )
    assert (
        redact("https://:pw-only-1@h/v1 and https://u:pa@ss@h/v1")
        == "https://:***@h/v1 and https://u:***@h/v1"
    )
    logged = json.dumps(
        [{"role": "user", "content": "get https://x/y?token=abc"}, {"role": "user", "content": "ok"}]
    )
    assert json.loads(redact(logged))[0]["content"] == "get https://x/y?token=***"  # still JSON, nothing lost
    assert (
        redact('{"x-api-key": "abcdef123456", "accept": "json"}') == '{"x-api-key": "***", "accept": "json"}'
    )
    assert redact("client_secret=verysecret1&grant_type=x") == "client_secret=***&grant_type=x"
    assert (
        redact("https://s3/o?X-Amz-Signature=beef&X-Amz-Date=1")
        == "https://s3/o?X-Amz-Signature=***&X-Amz-Date=1"
    )


def test_a_gateways_answer_that_mentions_a_refused_connection_keeps_its_status(
    loopback: LoopbackServer,
) -> None:
    """A server answered (a 503 from a gateway about its upstream): its status and words are kept."""
    loopback.set_default(server_error(503, "upstream connect error: connection refused"))
    with make_client(loopback) as client, pytest.raises(errors.ConnectionFailed) as info:
        client.complete("hi")
    assert info.value.status == 503 and "upstream connect error: connection refused" in info.value.message
