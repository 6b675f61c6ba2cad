"""Keys and endpoints per model, on the wire: Client → real LiteLLM → real HTTP → loopback servers.

Each model of a chain carries its own endpoint, key and extra; a key is never sent to another
provider or endpoint; the host allow-list holds however an endpoint is set; Azure AD tokens go as
``Authorization: Bearer``; a refused key is named by where it came from, never by its value.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.client.config import CacheConfig, ModelSpec
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.testing.server import LoopbackServer, ok, server_error, unauthorized

OPENAI_KEY = "sk-openai-first-000000001"
ANTHROPIC_ENV_KEY = "sk-ant-from-env-000000002"
AZURE_KEY = "azure-own-key-000000003"
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-3-5-haiku-20241022"
AZURE_EXTRA = {"api_version": "2024-06-01"}
ONCE = RetryPolicy(max_attempts=1)
NO_BREAKER = FallbackPolicy(failure_threshold=0)


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    """A second server: a second endpoint, so where each request went is plain."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_ENV_KEY)


def chain_client(*models: str | ModelSpec, **kw: object) -> Client:
    config = ClientConfig(models=models, retry=ONCE, fallback=NO_BREAKER)
    return Client(config.merged(**kw))


# -- case 1: one model's key is never sent to another provider or endpoint -------------------------


def test_an_explicit_key_is_not_sent_to_another_provider_of_the_chain(loopback: LoopbackServer) -> None:
    loopback.script(server_error(), model="gpt-4o-mini")
    with chain_client(OPENAI, ANTHROPIC, api_base=loopback.openai_base, api_key=Secret(OPENAI_KEY)) as client:
        assert client.complete("hi").model == ANTHROPIC
    first, second = loopback.requests
    assert (first.protocol, first.key) == ("openai", OPENAI_KEY)
    assert (second.protocol, second.key) == ("anthropic", ANTHROPIC_ENV_KEY)  # its own, not OpenAI's


def test_an_explicit_key_is_not_sent_to_another_endpoint_of_the_same_provider(
    loopback: LoopbackServer, other: LoopbackServer
) -> None:
    loopback.script(server_error())
    own = ModelSpec("openai/llama", api_base=other.openai_base)
    with chain_client(OPENAI, own, api_base=loopback.openai_base, api_key=Secret(OPENAI_KEY)) as client:
        assert client.complete("hi").model == "openai/llama"
    assert [r.key for r in loopback.requests] == [OPENAI_KEY]
    assert [r.key for r in other.requests] == ["no-key"]  # a server of your own: the SDK's placeholder


def test_each_model_of_a_chain_has_its_own_endpoint_key_and_extra(
    loopback: LoopbackServer, other: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_AZURE_KEY", AZURE_KEY)
    loopback.script(server_error())
    first = ModelSpec(OPENAI, api_base=loopback.openai_base, api_key=Secret(OPENAI_KEY))
    second = ModelSpec(
        "azure/dep", api_base=other.url, api_key_env="MY_AZURE_KEY", extra={"api_version": "2024-06-01"}
    )
    with chain_client(first, second) as client:
        answer = client.complete("hi")
    assert (answer.model, answer.fallback_used) == ("azure/dep", True)
    assert [(r.protocol, r.key) for r in loopback.requests] == [("openai", OPENAI_KEY)]
    (azure,) = other.requests
    assert (azure.protocol, azure.key, azure.query) == ("azure", AZURE_KEY, {"api-version": "2024-06-01"})
    assert azure.headers["api-key"] == AZURE_KEY and "api_version" not in (loopback.requests[0].json or {})


def test_the_cache_key_holds_each_models_endpoint_and_never_its_key(
    loopback: LoopbackServer, other: LoopbackServer, tmp_path: object
) -> None:
    path = f"{tmp_path}/cache.sqlite"
    for server, key in ((loopback, "sk-first-key-0000001"), (other, "sk-second-key-000002")):
        spec = ModelSpec(OPENAI, api_base=server.openai_base, api_key=Secret(key))
        with chain_client(spec, cache=CacheConfig(path=path)) as client:
            client.complete("hi", temperature=0)
            assert client.complete("hi", temperature=0).cached  # the same endpoint: a hit
    assert len(loopback.requests) == len(other.requests) == 1  # another endpoint: not served from cache
    with open(path, "rb") as f:
        stored = f.read()
    assert b"sk-first-key" not in stored and b"sk-second-key" not in stored


def test_a_model_spec_refuses_what_would_leak_or_mean_nothing() -> None:
    with pytest.raises(errors.ConfigError, match="api_key or api_key_env, not both"):
        ModelSpec(OPENAI, api_key=Secret("sk-both-0000000001"), api_key_env="OPENAI_API_KEY")
    with pytest.raises(errors.ConfigError, match="name of an environment variable") as info:
        ModelSpec(OPENAI, api_key_env="sk-pasted-a-key-here-0001")
    assert "sk-pasted" not in str(info.value)
    with pytest.raises(errors.ConfigError, match="extra `api_key` would be sent to every model") as info:
        ClientConfig(models=(OPENAI, ANTHROPIC), extra={"api_key": "sk-in-extra-000000001"})
    assert "sk-in-extra" not in str(info.value)
    with pytest.raises(errors.ConfigError, match="two different endpoints"):
        ModelSpec(OPENAI, api_base="http://a.example/v1", extra={"base_url": "http://b.example/v1"})
    with pytest.raises(errors.ConfigError, match="appears twice"):
        ClientConfig(models=(ModelSpec(OPENAI, api_base="http://a.example/v1"), OPENAI))


def test_an_unset_api_key_env_is_named_before_any_request(loopback: LoopbackServer) -> None:
    spec = ModelSpec(OPENAI, api_base=loopback.openai_base, api_key_env="NOT_SET_ANYWHERE")
    with chain_client(spec) as client, pytest.raises(errors.ConfigError, match=r"models\[0\].api_key_env"):
        client.complete("hi")
    assert loopback.requests == []


# -- case 4: Azure AD tokens go as a bearer token ---------------------------------------------------


def test_an_azure_ad_token_from_the_credential_provider_is_sent_as_bearer(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_API_KEY", "azure-env-key-not-this-one")
    source = lambda provider: "eyJ.ad-token.000001"  # noqa: E731
    with chain_client(
        "azure/dep", api_base=loopback.url, extra=AZURE_EXTRA, credential_provider=source
    ) as client:
        client.complete("hi")
    (request,) = loopback.requests
    assert request.headers.get("authorization") == "Bearer eyJ.ad-token.000001"
    assert "api-key" not in request.headers


def test_an_azure_ad_token_is_refreshed_after_a_401_and_sent_as_bearer(loopback: LoopbackServer) -> None:
    tokens = iter(["eyJ.stale-token.0001", "eyJ.fresh-token.0002"])
    loopback.require_key("eyJ.fresh-token.0002")
    source = lambda provider: next(tokens)  # noqa: E731
    with chain_client(
        "azure/dep", api_base=loopback.url, extra=AZURE_EXTRA, credential_provider=source
    ) as client:
        client.complete("hi")
    assert [r.headers.get("authorization") for r in loopback.requests] == [
        "Bearer eyJ.stale-token.0001",
        "Bearer eyJ.fresh-token.0002",
    ]


# -- case 5: a refused key is named by where it came from -------------------------------------------


def test_a_401_names_the_environment_variable_that_gave_the_key(loopback: LoopbackServer) -> None:
    loopback.script(unauthorized())
    with (
        chain_client(ANTHROPIC, api_base=loopback.url) as client,
        pytest.raises(errors.AuthenticationFailed) as info,
    ):
        client.complete("hi")
    assert "ANTHROPIC_API_KEY (environment)" in str(info.value)
    assert ANTHROPIC_ENV_KEY not in str(info.value) + repr(vars(info.value))


def test_a_401_names_the_chain_entry_that_gave_the_key(
    loopback: LoopbackServer, other: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECOND_KEY", "sk-second-model-key-0001")
    loopback.script(server_error())
    other.script(unauthorized())
    second = ModelSpec("openai/second", api_base=other.openai_base, api_key_env="SECOND_KEY")
    with (
        chain_client(ModelSpec(OPENAI, api_base=loopback.openai_base), second) as client,
        pytest.raises(errors.AuthenticationFailed) as info,
    ):
        client.complete("hi")
    text = str(info.value)
    assert "SECOND_KEY (environment, named by models[1].api_key_env)" in text
    assert "sk-second-model-key" not in text


def test_a_401_names_the_explicit_key(loopback: LoopbackServer) -> None:
    loopback.script(unauthorized())
    client = chain_client(OPENAI, api_base=loopback.openai_base, api_key=Secret(OPENAI_KEY))
    with client, pytest.raises(errors.AuthenticationFailed, match="came from the explicit api_key"):
        client.complete("hi")
    loopback.set_default(ok())


# -- case 2: the host allow-list holds however the endpoint is set ----------------------------------

ELSEWHERE = ("api.example.com",)  # an allow-list the loopback server is not on


@pytest.mark.parametrize(
    "settings",
    [
        {"extra": {"api_base": "LOOPBACK"}},
        {"extra": {"base_url": "LOOPBACK"}},
        {"models": (ModelSpec(OPENAI, api_base="LOOPBACK"),)},
        {"models": (ModelSpec(OPENAI, extra={"base_url": "LOOPBACK"}),)},
    ],
    ids=["extra-api_base", "extra-base_url", "model-api_base", "model-extra-base_url"],
)
def test_the_allow_list_checks_every_api_base(loopback: LoopbackServer, settings: dict[str, object]) -> None:
    def filled(value: object) -> object:
        if isinstance(value, ModelSpec):
            return ModelSpec(value.model, api_base=loopback.openai_base if value.api_base else None)
        if isinstance(value, dict):
            return {k: loopback.openai_base for k in value}
        return tuple(filled(v) for v in value) if isinstance(value, tuple) else value

    given = {k: filled(v) for k, v in settings.items()}
    config = ClientConfig(models=(OPENAI,), api_key=Secret(OPENAI_KEY)).merged(**given)
    with pytest.raises(errors.ConfigError, match=r"'127\.0\.0\.1' is not in the allowed hosts"):
        Client(config.merged(allowed_hosts=ELSEWHERE)).complete("hi")
    assert loopback.requests == []
    with Client(config.merged(allowed_hosts=("127.0.0.1",))) as client:
        client.complete("hi")
    assert len(loopback.requests) == 1


@pytest.mark.parametrize(
    ("model", "variable", "suffix"),
    [
        (OPENAI, "OPENAI_API_BASE", "/v1"),
        (OPENAI, "OPENAI_BASE_URL", "/v1"),
        (ANTHROPIC, "ANTHROPIC_API_BASE", ""),
        (ANTHROPIC, "ANTHROPIC_BASE_URL", ""),
    ],
)
def test_the_allow_list_checks_the_endpoint_litellm_reads_from_the_environment(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch, model: str, variable: str, suffix: str
) -> None:
    monkeypatch.setenv(variable, loopback.url + suffix)
    client = chain_client(model, api_key=Secret(OPENAI_KEY), allowed_hosts=ELSEWHERE)
    with client, pytest.raises(errors.ConfigError, match=f"{variable} \\(environment\\) host '127.0.0.1'"):
        client.complete("hi")
    assert loopback.requests == []
    with chain_client(model, api_key=Secret(OPENAI_KEY), allowed_hosts=("127.0.0.1",)) as client:
        client.complete("hi")
    assert len(loopback.requests) == 1  # the variable was really where the call went


def test_the_allow_list_checks_the_providers_default_host() -> None:
    client = chain_client(OPENAI, api_key=Secret(OPENAI_KEY), allowed_hosts=("127.0.0.1",))
    with client, pytest.raises(errors.ConfigError, match=r"default endpoint host 'api\.openai\.com'"):
        client.complete("hi")


@pytest.mark.parametrize(
    ("provider", "api_base", "sent"),
    [
        ("openai", None, True),  # LiteLLM's own endpoint (the provider's, or one from the environment)
        ("openai", "https://api.openai.com/v1", True),
        ("openai", "http://127.0.0.1:8000/v1", True),  # your own machine
        ("openai", "http://10.1.2.3:8000/v1", True),  # your own network
        ("openai", "http://[fd00::5]:8000/v1", True),
        ("openai", "http://gpu-box.local:8000/v1", True),
        ("openai", "https://llm.example.com/v1", False),  # a configured stranger
        ("openai", "https://api.openai.com.example.com/v1", False),  # a lookalike
        ("anthropic", "https://api.anthropic.com", True),
        ("anthropic", "https://llm.example.com", False),
        ("azure", "https://team.openai.azure.com", True),
        ("azure", "https://openai.azure.com.example.com", False),
        ("hosted_vllm", "https://vllm.example.com/v1", True),  # always a server of your own
    ],
)
def test_an_environment_key_goes_only_to_its_providers_hosts_or_your_own(
    provider: str, api_base: str | None, sent: bool
) -> None:
    import asyncio

    from promptlift.providers.credentials import ENV_KEYS, Credentials

    env = {ENV_KEYS[provider][0]: "sk-env-canary-0000000042"}
    key = asyncio.run(Credentials(env=env).resolve(provider, api_base=api_base))
    assert (key.secret is not None) is sent, key.source
    if not sent:
        assert "not sent there" in key.source and "sk-env-canary" not in key.source


def test_a_stranger_endpoint_refusing_the_keyless_call_says_to_give_the_model_its_key(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the wire: the loopback server stands in for a public host via the allow-list's view,
    so the decision is exercised at the credential layer and the 401 message checked end to end."""
    from promptlift.providers import credentials

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-canary-0000000043")
    monkeypatch.setattr(credentials, "_is_private", lambda api_base: False)  # as if it were public
    loopback.require_key("sk-env-canary-0000000043")
    config = ClientConfig(models=(OPENAI,), api_base=loopback.openai_base, retry=ONCE, fallback=NO_BREAKER)
    with Client(config) as client, pytest.raises(errors.AuthenticationFailed) as refused:
        client.complete("hi")
    assert loopback.requests and "sk-env-canary" not in str(loopback.requests[-1].headers)
    message = str(refused.value)
    assert "OPENAI_API_KEY belongs to api.openai.com, not to 127.0.0.1" in message
    assert "api_key_env" in message and "sk-env-canary" not in message
