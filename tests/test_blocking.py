"""The blocking APIs work inside a running event loop (a notebook cell, an async handler), where
``asyncio.run`` would refuse to start, and give the same results as outside one."""

from __future__ import annotations

import asyncio

import pytest

from promptlift import Client, ClientConfig, errors
from promptlift.blocking import run_blocking
from promptlift.client.config import Budget
from promptlift.optimize.optimizers import FewShot
from promptlift.testing import FunctionProvider
from promptlift.testing.conformance import TASK_MODEL, OptimizerConformance


class _FewShot(OptimizerConformance):
    def make_optimizer(self):  # type: ignore[no-untyped-def]
        return FewShot(answer_field="label", max_demos=2, trials=3)


def test_optimize_from_inside_a_running_loop_gives_the_same_result() -> None:
    outside, _ = _FewShot().run(seed=3)

    async def notebook_cell():  # type: ignore[no-untyped-def]
        return _FewShot().run(seed=3)  # a sync call, as a user types it in a cell

    inside, provider = asyncio.run(notebook_cell())
    assert inside.best_test.mean == outside.best_test.mean and inside.best.prompt == outside.best.prompt
    assert [c.prompt for c in inside.history] == [c.prompt for c in outside.history]
    assert provider.requests  # it really ran


def test_a_budget_scope_opened_by_the_caller_holds_inside() -> None:
    client = Client(ClientConfig(models=(TASK_MODEL,)), provider=FunctionProvider(lambda r: "ok"))

    async def two_calls() -> None:
        await client.acomplete("one")
        await client.acomplete("two")

    async def cell() -> None:
        with client.budget_scope(Budget(max_calls=1)):
            run_blocking(two_calls())

    with client, pytest.raises(errors.BudgetExceeded):
        asyncio.run(cell())


def test_an_error_inside_is_raised_to_the_caller_as_is() -> None:
    async def fails() -> None:
        raise errors.ConfigError("bad setting")

    async def cell() -> None:
        run_blocking(fails())

    with pytest.raises(errors.ConfigError, match="bad setting"):
        asyncio.run(cell())
    with pytest.raises(errors.ConfigError, match="bad setting"):
        run_blocking(fails())  # and outside a loop


def test_an_interrupt_while_waiting_cancels_the_run_instead_of_waiting_for_it() -> None:
    import signal
    import threading
    import time

    seen: dict[str, float | bool] = {}

    async def long_run() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    async def cell() -> None:
        run_blocking(long_run())

    # A notebook's loop, as ipykernel runs it: no asyncio.Runner turning Ctrl-C into a cancellation
    # of a task that cannot run while the cell blocks; Ctrl-C is a KeyboardInterrupt in the cell.
    loop = asyncio.new_event_loop()
    timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))  # Ctrl-C, 0.3 s in
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
    finally:
        timer.cancel()
        loop.close()
    seen["seconds"] = time.monotonic() - started
    assert seen["cancelled"] is True and seen["seconds"] < 10  # not the run's 30 s


def test_the_runs_own_timeout_error_is_raised_not_mistaken_for_the_wait() -> None:
    async def times_out() -> None:
        raise TimeoutError("the run's own")

    async def cell() -> None:
        run_blocking(times_out())

    with pytest.raises(TimeoutError, match="the run's own"):
        asyncio.run(cell())


def test_one_budget_class_keyword_only_for_clients_scopes_and_runs() -> None:
    import dataclasses

    import promptlift
    from promptlift.client.budget import BudgetLedger
    from promptlift.optimize import Budget as RunBudget

    assert promptlift.Budget is Budget is RunBudget
    with pytest.raises(TypeError):
        Budget(10)  # type: ignore[misc]  # positions would mean different caps in different places
    with pytest.raises(errors.ConfigError, match=r"max_minutes.*wall clock"):
        BudgetLedger(Budget(max_minutes=5))
    assert {f.name for f in dataclasses.fields(Budget)} >= {
        "max_calls",
        "max_cost_usd",
        "max_tokens",
        "max_minutes",
    }


def test_a_runs_token_cap_holds_over_every_call_it_sends() -> None:
    from promptlift import Completion, Usage
    from promptlift.testing.conformance import synthetic_model

    class Counted(_FewShot):
        def model(self, request):  # type: ignore[no-untyped-def]
            answer = synthetic_model(request)
            return Completion(str(answer), request.model, "function", usage=Usage(40, 10))

    result, provider = Counted().run(budget=Budget(max_calls=400, max_tokens=1500))
    assert len(provider.requests) * 50 <= 1500  # every call sent fit under the cap
    assert result.stop_reason != "completed", result.stop_reason
    _, more = Counted().run(budget=Budget(max_calls=400))
    assert len(more.requests) > len(provider.requests)  # the cap, not the search, stopped it


def test_the_models_are_named_once_in_the_client() -> None:
    from promptlift.optimize import RunSettings
    from promptlift.optimize.metrics import ExactMatch
    from promptlift.optimize.prompt import Prompt
    from promptlift.testing.conformance import synthetic_splits

    def model(request):  # type: ignore[no-untyped-def]
        seen.append(request.model)
        return "short"

    seen: list[str] = []
    client = Client(ClientConfig(models=("scripted/only",)), provider=FunctionProvider(model))
    with client:
        result = FewShot(answer_field="label", max_demos=1, trials=1).optimize(
            Prompt(user="Word: {text}\nLength:"), synthetic_splits(), ExactMatch("label"), client=client
        )
    assert (result.task_model, result.reasoning_model) == ("scripted/only", "scripted/only")
    assert set(seen) == {"scripted/only"}
    assert RunSettings(reasoning_model="other").for_client(client).reasoning_model == "other"


def test_one_import_for_the_common_names_and_import_promptlift_stays_cheap() -> None:
    import subprocess
    import sys

    import promptlift

    for name in promptlift._OPTIMIZE_NAMES:
        assert getattr(promptlift, name) is getattr(__import__("promptlift.optimize").optimize, name), name
    with pytest.raises(AttributeError, match="no attribute 'Prompts'"):
        promptlift.Prompts  # noqa: B018
    code = "import sys, promptlift; print('litellm' in sys.modules, 'promptlift.optimize' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
