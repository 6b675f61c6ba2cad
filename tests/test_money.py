"""Money at the edges: budgets over a fallback chain, providers that misreport usage, what each
token kind costs, one pricing module, tpm for big calls, metrics after a fallback or a refresh, and
what the plan says about free servers and budgets too small to learn anything.

Everything that involves a server runs the real LiteLLM over real HTTP against the loopback server.
"""

from __future__ import annotations

import ast
import itertools
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, Secret
from promptlift.cli import main
from promptlift.client.config import Budget, ModelPrice
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.ratelimit import TokenBucket
from promptlift.client.retry import RetryPolicy
from promptlift.errors import AuthenticationFailed, BudgetExceeded, UserError
from promptlift.optimize.config import load_config
from promptlift.optimize.plan import make_plan
from promptlift.pricing import estimate_input_tokens, price_of
from promptlift.testing.server import LoopbackServer, metered, ok, server_error
from promptlift.types import Completion, Usage

KEY = Secret("sk-test-money-00000000")
ONCE = RetryPolicy(max_attempts=1)


def client_for(srv: LoopbackServer, *models: str, **config: object) -> Client:
    return Client(
        ClientConfig(models=models, api_base=srv.openai_base, api_key=KEY, retry=ONCE, **config)  # type: ignore[arg-type]
    )


# -- 1. the worst case is priced at the model that is really called ----------------------------------
def test_a_fallback_to_a_dearer_model_cannot_spend_past_the_cap(loopback: LoopbackServer) -> None:
    loopback.set_default(server_error(), model="cheap")
    loopback.set_default(ok("answer", input_tokens=5, output_tokens=100), model="dear")
    prices = {"openai/cheap": ModelPrice(0.1, 0.1), "openai/dear": ModelPrice(100.0, 100.0)}  # 1,000x
    cap = 0.05
    with client_for(
        loopback,
        "openai/cheap",
        "openai/dear",
        prices=prices,
        budget=Budget(max_cost_usd=cap),
        concurrency=50,
    ) as client:
        requests = [client.request(f"hi {i}", max_tokens=100, temperature=0) for i in range(50)]
        worst = (estimate_input_tokens(requests[0]) + 100) * 100 / 1e6  # at the dear model's price
        results = client.batch(requests)
        ledger = client.budget
    assert ledger is not None
    answered = [r for r in results if isinstance(r, Completion)]
    assert answered and all(r.model == "openai/dear" for r in answered)
    assert all(isinstance(r, BudgetExceeded) for r in results if not isinstance(r, Completion))
    assert sum(r.cost_usd for r in answered) == pytest.approx(ledger.snapshot().spent_usd)
    assert ledger.snapshot().spent_usd <= cap  # on main: 50 calls to the dear model, $0.525
    dear_requests = [r for r in loopback.requests if r.model == "dear"]
    assert len(dear_requests) == len(answered) <= int(cap // worst)
    refused = next(r for r in results if isinstance(r, BudgetExceeded))
    assert "falling back to openai/dear" in str(refused)


# -- 2. providers that report more than max_tokens allows, or no usage at all -------------------------
def test_an_over_reporting_provider_is_charged_warned_about_once_and_stopped(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.set_default(ok("long", input_tokens=5, output_tokens=2000))  # 200x max_tokens
    prices = {"openai/m": ModelPrice(1000.0, 1000.0)}
    with (
        client_for(loopback, "openai/m", prices=prices, budget=Budget(max_cost_usd=1.0)) as client,
        caplog.at_level(logging.WARNING, logger="promptlift"),
    ):
        first = client.complete("hi", max_tokens=10, temperature=0)
        for i in range(2):
            with pytest.raises(BudgetExceeded):
                client.complete(f"again {i}", max_tokens=10, temperature=0)
    assert first.cost_usd == pytest.approx(2005 * 1e-3)  # what the provider reported is what it bills
    assert len(loopback.requests) == 1  # nothing more was sent once the ledger was over
    told = [r.getMessage() for r in caplog.records if "overshot" in r.getMessage()]
    assert len(told) == 1  # on main: none
    assert "$1.005000 over the cap of $1.000000" in told[0] and "2000 output tokens" in told[0]


def test_a_200_without_usage_counts_at_the_worst_case_not_at_zero(loopback: LoopbackServer) -> None:
    loopback.set_default(metered(ok("an answer"), report_usage=False))
    prices = {"openai/m": ModelPrice(1.0, 1.0)}
    with client_for(loopback, "openai/m", prices=prices) as client:
        request = client.request("hi", max_tokens=10, temperature=0)
        worst = (estimate_input_tokens(request) + 10) / 1e6
    with client_for(loopback, "openai/m", prices=prices, budget=Budget(max_cost_usd=3.5 * worst)) as client:
        answers = []
        for _ in range(4):
            try:
                answers.append(client.complete("hi", max_tokens=10, temperature=0.5))
            except BudgetExceeded:
                break
        ledger = client.budget
    assert ledger is not None and len(answers) == 3 and len(loopback.requests) == 3
    first = answers[0]
    assert not first.usage.reported and first.usage.output_tokens == 10
    assert first.cost_usd == pytest.approx(worst)  # on main: $0, and the cap never bound
    assert ledger.snapshot().spent_usd == pytest.approx(3 * worst)


# -- 3. cache writes and reasoning tokens, one pricing module ------------------------------------------
def test_anthropic_cache_writes_are_billed_at_their_own_rate(loopback: LoopbackServer) -> None:
    loopback.set_default(
        metered(
            ok("hi there", input_tokens=1000, output_tokens=50), cached_tokens=100, cache_write_tokens=600
        )
    )
    config = ClientConfig(
        models=("anthropic/claude-sonnet-4-5",), api_base=loopback.url, api_key=KEY, retry=ONCE
    )
    with Client(config) as client:
        answer = client.complete("hi", max_tokens=64, temperature=0)
    assert answer.usage == Usage(1000, 50, cached_tokens=100, cache_write_tokens=600)
    # $3/M input, $0.30/M cache reads, $3.75/M cache writes (1.25x), $15/M output
    assert answer.cost_usd == pytest.approx((300 * 3 + 100 * 0.3 + 600 * 3.75 + 50 * 15) / 1e6)


def test_reasoning_tokens_have_a_field_and_a_rate_of_their_own(loopback: LoopbackServer) -> None:
    loopback.set_default(metered(ok("42", input_tokens=20, output_tokens=50), reasoning_tokens=40))
    with client_for(loopback, "openai/o3-mini") as client:
        answer = client.complete("think", max_tokens=64, temperature=1)
    assert answer.usage.reasoning_tokens == 40 and answer.usage.output_tokens == 50
    assert answer.cost_usd == pytest.approx((20 * 1.1 + 50 * 4.4) / 1e6)  # the map: reasoning at output rate
    priced = ModelPrice(1.0, 2.0, reasoning_per_mtok=8.0)
    assert priced.cost(answer.usage) == pytest.approx((20 * 1 + 10 * 2 + 40 * 8) / 1e6)
    assert Completion.from_dict(answer.to_dict()).usage == answer.usage  # the cache and run store keep it


def test_the_planner_reads_prices_without_litellm_or_the_provider_layer(tmp_path: Path) -> None:
    plan_source = Path(__file__).parents[1] / "src" / "promptlift" / "optimize" / "plan.py"
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(plan_source.read_text()))
        if isinstance(node, ast.ImportFrom)
    ]
    assert not [m for m in imported if m.startswith(("promptlift.providers", "litellm"))]
    path = write_config(tmp_path, "model: openai/gpt-4o-mini\noptimizer: {name: fewshot}\n")
    code = (
        "import sys\n"
        "from promptlift.optimize.config import load_config\n"
        "from promptlift.optimize.plan import make_plan\n"
        f"plan = make_plan(load_config({str(path)!r}))\n"
        "assert plan.paid and plan.cost_usd[1] > 0, plan.cost_usd\n"  # priced from LiteLLM's map
        "assert 'litellm' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert price_of("openai/gpt-4o-mini") == ModelPrice(0.15, 0.6, 0.075, None, None)


# -- 4. tpm for calls larger than the bucket -------------------------------------------------------------
def test_calls_larger_than_the_bucket_put_it_in_debt() -> None:
    now = [100.0]
    bucket = TokenBucket(rate_per_s=6000 / 60, capacity=6000 / 60, clock=lambda: now[0])  # tpm 6000
    waits = [bucket.take(1010) for _ in range(5)]
    # each goes once the bucket is full again after the one before; on main: 0, 1, 2, 3, 4 s
    assert waits == pytest.approx([0.0, 10.1, 20.2, 30.3, 40.4])
    now[0] += 40.4
    assert bucket.take(1) == pytest.approx(9.1 + 0.01)  # the last big call's debt is still owed


# -- 5. metrics after a fallback and after a credential refresh ------------------------------------------
def test_metrics_bill_the_model_that_answered(loopback: LoopbackServer) -> None:
    loopback.set_default(server_error(), model="a")
    loopback.set_default(ok("b here", input_tokens=7, output_tokens=3), model="b")
    prices = {"openai/a": ModelPrice(1.0, 1.0), "openai/b": ModelPrice(10.0, 10.0)}
    with client_for(loopback, "openai/a", "openai/b", prices=prices) as client:
        answer = client.complete("hi", max_tokens=5, temperature=0)
        snap = client.metrics_snapshot()
    assert answer.model == "openai/b" and answer.fallback_used
    a, b = snap.models["openai/a"], snap.models["openai/b"]
    assert (a.calls, a.fallbacks, a.input_tokens, a.output_tokens, a.cost_usd) == (1, 1, 0, 0, 0.0)
    assert (b.input_tokens, b.output_tokens) == (7, 3) and b.cost_usd == pytest.approx(100 / 1e6)
    assert snap.total.cost_usd == pytest.approx(answer.cost_usd)


def test_attempts_count_the_request_a_credential_refresh_made(loopback: LoopbackServer) -> None:
    loopback.require_key("fresh-key-0000000002")
    keys = itertools.chain(["stale-key-0000000001"], itertools.repeat("fresh-key-0000000002"))
    config = ClientConfig(
        models=("openai/m",),
        api_base=loopback.openai_base,
        retry=ONCE,
        credential_provider=lambda _: next(keys),
    )
    with Client(config) as client:
        answer = client.complete("hi", max_tokens=5, temperature=0)
        snap = client.metrics_snapshot()
    assert len(loopback.requests) == 2
    assert answer.attempts == 2  # on main: 1
    assert snap.total.attempts == 2 and snap.total.attempt_errors == {"AuthenticationFailed": 1}


def test_attempts_count_a_refresh_that_is_refused_too(loopback: LoopbackServer) -> None:
    loopback.require_key("a-key-nobody-has-0003")
    config = ClientConfig(
        models=("openai/m",),
        api_base=loopback.openai_base,
        retry=ONCE,
        fallback=FallbackPolicy(failure_threshold=0),
        credential_provider=lambda _: "never-right-00000004",
    )
    with Client(config) as client:
        with pytest.raises(AuthenticationFailed) as failed:
            client.complete("hi", max_tokens=5, temperature=0)
        snap = client.metrics_snapshot()
    assert len(loopback.requests) == 2 and failed.value.attempts == 2 and snap.total.attempts == 2


# -- 6 and 7. what the plan says ----------------------------------------------------------------------------
def write_config(tmp_path: Path, body: str) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"text": "word{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(40)))
    path = tmp_path / "config.yaml"
    path.write_text(
        "prompt: {system: 'Label it.', user: 'Text: {text}\\nLabel:', params: {max_tokens: 4}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\n" + body
    )
    return path


def test_a_server_priced_at_zero_is_not_called_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "model: openai/my-server\napi_base: http://127.0.0.1:9/v1\nprices: {openai/my-server: [0, 0]}\n"
    path = write_config(tmp_path, body + "optimizer: {name: fewshot}\n")
    plan = make_plan(load_config(path))
    assert plan.cost_usd == (0.0, 0.0) and not plan.paid
    assert plan.cost_text() == "$0 (openai/my-server priced at $0)"
    assert main(["optimize", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "local" not in out and "openai/my-server priced at $0" in out


def test_a_budget_too_small_for_one_candidate_is_refused_before_any_call(
    tmp_path: Path, loopback: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # 40 rows: validation 10, test 10. The starting prompt on both, one candidate and the best on
    # test take 40 calls; with 30 the run would spend 20 and could never try a candidate.
    served = f"model: openai/m\napi_base: {loopback.openai_base}\nprices: {{openai/m: [0, 0]}}\n"
    path = write_config(tmp_path, served + "optimizer: {name: fewshot}\nbudget: {max_calls: 30}\n")
    plan = make_plan(load_config(path))
    assert len(plan.problems) == 1 and "at least 40" in plan.problems[0]
    assert "error: the budget is too small for one candidate" in plan.render()
    with pytest.raises(UserError, match="too small for one candidate"):
        plan.check()
    assert main(["optimize", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("promptlift: warning:")]
    assert len(errors) == 1 and "raise budget.max_calls to at least 40" in errors[0]
    assert main(["optimize", str(path), "--yes"]) == 2  # on main: ran, spent 20 calls, tried nothing
    assert loopback.requests == []
    enough = write_config(tmp_path, served + "optimizer: {name: fewshot}\nbudget: {max_calls: 40}\n")
    assert make_plan(load_config(enough)).problems == ()


def test_a_cost_cap_too_small_for_one_candidate_is_a_plan_problem(tmp_path: Path) -> None:
    body = "model: openai/gpt-4o-mini\noptimizer: {name: fewshot}\nbudget: {max_cost_usd: 0.000001}\n"
    plan = make_plan(load_config(write_config(tmp_path, body)))
    assert len(plan.problems) == 1 and "max_cost_usd" in plan.problems[0]
