"""A long run shows degraded providers in its progress lines: the errors since the previous line,
not since the start, so a line is flagged while the trouble lasts and clean once it is over."""

from __future__ import annotations

import itertools

import pytest

from promptlift import Client, ClientConfig
from promptlift.cli.progress import Progress
from promptlift.client.health import EndpointHealth, since
from promptlift.client.retry import RetryPolicy
from promptlift.errors import PromptliftError, ProviderUnavailable
from promptlift.optimize import Budget, ExactMatch, FewShot, Prompt, RunSettings
from promptlift.optimize.stop import Progress as RunProgress
from promptlift.testing import FunctionProvider
from promptlift.testing.conformance import TASK_MODEL, synthetic_model, synthetic_splits
from promptlift.types import CompletionRequest


def health(calls: int, failed: int, breaker: str = "closed") -> list[EndpointHealth]:
    errors = {"ProviderUnavailable": failed} if failed else {}
    return [
        EndpointHealth(
            model="openai/x", endpoint="", calls=calls, failed=failed, errors=errors, breaker=breaker
        )
    ]


def test_health_since_counts_only_the_calls_in_between() -> None:
    (recent,) = since(health(100, 40), health(150, 40))
    assert (recent.calls, recent.failed, recent.errors) == (50, 0, {}) and not recent.degraded
    (recent,) = since(health(100, 0), health(110, 5))
    assert recent.errors == {"ProviderUnavailable": 5} and "50% of 10 calls failed" in recent.degraded
    (recent,) = since(health(100, 0), health(100, 0, breaker="open"))
    assert recent.degraded.startswith("breaker open")  # no call in between, still shown


def test_log_lines_flag_a_round_with_failures_and_not_the_next(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(Budget(max_calls=1000), enabled=True, terminal=False)
    rounds = [(0, health(10, 0)), (1, health(20, 6)), (2, health(40, 6)), (3, health(50, 6))]
    for n, (rnd, h) in enumerate(rounds):
        p = RunProgress(calls=h[0].calls, rounds=rnd, best_score=0.5)
        progress.on_event("candidate", {"progress": p, "best": None, "health": h, "n": n})
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert ["DEGRADED" in line for line in lines] == [False, True, False, False]
    assert "openai/x: 60% of 10 calls failed (mostly ProviderUnavailable)" in lines[1]


def test_a_real_run_with_a_provider_failing_shows_it_in_a_progress_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    counter = itertools.count()

    def flaky(request: CompletionRequest) -> str | PromptliftError:
        if 20 <= next(counter) < 40:  # an outage in the middle of the run, saved by retries
            return ProviderUnavailable("overloaded", provider="scripted", model=request.model)
        return synthetic_model(request)

    progress = Progress(Budget(max_calls=400), enabled=True, terminal=False)
    config = ClientConfig(models=(TASK_MODEL,), retry=RetryPolicy(max_attempts=30, initial_wait=0.001))
    with Client(config, provider=FunctionProvider(flaky)) as client:
        prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
        FewShot(answer_field="label", trials=6).optimize(
            prompt, synthetic_splits(), ExactMatch("label"), client=client,
            settings=RunSettings(budget=Budget(max_calls=400), on_event=progress.on_event),
        )  # fmt: skip
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    flagged = [line for line in lines if "DEGRADED" in line]
    assert flagged and len(flagged) < len(lines), lines  # during the outage, not for ever after
    assert "attempts failed (mostly ProviderUnavailable), retried" in flagged[0]
    assert "DEGRADED" not in lines[-1]
