"""A 200 whose ``choices`` list is empty: a typed, retryable error, on the wire."""

from __future__ import annotations

import pytest

from promptlift import Client, ClientConfig, Secret
from promptlift.errors import ProviderUnavailable
from promptlift.testing.replies import empty_choices
from promptlift.testing.server import LoopbackServer, ok

CANARY = "sk-canary-empty-0123456789abcdef"


def test_an_empty_choices_answer_is_retried_as_a_malformed_response(loopback: LoopbackServer) -> None:
    loopback.script(empty_choices(), ok("second time"), model="x")
    config = ClientConfig(models=("openai/x",), api_base=loopback.openai_base, api_key=Secret(CANARY))
    with Client(config) as client:
        answer = client.complete("hi", temperature=0)
        assert answer.content == "second time" and answer.attempts == 2
        loopback.set_default(empty_choices())
        with pytest.raises(ProviderUnavailable, match="no choices"):
            client.complete("again", temperature=0)
