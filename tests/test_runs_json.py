"""Every JSON promptlift writes is strict JSON: a NaN never reaches --json output or the run store."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from promptlift.cli import main
from promptlift.jsonout import dumps
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer, ok


def strict(text: str) -> Any:
    """Parse as strict parsers do: NaN, Infinity and -Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_dumps_writes_non_finite_numbers_as_null() -> None:
    out = strict(dumps({"a": math.nan, "b": [math.inf, 1.5], "c": (-math.inf,)}))
    assert out == {"a": None, "b": [None, 1.5], "c": [None]}


def test_the_run_store_never_holds_nan(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    try:
        run_id = store.create_run("fewshot", {"x": math.nan})
        store.finish_run(run_id, "finished", {"best_score": math.nan, "ci": [math.nan, 1.0]})
        store.put_step(run_id, "k", {"mean": math.nan})
        rows = store._conn.execute("SELECT config, result FROM runs").fetchall()
        steps = store._conn.execute("SELECT value FROM steps").fetchall()
    finally:
        store.close()
    for text in [*rows[0], steps[0][0]]:
        strict(text)
    assert strict(rows[0][1]) == {"best_score": None, "ci": [None, 1.0]}


NAN_METRIC = """
import math

def score(row, output):
    return math.nan if row["text"] == "t0" else float(output == row["label"])
"""


def test_a_metric_returning_nan_scores_the_row_0_and_eval_json_stays_strict(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loopback.set_default(ok("a"))
    (tmp_path / "nan_metric_mod.py").write_text(NAN_METRIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(8)))
    (tmp_path / "config.yaml").write_text(
        f"model: openai/loop\napi_base: {loopback.openai_base}\n"
        "prompt: {user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 0}}\n"
        "metric: {type: python, function: 'nan_metric_mod:score', field: label}\ncache: false\n"
    )
    sys.modules.pop("nan_metric_mod", None)
    assert main(["eval", str(tmp_path / "config.yaml"), "--json"]) == 0
    report = strict(capsys.readouterr().out)
    scores = [report["validation_score"], report["test_score"]]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert min(scores) > 0.0 and sum(scores) < 2.0  # the NaN row scored 0, the others 1
