"""Programs: the user's callable over named prompts — sync and async, its trace, its feedback, its
mistakes (an unknown prompt, a missing field, more calls than declared, a raise) — and the YAML
that names one."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from promptlift import Client, ClientConfig
from promptlift.errors import ConfigError, TemplateError, UserError
from promptlift.optimize import Dataset, Evaluator, Prompt
from promptlift.optimize.config import load_config
from promptlift.optimize.evaluation import PROGRAM_FAILED, Evaluation, RowResult
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.program import Calls, InvalidAnswer, Output, Program, PromptCall, trace_demos
from promptlift.testing import FunctionProvider, GatedProvider
from promptlift.types import CompletionRequest

DATA = Dataset.from_records([{"text": w, "label": str(len(w))} for w in ["ab", "abc", "abcd", "abcde"]])
PROMPTS = {
    "upper": Prompt(user="Upper: {text}", system="Shout."),
    "count": Prompt(user="Count: {text}", system="Count."),
}


def model(request: CompletionRequest) -> str:
    user = request.messages[-1].text
    kind, _, text = user.partition(": ")
    return text.upper() if kind == "Upper" else str(len(text))


def sync_program(row: dict[str, Any], lm: Calls) -> str:
    loud = lm.call("upper", text=row["text"])
    return lm.call("count", text=loud)


async def async_program(row: dict[str, Any], lm: Calls) -> str:
    loud = await lm.acall("upper", text=row["text"])
    return await lm.acall("count", text=loud)


def evaluate(program: Program, fn=model, metric=None, provider=None) -> Evaluation:  # type: ignore[no-untyped-def]
    provider = provider or FunctionProvider(fn)
    with Client(ClientConfig(models=("scripted/m",), concurrency=4), provider=provider) as client:
        return asyncio.run(Evaluator(client, metric or ExactMatch("label")).evaluate(program, DATA))


@pytest.mark.parametrize("fn", [sync_program, async_program], ids=["sync", "async"])
def test_a_program_is_scored_on_its_output_and_keeps_each_call_in_its_trace(fn) -> None:  # type: ignore[no-untyped-def]
    evaluation = evaluate(Program(PROMPTS, fn))
    assert evaluation.mean == 1.0 and evaluation.spend.calls == 8
    for row, word in zip(evaluation.rows, ["ab", "abc", "abcd", "abcde"], strict=True):
        assert row.trace == (
            PromptCall("upper", {"text": word}, word.upper()),
            PromptCall("count", {"text": word.upper()}, str(len(word))),
        )
        assert row.steps == 2
        assert RowResult.from_dict(json.loads(json.dumps(row.to_dict()))) == row  # the store's round trip


def test_sync_programs_run_side_by_side_on_threads_of_their_own() -> None:
    # Four rows, four workers: every row's first call is held until all four are in flight, so a
    # sync program that blocked the loop (or ran one at a time) would never get there.
    gated = GatedProvider(
        model, until=4, gate=lambda r: r.messages[-1].text.startswith("Upper"), timeout=10.0
    )
    evaluation = evaluate(Program(PROMPTS, sync_program), provider=gated)
    assert evaluation.mean == 1.0
    assert gated.peak >= 4


def test_an_async_program_calling_the_sync_form_is_told_to_await() -> None:
    async def wrong(row: dict[str, Any], lm: Calls) -> str:
        return lm.call("upper", text=row["text"])

    with pytest.raises(UserError, match=r"must `await lm.acall"):
        evaluate(Program(PROMPTS, wrong))


def test_calling_a_prompt_the_program_was_not_given_names_the_ones_it_has() -> None:
    def typo(row: dict[str, Any], lm: Calls) -> str:
        return lm.call("uper", text=row["text"])

    with pytest.raises(UserError, match=r"'uper', which it was not given \(prompts: upper, count\)"):
        evaluate(Program(PROMPTS, typo))


def test_a_call_missing_a_field_its_template_uses_is_refused_before_it_is_sent() -> None:
    sent: list[CompletionRequest] = []

    def record(request: CompletionRequest) -> str:
        sent.append(request)
        return model(request)

    def forgetful(row: dict[str, Any], lm: Calls) -> str:
        return lm.call("upper", txt=row["text"])

    with pytest.raises(TemplateError, match=r"without text, which its templates use"):
        evaluate(Program(PROMPTS, forgetful), fn=record)
    assert sent == []


def test_a_declared_calls_per_row_is_held() -> None:
    def greedy(row: dict[str, Any], lm: Calls) -> str:
        for _ in range(3):
            lm.call("upper", text=row["text"])
        return "x"

    with pytest.raises(UserError, match=r"more model calls on one row than its calls_per_row \(2\)"):
        evaluate(Program(PROMPTS, greedy, calls_per_row_declared=2))
    assert Program(PROMPTS, greedy, calls_per_row_declared=3).calls_per_row == 3
    assert Program(PROMPTS, greedy).calls_per_row == 2  # undeclared: one call per prompt, until measured
    assert Program(PROMPTS, greedy).measured(5).calls_per_row == 5


def test_a_program_that_raises_on_one_row_scores_it_zero_and_keeps_its_calls() -> None:
    def fragile(row: dict[str, Any], lm: Calls) -> str:
        loud = lm.call("upper", text=row["text"])
        if row["text"] == "abc":
            raise ValueError("cannot parse " + loud)
        return lm.call("count", text=loud)

    evaluation = evaluate(Program(PROMPTS, fragile))
    broken = evaluation.rows[1]
    assert broken.score == 0.0 and broken.reason == PROGRAM_FAILED
    assert broken.error == "ValueError: cannot parse ABC"
    assert [c.prompt for c in broken.trace] == ["upper"]
    assert [r.score for r in evaluation.rows] == [1.0, 0.0, 1.0, 1.0]


def test_a_program_that_raises_on_every_row_fails_loudly() -> None:
    def broken(row: dict[str, Any], lm: Calls) -> str:
        raise KeyError("question")

    with pytest.raises(UserError, match=r"the program raised on every row: KeyError: 'question'"):
        evaluate(Program(PROMPTS, broken))


def test_feedback_and_structured_outputs() -> None:
    def explained(row: dict[str, Any], lm: Calls) -> Output:
        count = lm.call("count", text=row["text"])
        return Output({"n": count}, feedback=f"counted {row['text']!r}")

    def metric(row: Any, output: str) -> float:
        return float(json.loads(output)["n"] == row["label"])

    from promptlift.optimize.metrics import FunctionMetric

    evaluation = evaluate(Program(PROMPTS, explained), metric=FunctionMetric(metric))
    assert evaluation.mean == 1.0
    assert evaluation.rows[0].output == '{"n": "2"}'  # a mapping is scored as its JSON
    assert evaluation.rows[0].reason == "counted 'ab'"  # what reflection reads beside the metric's


def test_components_are_named_per_prompt_and_replaced_one_at_a_time() -> None:
    program = Program(PROMPTS, sync_program)
    assert program.components() == {
        "upper.system": "Shout.",
        "upper.user": "Upper: {text}",
        "count.system": "Count.",
        "count.user": "Count: {text}",
    }
    changed = program.with_component("count.system", "Count the letters.")
    assert changed.prompts["count"].system == "Count the letters."
    assert changed.prompts["upper"] == program.prompts["upper"]
    assert changed.key() != program.key() and program.measured(3).key() == program.key()
    with pytest.raises(KeyError, match="no prompt 'answer'"):
        program.with_component("answer.system", "x")


def test_trace_demos_come_from_rows_that_scored_well_each_distinct_call_once() -> None:
    good = (PromptCall("upper", {"text": "a"}, "A"), PromptCall("count", {"text": "A"}, "1"))
    bad = (PromptCall("upper", {"text": "b"}, "B"), PromptCall("count", {"text": "B"}, "7"))
    demos = trace_demos([(1.0, good), (0.0, bad), (1.0, good)], "count")
    assert [(dict(d.fields), d.answer) for d in demos] == [({"text": "A"}, "1")]


def test_a_program_needs_named_prompts_and_a_callable() -> None:
    with pytest.raises(ConfigError, match="at least one named prompt"):
        Program({}, sync_program)
    with pytest.raises(ConfigError, match="plain name"):
        Program({"two words": PROMPTS["upper"]}, sync_program)
    with pytest.raises(ConfigError, match="not a Prompt"):
        Program({"upper": "Upper: {text}"}, sync_program)  # type: ignore[dict-item]


# -- YAML ------------------------------------------------------------------------------------------
def write_config(folder: Path, body: str, program: str = "", module: str = "mine") -> Path:
    """A config, its data and its program module (a name per test: Python imports a module once)."""
    (folder / "data.jsonl").write_text("".join(json.dumps(r.fields) + "\n" for r in DATA), encoding="utf-8")
    (folder / f"{module}.py").write_text(
        program
        or textwrap.dedent(
            """
            def run(row, lm):
                return lm.call("count", text=lm.call("upper", text=row["text"]))
            """
        ),
        encoding="utf-8",
    )
    path = folder / "config.yaml"
    path.write_text(body.replace("mine:", f"{module}:"), encoding="utf-8")
    return path


PROGRAM_CONFIG = textwrap.dedent(
    """
    model: openai/m
    program: "mine:run"
    prompts:
      upper: {system: Shout., user: "Upper: {text}"}
      count: {system: Count., user: "Count: {text}"}
    dataset: {path: data.jsonl}
    metric: {type: exact_match, field: label}
    optimizer: {name: fewshot}
    """
)


def test_a_program_config_loads_with_its_module_from_beside_the_config(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, PROGRAM_CONFIG + "calls_per_row: 2\n", module="beside"))
    program = config.prompt
    assert isinstance(program, Program)
    assert program.ref == "beside:run" and list(program.prompts) == ["upper", "count"]
    assert program.calls_per_row == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("program: \"mine:run\"", "program: mine"), "`program` must be 'module:function'"),
        (("program: \"mine:run\"", "program: \"mine:walk\""), "'mine:walk': mine has no function 'walk'"),
        (("program: \"mine:run\"", "program: \"nowhere:run\""), "cannot import 'nowhere'"),
        (("  count: {system: Count., user: \"Count: {text}\"}\n", "  count: {system: Count.}\n"),
         "`prompts.count.user` is missing"),
        (("  count: {system: Count., user: \"Count: {text}\"}\n", "  count: {sytem: x, user: y}\n"),
         "prompts.count"),
        (("  upper:", "  two words:"), "name 'two words' is not a plain name"),
        (("prompts:\n", "prompt: {user: x}\nprompts:\n"), "give `prompt:` (one prompt) or `program:`"),
        (("program: \"mine:run\"\n", ""), "`prompts` belongs to a program"),
        (("dataset:", "calls_per_row: 0\ndataset:"), "`calls_per_row` must be a whole number"),
    ],
)  # fmt: skip
def test_a_malformed_program_config_is_one_line_naming_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    body = PROGRAM_CONFIG
    old, new = change
    assert old in body
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, body.replace(old, new, 1)))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_program_with_the_wrong_signature_is_refused_at_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, PROGRAM_CONFIG, program="def run(row):\n    return row\n", module="one_arg")
    with pytest.raises(ConfigError, match=r"write it as `def run\(row, lm\)`"):
        load_config(path)


def test_a_cancelled_evaluation_ends_a_sync_programs_thread_and_sends_nothing_more() -> None:
    import threading
    import time

    sent: list[str] = []
    finished = threading.Event()

    async def hangs(request: CompletionRequest) -> str:
        sent.append(request.messages[-1].text)
        await asyncio.sleep(60)
        return "never"

    def patient(row: dict[str, Any], lm: Calls) -> str:
        try:
            lm.call("upper", text=row["text"])
            return lm.call("count", text="again")  # must never be sent
        finally:
            finished.set()

    class Hanging(FunctionProvider):
        async def acomplete(self, request: CompletionRequest):  # type: ignore[no-untyped-def]
            return await hangs(request)

    async def cancelled() -> None:
        with Client(ClientConfig(models=("scripted/m",), concurrency=1), provider=Hanging(model)) as client:
            task = asyncio.ensure_future(
                Evaluator(client, ExactMatch("label")).evaluate(Program(PROMPTS, patient), DATA)
            )
            while not sent:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The loop goes on (a notebook's, a server's): the thread must end while it runs.
            ended = await asyncio.get_running_loop().run_in_executor(None, finished.wait, 5)
            assert ended, "the program's thread is still waiting on a call that will never come"
            await asyncio.sleep(0.3)

    started = time.monotonic()
    asyncio.run(cancelled())
    assert time.monotonic() - started < 10
    assert sent == ["Upper: ab"]


def test_a_stored_program_loads_back_equal_with_its_callable(tmp_path: Path) -> None:
    from promptlift.optimize.program import from_dict

    config = load_config(write_config(tmp_path, PROGRAM_CONFIG, module="stored"))
    program = config.prompt
    assert isinstance(program, Program)
    again = from_dict(json.loads(json.dumps(program.to_dict())), base_dir=tmp_path)
    assert again == program and again.key() == program.key()
    assert isinstance(again, Program) and again.fn is program.fn
    assert from_dict(PROMPTS["upper"].to_dict()) == PROMPTS["upper"]


def test_the_plan_counts_a_programs_calls_its_probe_and_fewshots_bootstrap(tmp_path: Path) -> None:
    from promptlift.optimize.optimizers import FewShot
    from promptlift.optimize.plan import estimate_calls, make_plan

    estimated = make_plan(load_config(write_config(tmp_path, PROGRAM_CONFIG, module="planned")))
    declared = make_plan(
        load_config(write_config(tmp_path, PROGRAM_CONFIG + "calls_per_row: 3\n", module="planned"))
    )
    assert estimated.steps == 2 and declared.steps == 3
    assert "estimated as one per prompt" in estimated.render()
    assert "at most 3 model calls per row (calls_per_row, held)" in declared.render()
    sizes = estimated.sizes
    # fewshot's trials and the scoring
    own = estimate_calls(FewShot(answer_field="label"), sizes, base_reasoning=False).task
    bootstrap = min(16, sizes.train)  # rows run to collect the program's calls as demos
    assert bootstrap > 0
    assert estimated.stages[0].calls.task == 2 * (own + bootstrap + 1)  # + the probe row
    assert declared.stages[0].calls.task == 3 * (own + bootstrap)


# -- found by a hostile pass -----------------------------------------------------------------------
def test_odd_returns_and_sys_exit_score_the_row_0_with_the_reason_and_the_run_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    def odd(row: dict[str, Any], lm: Calls) -> Any:
        loud = lm.call("upper", text=row["text"])
        if row["text"] == "ab":
            return (c for c in loud)  # a generator: its str() would score 0 with no word why
        if row["text"] == "abc":
            raise SystemExit(3)
        return lm.call("count", text=loud)

    with caplog.at_level("WARNING", logger="promptlift"):
        evaluation = evaluate(Program(PROMPTS, odd))
    first, second = evaluation.rows[0], evaluation.rows[1]
    assert first.score == 0.0 and "returned generator" in first.error and first.trace
    assert second.score == 0.0 and second.error == "SystemExit: the program called sys.exit(3)"
    assert [r.score for r in evaluation.rows[2:]] == [1.0, 1.0]
    warned = [r.getMessage() for r in caplog.records if "the program raised on" in r.getMessage()]
    assert warned and "2 of 4 rows" in warned[0]


def test_programs_and_pipelines_given_the_wrong_things_say_what_to_give() -> None:
    from promptlift import Pipeline
    from promptlift.optimize.optimizers import FewShot

    with pytest.raises(ConfigError, match=r"write it as `def <lambda>\(row, lm\)`|write it as"):
        Program(PROMPTS, lambda row: "x")
    with pytest.raises(ConfigError, match="calls_per_row must be a whole number"):
        Program(PROMPTS, sync_program, calls_per_row_declared=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Pipeline takes a list of optimizers, got FewShot"):
        Pipeline(FewShot(answer_field="label"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="stage 0 is int"):
        Pipeline([1])  # type: ignore[list-item]
    from promptlift.optimize.dataset import split

    client = Client(ClientConfig(models=("scripted/m",)), provider=FunctionProvider(model))
    with client, pytest.raises(ConfigError, match="optimize takes a Prompt or a Program, got str"):
        FewShot(answer_field="label").optimize(
            "just a string", split(DATA, 0.5, 0.25, 0.25), ExactMatch("label"), client=client
        )  # type: ignore[arg-type]


def test_star_import_brings_the_optimize_layer_too() -> None:
    namespace: dict[str, Any] = {}
    exec("from promptlift import *", namespace)
    for name in ("Prompt", "Program", "Pipeline", "FewShot", "Dataset", "ExactMatch", "Client", "Budget"):
        assert name in namespace, name


def test_prompts_given_as_a_list_says_it_must_be_a_mapping(tmp_path: Path) -> None:
    listed = (
        '  upper: {system: Shout., user: "Upper: {text}"}\n  count: {system: Count., user: "Count: {text}"}'
    )
    body = PROGRAM_CONFIG.replace(listed + "\n", "  - upper\n  - count\n")
    with pytest.raises(ConfigError, match=r"`prompts` must be a mapping of named prompts"):
        load_config(write_config(tmp_path, body, module="listed"))


COUNTED = Prompt(
    user="Count: {text}",
    output_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
)


def json_model(request: CompletionRequest) -> str:
    """JSON in a fence with prose around it, as models answer; a string for "abcd" (breaks the schema)."""
    text = request.messages[-1].text.partition(": ")[2]
    n = '"four"' if text == "abcd" else str(len(text))
    return f'Here it is:\n```json\n{{"n": {n}}}\n```\nDone.'


@pytest.mark.parametrize("form", ["sync", "async"])
def test_call_json_reads_the_answer_against_the_schema_and_a_bad_one_scores_the_row_0(form: str) -> None:
    def sync(row: dict[str, Any], lm: Calls) -> str:
        return str(lm.call_json("count", text=row["text"])["n"])

    async def async_(row: dict[str, Any], lm: Calls) -> str:
        return str((await lm.acall_json("count", text=row["text"]))["n"])

    program = Program({"count": COUNTED}, sync if form == "sync" else async_)
    evaluation = evaluate(program, fn=json_model)
    assert [r.score for r in evaluation.rows] == [1.0, 1.0, 0.0, 1.0]
    bad = evaluation.rows[2]
    assert bad.reason == PROGRAM_FAILED
    assert bad.error.startswith("InvalidAnswer: prompt 'count' answered no valid JSON for its output schema")
    assert "$.n" in bad.error  # the failing path


def test_a_program_may_catch_an_invalid_answer_and_fall_back() -> None:
    def careful(row: dict[str, Any], lm: Calls) -> str:
        try:
            return str(lm.call_json("count", text=row["text"])["n"])
        except InvalidAnswer:
            return str(len(row["text"]))  # its own fallback

    assert evaluate(Program({"count": COUNTED}, careful), fn=json_model).mean == 1.0
    plain = Program({"count": Prompt(user="Count: {text}")}, careful)  # no schema: any JSON value
    assert evaluate(plain, fn=lambda r: "no json at all").mean == 1.0
