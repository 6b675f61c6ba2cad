"""Google Vertex AI end to end: Client → real LiteLLM → google-auth → real HTTP → the loopback server.

Each test signs in with a throwaway service account whose ``token_uri`` is the loopback server: the
token exchange (a signed JWT for an access token) and the generateContent calls both go over the
wire and are asserted on there. A new account per test, because LiteLLM keeps one access token per
credential for the life of the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import httpx
import pytest

from promptlift import Client, ClientConfig, Completion, ConfigError, Secret, errors
from promptlift.client.config import CacheConfig, CallLogConfig, VertexConfig
from promptlift.client.retry import RetryPolicy
from promptlift.secrets import redact
from promptlift.testing.google import (
    JWT_BEARER_GRANT,
    service_account,
    token_claims,
    token_form,
    verify_signature,
)
from promptlift.testing.server import (
    LoopbackServer,
    RecordedRequest,
    bad_request,
    forbidden,
    ok,
    rate_limited,
    server_error,
    unauthorized,
)

MODEL = "vertex_ai/gemini-2.5-flash"
FAST = RetryPolicy(max_attempts=3, initial_wait=0.01)
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi to me"}]


@pytest.fixture
def account(loopback: LoopbackServer) -> dict[str, str]:
    return service_account(loopback.token_uri, project="proj-from-key")


def vertex_client(srv: LoopbackServer, account: dict[str, str], **changes: object) -> Client:
    vertex = VertexConfig(project="proj-vx", location="europe-west4", credentials=Secret(json.dumps(account)))
    config = ClientConfig(models=(MODEL,), api_base=srv.url, retry=FAST, vertex=vertex)
    return Client(config.merged(**changes))


def of(srv: LoopbackServer, protocol: str) -> list[RecordedRequest]:
    return [r for r in srv.requests if r.protocol == protocol]


def max_output_tokens(body: dict[str, object]) -> object:
    config = body["generationConfig"]
    assert isinstance(config, dict)
    # LiteLLM 1.110.2 writes the proto field in snake_case (the API accepts both spellings).
    return config.get("max_output_tokens", config.get("maxOutputTokens"))


def test_vertex_end_to_end_sync_and_async(loopback: LoopbackServer, account: dict[str, str]) -> None:
    loopback.script(
        ok("sync answer", input_tokens=11, output_tokens=2),
        ok("async answer", input_tokens=11, output_tokens=3),
    )
    with vertex_client(loopback, account) as client:
        sync = client.complete(MESSAGES, max_tokens=7, temperature=0.3)
        async_ = asyncio.run(client.acomplete(MESSAGES, max_tokens=7, temperature=0.3))

    # One token exchange: a JWT signed by the account's key, for the cloud-platform scope.
    (grant,) = of(loopback, "oauth")
    assert grant.path == "/token" and token_form(grant.body)["grant_type"] == JWT_BEARER_GRANT
    claims = token_claims(grant)
    assert claims["iss"] == account["client_email"]
    assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
    assert verify_signature(grant, account)
    # Then both calls (LiteLLM keeps the token between sync and async) present the issued token.
    (token,) = loopback.issued_tokens
    calls = of(loopback, "vertex")
    assert [r.protocol for r in loopback.requests] == ["oauth", "vertex", "vertex"]
    for req in calls:
        assert req.path == (
            "/v1/projects/proj-vx/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
        )
        assert req.headers["authorization"] == f"Bearer {token}" and req.model == "gemini-2.5-flash"
        body = req.json
        assert body["contents"] == [{"role": "user", "parts": [{"text": "say hi to me"}]}]
        assert body["system_instruction"] == {"parts": [{"text": "be brief"}]}
        assert max_output_tokens(body) == 7 and body["generationConfig"]["temperature"] == 0.3
        assert account["private_key"] not in req.body.decode()

    assert (sync.content, async_.content) == ("sync answer", "async answer")
    for result, out in ((sync, 2), (async_, 3)):
        assert isinstance(result, Completion)
        assert (result.model, result.provider, result.attempts, result.finish_reason) == (
            MODEL,
            "vertex_ai",
            1,
            "stop",
        )
        assert (result.usage.input_tokens, result.usage.output_tokens) == (11, out)
        assert result.cost_usd is not None and result.cost_usd > 0  # priced from LiteLLM's map


@pytest.mark.parametrize(
    ("model", "system_apart"),
    [("vertex_ai/gemini-2.5-flash", True), ("vertex_ai/gemini-2.0-flash", False)],
)
def test_project_and_region_default_and_the_system_prompt_follows_the_price_map(
    loopback: LoopbackServer,
    account: dict[str, str],
    model: str,
    system_apart: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pins a LiteLLM 1.110.2 quirk: a Gemini model whose price-map entry lacks
    ``supports_system_messages`` (gemini-2.0-flash) gets the system prompt folded into the user turn;
    promptlift warns that it does."""
    config = ClientConfig(
        models=(model,), api_base=loopback.url, vertex=VertexConfig(credentials=Secret(json.dumps(account)))
    )
    with caplog.at_level(logging.WARNING, logger="promptlift"), Client(config) as client:
        assert client.complete(MESSAGES, max_tokens=5).content
    warned = any("folds the system prompt" in r.getMessage() for r in caplog.records)
    assert warned is not system_apart
    (req,) = of(loopback, "vertex")
    name = model.split("/")[1]
    # No project or location given: the key's project_id, and LiteLLM's default region.
    assert (
        req.path
        == f"/v1/projects/proj-from-key/locations/us-central1/publishers/google/models/{name}:generateContent"
    )
    if system_apart:
        assert req.json["system_instruction"] == {"parts": [{"text": "be brief"}]}
        assert req.json["contents"][0]["parts"] == [{"text": "say hi to me"}]
    else:
        assert "system_instruction" not in req.json
        assert req.json["contents"][0]["parts"] == [{"text": "be brief"}, {"text": "say hi to me"}]


# -- failures --------------------------------------------------------------------------------------


def test_a_429_is_retried_by_our_policy_with_the_same_token(
    loopback: LoopbackServer, account: dict[str, str]
) -> None:
    loopback.script(rate_limited(), rate_limited(), ok("third time"))
    with vertex_client(loopback, account) as client:
        result = client.complete("hi")
        loopback.set_default(rate_limited())
        with pytest.raises(errors.RateLimited) as info:
            client.complete("hi")
    assert result.content == "third time" and result.attempts == 3
    assert info.value.status == 429 and info.value.provider == "vertex_ai"
    # 1 exchange, then 3 attempts per call (FAST: max_attempts=3): LiteLLM's own retries are off.
    assert [r.protocol for r in loopback.requests] == ["oauth"] + ["vertex"] * 6
    assert {r.key for r in of(loopback, "vertex")} == set(loopback.issued_tokens)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [(unauthorized(), errors.AuthenticationFailed), (forbidden(), errors.PermissionDenied)],
)
def test_401_and_403_are_final_after_one_request(
    loopback: LoopbackServer, account: dict[str, str], reply: object, expected: type[errors.ProviderError]
) -> None:
    """Final even with a credential provider configured: Vertex takes no API key, and a retry
    would present the same Google token, which LiteLLM keeps until it expires."""
    asked: list[str] = []

    def source(provider: str) -> str:
        asked.append(provider)
        return "token-from-callback-0001"

    loopback.set_default(reply)  # type: ignore[arg-type]
    retry = RetryPolicy(max_attempts=5, initial_wait=0.01)
    client = vertex_client(loopback, account, retry=retry, credential_provider=source)
    with client, pytest.raises(expected) as info:
        client.complete("hi")
    assert info.value.status == (401 if expected is errors.AuthenticationFailed else 403)
    assert [r.protocol for r in loopback.requests] == ["oauth", "vertex"]
    assert asked == []


def test_a_service_account_refused_at_the_token_endpoint_is_final(
    loopback: LoopbackServer, account: dict[str, str]
) -> None:
    """google-auth's RefreshError reaches LiteLLM's caller as an APIConnectionError (a 500): it is
    an authentication failure, not a connection to retry."""
    loopback.handler = lambda r: unauthorized("Invalid JWT Signature.") if r.protocol == "oauth" else None
    with vertex_client(loopback, account) as client, pytest.raises(errors.AuthenticationFailed) as info:
        client.complete("hi")
    assert "token endpoint" in str(info.value) and "invalid_grant" in str(info.value)
    assert [r.protocol for r in loopback.requests] == ["oauth"]  # no retry, no model call


def test_a_token_endpoint_briefly_down_is_retried_by_google_auth_alone(
    loopback: LoopbackServer, account: dict[str, str]
) -> None:
    """One 503 at the token endpoint: google-auth asks again about 1 s later (its own backoff,
    three tries in all), gets a token, and the model is called once; our retry never sees it."""
    down = iter([server_error(503, "The service is currently unavailable.")])
    loopback.handler = lambda r: next(down, None) if r.protocol == "oauth" else None
    with vertex_client(loopback, account) as client:
        result = client.complete("hi")
    assert result.attempts == 1
    first, second, call = loopback.requests
    assert [r.protocol for r in loopback.requests] == ["oauth", "oauth", "vertex"]
    assert second.time - first.time >= 0.8  # google-auth's 1 s (±10 %), not our 0.01 s
    assert call.key == loopback.issued_tokens[0] and len(loopback.issued_tokens) == 1


def test_a_token_endpoint_that_stays_down_is_a_retryable_failure(
    loopback: LoopbackServer, account: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """Pins LiteLLM 1.110.2 with google-auth: after its three tries google-auth raises a RefreshError
    ("temporarily_unavailable: ..."), which LiteLLM raises as an APIConnectionError (a 500). That is
    a connection failure to retry, not a refused credential: each of our attempts costs google-auth's
    three token requests (about 3 s), and the model is never called."""
    loopback.handler = lambda r: server_error(503, "Try again later.") if r.protocol == "oauth" else None
    client = vertex_client(loopback, account, retry=RetryPolicy(max_attempts=2, initial_wait=0.01))
    with client, pytest.raises(errors.ConnectionFailed) as info:
        client.complete("hi")
    assert info.value.retryable and "temporarily_unavailable: Try again later." in str(info.value)
    assert "from vertex_ai/gemini-2.5-flash: Google's token endpoint is unavailable" in str(info.value)
    assert info.value.status is None  # LiteLLM's wrapper says 500; no server sent one
    assert [r.protocol for r in loopback.requests] == ["oauth"] * 6
    assert loopback.issued_tokens == []
    stderr = capfd.readouterr().err  # LiteLLM's own ERROR lines and tracebacks stay quiet
    assert "Failed to load vertex credentials" not in stderr and "Traceback" not in stderr


def test_the_private_key_and_the_access_token_never_leak(
    loopback: LoopbackServer,
    account: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    key = account["private_key"]
    key_lines = key.strip().splitlines()[1:-1]  # the base64 body: a partial leak shows up too
    caplog.set_level(logging.DEBUG)  # every logger, LiteLLM's and google-auth's included
    echo: dict[str, str] = {}

    def echoing(r: RecordedRequest) -> None:  # a provider that echoes what it was sent
        echo["token"] = r.key or ""
        return None

    loopback.handler = echoing
    seen: list[str] = []
    cache = CacheConfig(path=str(tmp_path / "cache.sqlite"))
    calls = CallLogConfig(path=str(tmp_path / "calls.sqlite"), log_content=True)
    with vertex_client(
        loopback, account, retry=RetryPolicy(max_attempts=1), cache=cache, call_log=calls
    ) as c:
        seen.append(repr(c.complete("hi").to_dict()))
        for reply in (
            unauthorized(f"Request had invalid authentication credentials: Bearer {echo['token']}"),
            bad_request(f"cannot parse {key!r}"),
            server_error(500, f"boom {echo['token']}"),
        ):
            loopback.script(reply)
            with pytest.raises(errors.PromptliftError) as info:
                c.complete("fail, please")
            exc = info.value
            seen += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        seen += [repr(c.config), str(c.config.vertex)]
    out, err = capfd.readouterr()
    seen += [out, err, caplog.text]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir()]
    (token,) = loopback.issued_tokens
    assert echo["token"] == token  # the token did go out, where it belongs
    for text in seen:
        assert token not in text
        assert not any(line in text for line in key_lines)


def test_application_default_credentials_from_the_environment(
    loopback: LoopbackServer, account: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("VERTEXAI_PROJECT", "proj-env")
    monkeypatch.setenv("VERTEXAI_LOCATION", "asia-northeast1")
    with Client(ClientConfig(models=(MODEL,), api_base=loopback.url)) as client:
        assert client.complete("hi").content
    grant, call = loopback.requests
    assert token_claims(grant)["iss"] == account["client_email"]
    assert call.path.startswith("/v1/projects/proj-env/locations/asia-northeast1/publishers/google/models/")
    assert call.key == loopback.issued_tokens[0]


def test_redact_scrubs_private_keys_and_google_access_tokens() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    text = f"a {pem} b {json.dumps(pem)} c ya29.a0AfH6SMBx-example_token d"
    assert redact(text) == 'a ***\n b "***\\n" c *** d'


def test_without_google_auth_the_route_is_a_config_error(
    loopback: LoopbackServer, account: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "google.auth.transport.requests", None)  # import raises ImportError
    with (
        vertex_client(loopback, account) as client,
        pytest.raises(ConfigError, match=r"promptlift\[vertex\]"),
    ):
        client.complete("hi")
    assert loopback.requests == []


def test_credentials_that_are_not_json_are_refused_without_being_quoted() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
        VertexConfig(credentials=Secret("/home/me/key.json-not-json-text"))
    assert "key.json-not-json-text" not in str(info.value)


# -- the server's side of the exchange -------------------------------------------------------------


def test_token_requests_use_no_script_and_need_the_jwt_bearer_grant(loopback: LoopbackServer) -> None:
    loopback.script(rate_limited())  # meant for the model call that follows the exchange
    loopback.require_key("a-model-key-000001")  # applies to model calls, not to the exchange
    with httpx.Client(timeout=5) as http:
        good = http.post(loopback.token_uri, data={"grant_type": JWT_BEARER_GRANT, "assertion": "a.b.c"})
        bad = http.post(loopback.token_uri, data={"grant_type": "client_credentials"})
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
    assert good.json()["access_token"] == loopback.issued_tokens[0] and good.json()["expires_in"] == 3600
    assert bad.status_code == 400 and bad.json()["error"] == "unsupported_grant_type"
    assert loopback.pending() == 1 and len(loopback.issued_tokens) == 1
    assert [r.protocol for r in loopback.requests] == ["oauth", "oauth"]


def test_errors_at_the_token_endpoint_are_oauth_errors(loopback: LoopbackServer) -> None:
    """A 429 or a 5xx is the endpoint's own trouble (google-auth retries it); a 4xx refuses the grant."""
    replies = iter(
        [server_error(503), rate_limited(retry_after=3), server_error(500), unauthorized(), bad_request()]
    )
    loopback.handler = lambda r: next(replies)
    grant = {"grant_type": JWT_BEARER_GRANT, "assertion": "a.b.c"}
    with httpx.Client(timeout=5) as http:
        answers = [http.post(loopback.token_uri, data=grant) for _ in range(5)]
    assert [(a.status_code, a.json()["error"]) for a in answers] == [
        (503, "temporarily_unavailable"),
        (429, "temporarily_unavailable"),
        (500, "temporarily_unavailable"),
        (401, "invalid_grant"),
        (400, "invalid_grant"),
    ]
    assert answers[1].headers["retry-after"] == "3" and answers[3].json()["error_description"]
    assert loopback.issued_tokens == []
