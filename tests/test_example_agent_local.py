"""examples/agent/local.yaml end to end on the embedded base model: the `promptlift` CLI, the
example's tools, the local provider reading the model's Action lines, fewshot picking worked
exchanges. No key, no network, no scripted model: the real 270M model drives the loop.

The gain asserted is the one measured (bench/local_agent.py, BENCHMARKS.md): without a demo the
model never calls a tool (score 0); with worked exchanges it calls both tools. A single fewshot
trial (its first: a balanced pick of the most demos) keeps the run to about a minute.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.optimize.store import RunStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"
sys.path.insert(0, str(EXAMPLE))
import worked  # noqa: E402


def test_the_worked_exchanges_are_what_the_tools_return_one_question_per_employee() -> None:
    shipped = [json.loads(line) for line in (EXAMPLE / "local_questions.jsonl").read_text().splitlines()]
    assert shipped == asyncio.run(worked.rows())  # `python worked.py` rewrites the file
    people = [worked.employee_in(row["question"]) for row in shipped]
    assert len(people) == len(set(people)) == 20
    assert all(row["worked"].endswith(f"Answer: {row['city']}") for row in shipped)


@pytest.mark.model
@pytest.mark.slow
def test_the_local_agent_example_learns_the_tool_loop_from_worked_demos(
    tmp_path: Path, promptlift_json: Callable[..., dict[str, Any]]
) -> None:
    folder = tmp_path / "agent"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md"))
    config = yaml.safe_load((folder / "local.yaml").read_text())
    config["optimizer"]["params"]["trials"] = 1
    config["budget"]["max_minutes"] = 30  # a busy machine (15 min seen for the full run): not cut short
    (folder / "local.yaml").write_text(yaml.safe_dump(config))

    result = promptlift_json("optimize", str(folder / "local.yaml"), "--json")

    assert result["test_initial_score"] == 0.0 and result["test_best_score"] > 0.5, result
    demos = result["best_prompt"]["demos"]
    assert demos and all("Action: find_employee(" in d["answer"] for d in demos)
    store = RunStore(folder / "runs" / "runs.sqlite", create=False)
    try:
        best = max(store.candidates(result["run_id"]), key=lambda c: c["score"])
        steps = [row["trajectory"]["steps"] for row in best["evaluation"]["rows"]]
        called = [[s["call"]["name"] for s in row if s["type"] == "tool"] for row in steps]
        assert ["find_employee", "team_office"] in called  # both hops, read from the model's text
    finally:
        store.close()
