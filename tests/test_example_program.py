"""examples/program end to end on the embedded base model: the `promptlift` CLI, the example's
program (``pipeline.py``: the ``city`` prompt, then the ``country`` prompt) and fewshot choosing
demos for both prompts from the program's own calls on train rows it got right.

The fast test loads the config as a user's run would (the program module found beside it, no
PYTHONPATH). The model test runs a smaller variant of the example (3 fewshot trials of its 12,
about 90 s) on the real 270M model, and asserts what the example claims: the best program scores
higher on the test split than the initial one, and both of its prompts changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.optimize.config import load_config
from promptlift.optimize.program import Program

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "program"


def test_the_config_loads_with_its_program_found_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "program"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import sys; from promptlift.optimize.config import load_config; "
        "c = load_config(sys.argv[1]); print(c.prompt.ref, sorted(c.prompt.prompts), c.prompt.fn.__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder / "config.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the example's folder: the loader finds the module, not the working dir
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["pipeline:program", "['city',", "'country']", "pipeline"]
    config = load_config(EXAMPLE / "config.yaml")
    assert isinstance(config.prompt, Program) and config.prompt.calls_per_row == 2
    rows = [json.loads(line) for line in (EXAMPLE / "trips.jsonl").read_text().splitlines()]
    assert 40 <= len(rows) <= 80 and all(r["city"] in r["sentence"] for r in rows)


def test_the_plan_counts_the_programs_calls_per_row_as_a_program_not_an_agent() -> None:
    from promptlift.optimize.plan import make_plan

    plan = make_plan(load_config(EXAMPLE / "config.yaml"))
    text = plan.render()
    assert "program: at most 2 model calls per row (calls_per_row" in text
    assert "agent:" not in text and "max_steps" not in text
    assert plan.to_dict()["steps_per_row"] == 2


@pytest.mark.model
@pytest.mark.slow
def test_the_program_example_gains_on_test_with_both_prompts_changed(
    tmp_path: Path, promptlift_json: Callable[..., dict[str, Any]]
) -> None:
    folder = tmp_path / "program"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md"))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["optimizer"]["params"].update(trials=3, bootstrap_rows=24)
    config["budget"]["max_minutes"] = 30  # a busy machine: not cut short
    (folder / "config.yaml").write_text(yaml.safe_dump(config))

    result = promptlift_json("optimize", str(folder / "config.yaml"), "--json", "--yes")

    assert result["test_best_score"] > result["test_initial_score"], result
    initial, best = result["initial_prompt"]["prompts"], result["best_prompt"]["prompts"]
    assert set(best) == {"city", "country"}
    assert all(best[name] != initial[name] for name in best), (initial, best)
