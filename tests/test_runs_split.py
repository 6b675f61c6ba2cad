"""Splits by content: identical inputs stay in one split, and duplicates are named before a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.dataset import Dataset, duplicates, split
from promptlift.testing.server import LoopbackServer, ok


def test_identical_inputs_land_in_one_split() -> None:
    # 12 distinct texts, each three times (one with another label): a plain row shuffle spreads them
    records = [{"text": f"t{i % 12}", "label": "ab"[i // 12 % 2]} for i in range(36)]
    data = Dataset.from_records(records)
    for seed in range(5):
        splits = split(data, 0.5, 0.25, 0.25, seed=seed, inputs=["text"])
        texts = [{r["text"] for r in part} for part in (splits.train, splits.validation, splits.test)]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]), seed
        assert sum(len(p) for p in (splits.train, splits.validation, splits.test)) == 36
        assert all(len(p) >= 3 for p in (splits.validation, splits.test))
    assert len(duplicates(data, ["text"])) == 12 and duplicates(data, ["text"])[0] == (0, 12, 24)


def test_without_duplicates_the_split_is_the_plain_seeded_shuffle() -> None:
    import random

    data = Dataset.from_records([{"text": f"t{i}"} for i in range(20)])
    order = list(range(20))
    random.Random(3).shuffle(order)
    splits = split(data, 0.5, 0.25, 0.25, seed=3)
    assert [r.index for r in (*splits.train, *splits.validation, *splits.test)] == order
    assert duplicates(data) == []


def test_eval_warns_about_duplicates_and_keeps_them_out_of_test(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loopback.set_default(ok("a"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    rows = [{"text": f"t{i % 6}", "label": "a"} for i in range(24)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "config.yaml").write_text(
        f"model: openai/loop\napi_base: {loopback.openai_base}\n"
        "prompt: {user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\n"
        "cache: false\nconcurrency: 1\n"
    )
    assert main(["eval", str(tmp_path / "config.yaml"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "18 of 24 rows repeat another row's inputs (row 1 = row 7 = row 13, ...)" in err
    report = json.loads(out)
    # concurrency 1: validation's requests, then test's, in row order
    sent = [json.loads(r.body)["messages"][-1]["content"] for r in loopback.requests]
    assert len(sent) == report["validation_rows"] + report["test_rows"] == 12
    validation, test = set(sent[: report["validation_rows"]]), set(sent[report["validation_rows"] :])
    assert validation and test and not validation & test
