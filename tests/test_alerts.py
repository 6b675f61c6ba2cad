"""Suspicious activity is flagged, once each, in the log and in a run's summary: a burst of
authentication failures on one model, a request refused for a host not in allowed_hosts, spend
running faster than the run's plan."""

from __future__ import annotations

import logging

import pytest

from promptlift import Client, ClientConfig
from promptlift.client.alerts import pace
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.errors import AuthenticationFailed, HostNotAllowed, PromptliftError
from promptlift.optimize import Budget, ExactMatch, FewShot, Prompt, RunSettings
from promptlift.pricing import ModelPrice
from promptlift.testing import FunctionProvider
from promptlift.testing.conformance import TASK_MODEL, synthetic_model, synthetic_splits
from promptlift.testing.replies import unauthorized
from promptlift.testing.server import LoopbackServer
from promptlift.types import CompletionRequest

KEY = "sk-test-alerts-not-a-real-key-001"


def suspicious(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("suspicious: ")]


def test_a_burst_of_rejected_keys_is_flagged_once_over_http(caplog: pytest.LogCaptureFixture) -> None:
    with LoopbackServer() as server, caplog.at_level(logging.WARNING, logger="promptlift"):
        server.set_default(unauthorized())
        config = ClientConfig(
            models=("openai/m",),
            api_base=server.openai_base,
            api_key=KEY,
            retry=RetryPolicy(max_attempts=1),
            fallback=FallbackPolicy(failure_threshold=0),
        )  # no breaker: every call is sent
        with Client(config) as client:
            for i in range(2):
                with pytest.raises(AuthenticationFailed):
                    client.complete(f"q{i}")
            assert client.alerts() == []  # two are not a burst
            for i in range(2, 6):
                with pytest.raises(AuthenticationFailed):
                    client.complete(f"q{i}")
            alerts = client.alerts()
    assert len(alerts) == 1 and "authentication failures on openai/m within 60 s" in alerts[0]
    assert suspicious(caplog) == [f"suspicious: {alerts[0]}"]  # logged once, not once a call
    assert KEY not in alerts[0] and all(KEY not in r.getMessage() for r in caplog.records)


def test_a_request_for_a_host_not_allowed_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with LoopbackServer() as server, caplog.at_level(logging.WARNING, logger="promptlift"):
        config = ClientConfig(
            models=("openai/m",), api_base=server.openai_base, api_key=KEY, transport="native",
            allowed_hosts=("127.0.0.1",),
        )  # fmt: skip
        with Client(config) as client:
            for _ in range(2):
                with pytest.raises(HostNotAllowed):
                    client.complete(client.request("q", api_base="http://exfil.example/v1"))
            alerts = client.alerts()
        assert server.requests == []  # nothing was sent anywhere
    assert len(alerts) == 1 and "'exfil.example'" in alerts[0]
    assert len(suspicious(caplog)) == 1


def test_a_runs_summary_carries_the_alerts_raised_during_it() -> None:
    def first_key_revoked(request: CompletionRequest) -> str | PromptliftError:
        if request.model == "scripted/revoked":
            return AuthenticationFailed("the key was revoked", provider="scripted", model=request.model)
        return synthetic_model(request.replace(model=TASK_MODEL))

    provider = FunctionProvider(first_key_revoked)
    config = ClientConfig(models=("scripted/revoked", TASK_MODEL), retry=RetryPolicy(max_attempts=1))
    with Client(config, provider=provider) as client:
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        result = FewShot(answer_field="label", trials=2).optimize(
            prompt, synthetic_splits(), ExactMatch("label"), client=client,
            settings=RunSettings(budget=Budget(max_calls=400)),
        )  # fmt: skip
    assert any("authentication failures on scripted/revoked" in a for a in result.alerts), result.alerts
    assert result.summary()["alerts"] == list(result.alerts)


def test_pace_is_judged_only_after_enough_calls_and_at_twice_the_plan() -> None:
    assert pace(10, 1.0, planned_calls=100, planned_cost_usd=0.01) is None  # too few calls to judge
    assert pace(30, 0.005, planned_calls=100, planned_cost_usd=0.01) is None  # 1.7x: within the margin
    why = pace(30, 0.009, planned_calls=100, planned_cost_usd=0.01)  # 3x the plan's high estimate
    assert why is not None and "3.0x faster than planned" in why and "max_cost_usd" in why
    assert pace(1000, 5.0, planned_calls=100, planned_cost_usd=0.0) is None  # a free plan: nothing to pace


def paid_run(planned: tuple[int, float] | None) -> tuple[list[str], float, int]:
    """A few-shot run on a model priced at $1/$2 per million tokens, watched against ``planned``."""
    config = ClientConfig(
        models=(TASK_MODEL,), prices={TASK_MODEL: ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)}
    )
    with Client(config, provider=FunctionProvider(synthetic_model)) as client:
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        result = FewShot(answer_field="label", trials=4).optimize(
            prompt, synthetic_splits(), ExactMatch("label"), client=client,
            settings=RunSettings(budget=Budget(max_calls=400), planned=planned),
        )  # fmt: skip
    return list(result.alerts), result.spend.cost_usd, result.spend.calls


def test_a_run_spending_faster_than_its_plan_is_flagged_once(caplog: pytest.LogCaptureFixture) -> None:
    _, cost, calls = paid_run(None)
    assert cost > 0 and calls >= 40
    with caplog.at_level(logging.WARNING, logger="promptlift"):
        alerts, _, _ = paid_run((calls, cost / 10))  # the plan said a tenth of what it costs
    (alert,) = [a for a in alerts if "faster than planned" in a]
    assert len([m for m in suspicious(caplog) if "faster than planned" in m]) == 1  # once, not per call
    assert not [a for a in paid_run((calls, cost * 1.2))[0] if "faster than planned" in a]  # on plan
    assert alert.startswith("spend runs ")
