"""The cache key leaves out credentials by what they are, and keeps every other parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Secret
from promptlift.client.cache import cache_key, canonical_request
from promptlift.client.config import CacheConfig
from promptlift.testing.server import LoopbackServer, ok
from promptlift.types import CompletionRequest, Message

CANARY = "sk-canary-key-0123456789abcdef"


def req() -> CompletionRequest:
    return CompletionRequest(model="openai/m", messages=(Message("user", "hi"),), temperature=0.0)


def test_parameters_whose_names_contain_token_or_key_still_key_the_answer() -> None:
    variants = [
        {"max_completion_tokens": 5},
        {"max_completion_tokens": 500},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"thinking": {"type": "enabled", "budget_tokens": 4096}},
        {"logit_bias": {"50256": -100}},
        {"prompt_cache_key": "tenant-a"},
        {"reasoning_effort": "high"},
    ]
    keys = {cache_key(req(), extra=extra) for extra in variants}
    assert len(keys) == len(variants)
    assert cache_key(req()) not in keys


# LiteLLM 1.110.2's credential parameters, written out here (not read from the code under test, so a
# name dropped from the code's list fails this test).
LITELLM_CREDENTIALS = (
    "api_key", "azure_ad_token", "azure_ad_token_provider", "azure_password", "azure_username",
    "client_id", "client_secret", "tenant_id", "vertex_credentials", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_session_name", "aws_profile_name",
    "aws_role_name", "aws_web_identity_token", "aws_external_id", "litellm_credential_name",
)  # fmt: skip
SECRETS_IN_EXTRA = (
    "api_key", "azure_ad_token", "azure_password", "client_secret", "vertex_credentials",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_web_identity_token",
)  # fmt: skip


@pytest.mark.parametrize("name", SECRETS_IN_EXTRA)
def test_a_secret_in_extra_is_refused_without_quoting_it(name: str) -> None:
    """``extra`` goes to every model of a chain and shows in the config's repr: no secret there."""
    from promptlift import ClientConfig
    from promptlift.errors import ConfigError

    with pytest.raises(ConfigError, match=f"extra `{name}` would be sent to every model") as info:
        ClientConfig(models=("openai/a", "anthropic/b"), extra={name: CANARY})
    assert CANARY not in str(info.value)


def test_credentials_are_dropped_by_name_header_and_secret_type() -> None:
    plain = canonical_request(req(), extra={"api_version": "v1"})
    for name in LITELLM_CREDENTIALS:
        assert canonical_request(req(), extra={"api_version": "v1", name: CANARY}) == plain, name
    for extra in (
        {"api_version": "v1", "my_gateway_secret": Secret(CANARY)},
        {"api_version": "v1", "extra_headers": {"Authorization": f"Bearer {CANARY}"}},
        {"api_version": "v1", "extra_headers": {"X-Api-Key": CANARY}},
        {"api_version": "v1", "extra_headers": {"x-tenant": Secret(CANARY)}},
    ):
        text = canonical_request(req(), extra=extra)
        assert CANARY not in text
    # A header that is not a credential changes the answer, so it keys it.
    beta = canonical_request(req(), extra={"extra_headers": {"anthropic-beta": "x", "api-key": CANARY}})
    assert "anthropic-beta" in beta and CANARY not in beta


def test_max_completion_tokens_5_and_500_are_two_answers_on_the_wire(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    loopback.handler = lambda r: ok(f"limit {r.json['max_completion_tokens']}")
    cache = CacheConfig(path=str(tmp_path / "c.sqlite"))
    answers = []
    for limit in (5, 500, 5):
        config = ClientConfig(
            models=("openai/m",),
            api_base=loopback.openai_base,
            api_key=Secret(CANARY),
            extra={"max_completion_tokens": limit},
            cache=cache,
        )
        with Client(config) as client:
            answers.append(client.complete("hi", temperature=0))
    assert [a.content for a in answers] == ["limit 5", "limit 500", "limit 5"]
    assert [a.cached for a in answers] == [False, False, True]
    assert len(loopback.requests) == 2
    assert CANARY.encode() not in (tmp_path / "c.sqlite").read_bytes()
