"""What a run records: every candidate (those a search dropped on a minibatch too, with the reasoning
reply that proposed them and why they were dropped), each with its parents; a Pareto run's front;
the plan; the call metrics. Real runs of the shipped optimizers against the shipped doubles
(``promptlift.testing``), a real SQLite run store, the real CLI in-process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.errors import ConfigError
from promptlift.optimize.optimizers import Evolutionary, Pareto
from promptlift.optimize.store import MIGRATIONS, RunStore
from promptlift.testing.conformance import (
    REASONING_MODEL,
    OptimizerConformance,
    ProgramConformance,
    synthetic_model,
)
from promptlift.types import CompletionRequest

USELESS = "Answer carefully and think about the word."  # does not help the task model
USEFUL = "Count the letters of the word: more than 5 is long, otherwise short."


class ParetoRun(OptimizerConformance):
    def make_optimizer(self) -> Pareto:
        return Pareto(max_metric_calls=60, minibatch=3, merge=False)


def first_useless(request: CompletionRequest, replies: list[str]) -> str:
    """The reasoning model proposes a text that helps nothing first, then the one that works."""
    if request.model == REASONING_MODEL:
        replies.append(USELESS if not replies else USEFUL)
        return replies[-1]
    return synthetic_model(request)


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("record")
    store = RunStore(folder / "runs.sqlite")
    run_id = store.create_run("pareto", {"budget": {"max_calls": 400}}, plan={"task_calls": 10})
    replies: list[str] = []
    result, _ = ParetoRun().run(store=store, run_id=run_id, model=lambda r: first_useless(r, replies))
    yield store, run_id, result, folder
    store.close()


def test_a_proposal_rejected_on_its_minibatch_is_recorded_with_its_reflection(pareto_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, result, _ = pareto_run
    (rejected, *_) = store.rejected(run_id)
    assert rejected["status"] == "rejected" and rejected["parents"] == [0]
    assert rejected["proposal"] == [USELESS]  # the reasoning model's reply that proposed it
    assert rejected["prompt"]["system"] == USELESS
    assert rejected["reason"] == "not better than its parent on the minibatch (0/3 vs 0/3)"
    rows = rejected["evaluation"]["rows"]
    assert len(rows) == 3 and all(r["score"] == 0.0 for r in rows)  # its per-row results there
    assert rejected["spent"]["calls"] > 0
    assert result.summary()["rejected"] == len(store.rejected(run_id)) >= 1


def test_an_accepted_candidate_keeps_its_parents_and_the_reply_that_proposed_it(pareto_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, result, _ = pareto_run
    initial, child, *_ = store.candidates(run_id)
    assert initial["status"] == "accepted" and initial["parents"] == [] and initial["proposal"] == []
    assert child["parents"] == [0] and child["proposal"] == [USEFUL] and child["score"] == 1.0
    assert child["spent"]["calls"] > initial["spent"]["calls"]  # the spend so far, for cost over time
    assert result.best.parents == (0,)


def test_a_per_row_pareto_run_keeps_its_front(pareto_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, result, _ = pareto_run
    stored = store.run(run_id)["result"]["front"]
    assert stored["kind"] == "per_row" and stored["rows"] == 10
    assert stored["members"] == [{"id": 1, "score": 1.0, "rows_won": 10}]  # it leads on every row
    assert result.front == stored


def test_the_plan_and_the_call_metrics_are_kept(pareto_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, result, _ = pareto_run
    run = store.run(run_id)
    assert run["plan"] == {"task_calls": 10}
    total = run["result"]["call_metrics"]["total"]
    assert total["calls"] == result.spend.calls + result.spend.cached_calls
    assert {"latency_p50_s", "latency_p95_s", "errors", "retries", "cache_hit_rate"} <= set(total)


def test_runs_show_lists_the_rejected_proposals_apart(pareto_run, capsys) -> None:  # type: ignore[no-untyped-def]
    _, run_id, _, folder = pareto_run
    assert main(["runs", "show", run_id, "--store", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "rejected before validation" in out
    assert "r0    from #0  reflect system: not better than its parent on the minibatch" in out
    assert main(["runs", "show", run_id, "--store", str(folder), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["rejected"][0]["reason"].startswith("not better") and shown["rejected_count"] >= 1
    assert shown["plan_vs_spend"]["plan"] == {"task_calls": 10}


def test_runs_export_writes_the_rejected_proposals_beside_the_candidates(pareto_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _, folder = pareto_run
    assert main(["runs", "export", run_id, "--store", str(folder), "--output", str(tmp_path / "x")]) == 0
    lines = [json.loads(li) for li in (tmp_path / "x" / "candidates.jsonl").read_text().splitlines()]
    statuses = [li["status"] for li in lines]
    assert statuses.count("accepted") == len(store.candidates(run_id))
    assert statuses.count("rejected") == len(store.rejected(run_id)) >= 1
    assert next(li for li in lines if li["status"] == "rejected")["proposal"] == [USELESS]


class CrossoverRun(OptimizerConformance):
    def make_optimizer(self) -> Evolutionary:
        return Evolutionary(population=3, generations=2, crossover_rate=1.0, objectives=["score", "length"])


def test_a_crossover_has_two_parents_and_a_multi_objective_run_keeps_its_front(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run("evolutionary", {})
    texts = iter(f"Answer about word number {i} with care." for i in range(1000))

    def model(request: CompletionRequest) -> str:
        return next(texts) if request.model == REASONING_MODEL else synthetic_model(request)

    result, _ = CrossoverRun().run(store=store, run_id=run_id, model=model)
    crossed = [c for c in store.candidates(run_id) if c["origin"].startswith("crossover")]
    assert crossed and all(len(c["parents"]) == 2 for c in crossed)
    assert all(c["parents"][0] == c["parent"] for c in crossed)
    front = store.run(run_id)["result"]["front"]
    assert front["kind"] == "objectives" and front["objectives"] == ["score", "length"]
    assert len(front["members"]) == len(result.history) and any(m["on_front"] for m in front["members"])
    assert all(m["values"][1] > 0 for m in front["members"])  # a length in tokens, as measured
    store.close()


def test_runs_show_says_when_a_run_has_no_plan(pareto_run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    store, _, _, folder = pareto_run
    run_id = store.create_run("pareto", {})  # library code makes no plan
    result = store.run(pareto_run[1])["result"]
    store.finish_run(run_id, "finished", result)
    assert main(["runs", "show", run_id, "--store", str(folder)]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if li.startswith("plan "))
    assert line.split(None, 1)[1].startswith(f"no plan recorded · spent {result['calls']} calls")
    store.delete_run(run_id)


def test_a_store_written_before_the_lineage_migration_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied REAL)")
    for name, sql in MIGRATIONS[:2]:  # the store as the previous release left it
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    conn.execute("INSERT INTO runs VALUES ('old', 0, 0, 'pareto', 'finished', '{}', NULL, NULL)")
    for cid, parent, origin in ((0, None, "initial"), (1, 0, "reflect system"), (2, 1, "merge 1+0")):
        conn.execute(
            "INSERT INTO candidates VALUES ('old', ?, 0, 0, ?, ?, '{}', 0.5, NULL)", (cid, parent, origin)
        )
    conn.commit()
    conn.close()
    store = RunStore(path, create=False)
    assert [c["parents"] for c in store.candidates("old")] == [[], [0], [1, 0]]
    assert all(c["proposal"] is None and c["status"] == "accepted" for c in store.candidates("old"))
    assert store.rejected("old") == [] and store.run("old")["plan"] is None
    assert store.delete_run("old")["candidates"] == 3
    store.close()


@pytest.mark.parametrize("content", [b"", b"not a database at all", None])
def test_runs_refuses_a_file_that_is_not_a_run_store_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    path = tmp_path / "EMPTY.sqlite"
    if content is not None:
        path.write_bytes(content)
    assert main(["runs", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ("no run store" if content is None else "is not a run store") in err
    assert (path.read_bytes() if path.exists() else None) == content  # untouched, or still absent
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["EMPTY.sqlite"])


def test_runs_refuses_another_sqlite_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    assert main(["runs", "--store", str(path)]) == 2
    assert "not a run store (an SQLite file without promptlift's runs)" in capsys.readouterr().err
    assert path.read_bytes() == before


class OnePromptOfAProgram(ProgramConformance):
    def make_optimizer(self) -> Pareto:
        return Pareto(max_metric_calls=60, minibatch=3, merge=False, parts=["label.system"])


def test_pareto_parts_can_name_one_prompt_of_a_program(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run("pareto", {})
    result, _ = OnePromptOfAProgram().run(store=store, run_id=run_id)
    records = [*store.candidates(run_id), *store.rejected(run_id)]
    store.close()
    proposed = [r for r in records if r["origin"] != "initial"]
    assert proposed and all(r["origin"] == "reflect label.system" for r in proposed)
    initial = result.initial.prompt.prompts
    assert all(r["prompt"]["prompts"]["measure"] == initial["measure"].to_dict() for r in records)
    assert any(r["prompt"]["prompts"]["label"]["system"] == USEFUL for r in proposed)  # the one it rewrote


def test_a_part_naming_no_prompt_of_the_program_is_refused_before_any_call() -> None:
    from promptlift.errors import ConfigError

    class Mistyped(ProgramConformance):
        def make_optimizer(self) -> Pareto:
            return Pareto(parts=["lable.system"])

    with pytest.raises(ConfigError, match="no prompt is named 'lable' \\(the program has measure, label\\)"):
        Mistyped().run()
    with pytest.raises(ConfigError, match=r"NAME\.PART for one prompt of a program"):
        Pareto(parts=["label.nothing"])
    with pytest.raises(ConfigError, match=r"NAME\.PART"):
        Evolutionary(parts=[".system"])


def test_the_report_of_a_run_stored_before_these_records_says_what_it_lacks(pareto_run) -> None:  # type: ignore[no-untyped-def]
    from promptlift.report.html import render

    store, run_id, _, _ = pareto_run
    run = store.run(run_id)
    old_result = {k: v for k, v in run["result"].items() if k not in ("front", "call_metrics", "rejected")}
    for h in old_result["history"]:
        h.pop("parents")
    old_run = {**run, "plan": None, "result": old_result}
    new_keys = ("parents", "proposal", "spent")
    old_candidates = [{k: v for k, v in c.items() if k not in new_keys} for c in store.candidates(run_id)]
    html = render(old_run, old_candidates, [])
    for marker in ('id="plan-none"', 'id="no-front"', 'id="no-metrics"'):
        assert marker in html
    assert html.count("Plotly.newPlot") == 3  # the scores over calls and cost, the lineage: no spend points
    assert 'id="rejected"' not in html


class OneProgramPromptEvolved(ProgramConformance):
    def make_optimizer(self) -> Evolutionary:
        return Evolutionary(population=3, generations=2, crossover_rate=0.5, parts=["label.system"])


def test_evolutionary_parts_can_name_one_prompt_of_a_program_crossovers_included(tmp_path: Path) -> None:
    texts = iter(f"Label count number {i} with care." for i in range(1000))

    def model(request: CompletionRequest) -> str:
        from promptlift.testing.conformance import synthetic_program_model

        return next(texts) if request.model == REASONING_MODEL else synthetic_program_model(request)

    result, _ = OneProgramPromptEvolved().run(model=model)
    measure = result.initial.prompt.prompts["measure"]
    assert len(result.history) > 3 and any(c.origin.startswith("crossover") for c in result.history)
    assert all(c.prompt.prompts["measure"] == measure for c in result.history)


def test_a_run_with_another_sqlite_file_as_its_store_is_refused_and_the_file_left_alone(
    tmp_path: Path,
) -> None:
    other = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="not a run store"):
        RunStore(other)  # as optimize opens it (create=True)
    assert other.read_bytes() == before
