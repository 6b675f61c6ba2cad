"""examples/agent end to end: the `promptlift` CLI, the example's own tools and data, real LiteLLM
over HTTP to a loopback server playing a tool-calling model (OpenAI format), a real run store.

The scripted model does the first hop (find_employee) by itself but the second (team_office) only
when its instruction or a tool's description tells it to; without that it answers with the team's
name, which is wrong. The reasoning model (the same endpoint, called without tools) proposes that
text only after reading the rows' steps, so a gain shows that reflection saw the trajectories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"
sys.path.insert(0, str(EXAMPLE))
from scripted import HINT  # noqa: E402
from scripted import handle as scripted  # noqa: E402


def copy_example(tmp_path: Path, api_base: str) -> Path:
    folder = tmp_path / "agent"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md"))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.update(model="openai/scripted-agent", api_base=api_base, budget={"max_calls": 800})
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def run_cli(*args: str) -> dict[str, Any]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000"}
    proc = subprocess.run(
        [sys.executable, "-m", "promptlift", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_the_agent_example_gains_by_reflecting_on_its_trajectories(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        server.handler = scripted
        config = copy_example(tmp_path, server.openai_base)
        result = run_cli("optimize", str(config), "--json")
        requests = server.requests

    assert result["test_initial_score"] == 0.0 and result["test_best_score"] == 1.0, result
    best = json.dumps(result["best_prompt"])
    assert HINT in best
    assert result["best_prompt"]["tools"][0]["function"] == "directory:find_employee"  # loads back
    reasoning = [r for r in requests if not r.json.get("tools")]
    assert reasoning and any("called find_employee(" in r.body.decode() for r in reasoning)
    # a row of the best prompt is three model calls: find_employee, team_office, the answer
    second_hops = [
        r for r in requests if r.json.get("tools") and r.json["messages"][-1].get("tool_call_id") == "call_2"
    ]
    assert second_hops

    store = RunStore(config.parent / "runs" / "runs.sqlite", create=False)
    try:
        (candidate, *_) = [c for c in store.candidates(result["run_id"]) if c["score"] == 1.0]
        row = candidate["evaluation"]["rows"][0]
        calls = [s["call"]["name"] for s in row["trajectory"]["steps"] if s["type"] == "tool"]
        assert calls == ["find_employee", "team_office"]
        assert "sk-test" not in json.dumps(store.candidates(result["run_id"]))
    finally:
        store.close()


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "metaprompt", "params": {"rounds": 2, "candidates_per_round": 2}},
        # its grouping step gets a one-line reply without "- ": that line is the mode it fixes
        {"name": "failure_modes", "params": {"rounds": 1, "sample": 6, "max_modes": 2}},
    ],
    ids=lambda o: o["name"],
)
def test_the_other_reflective_optimizers_read_the_steps_too(
    tmp_path: Path, optimizer: dict[str, Any]
) -> None:
    with LoopbackServer() as server:
        server.handler = scripted
        config = copy_example(tmp_path, server.openai_base)
        data = yaml.safe_load(config.read_text())
        data["optimizer"] = optimizer
        config.write_text(yaml.safe_dump(data))
        result = run_cli("optimize", str(config), "--json")
    assert (result["test_initial_score"], result["test_best_score"]) == (0.0, 1.0), result
    assert HINT in result["best_prompt"]["system"]


def test_a_weighted_answer_and_trajectory_metric_from_yaml_scores_the_example(tmp_path: Path) -> None:
    """`eval` with `{type: weighted, parts: [contains, tool_called]}`: the careless agent misses
    both (it answers with the team and never asks for the office), told the second hop it gets both."""
    metric = {
        "type": "weighted",
        "parts": [
            {"type": "contains", "field": "city", "weight": 2},
            {"type": "tool_called", "tool": "team_office"},
        ],
    }
    means = {}
    with LoopbackServer() as server:
        server.handler = scripted
        for system in ("Answer the question.", f"Answer with the city: find the person, {HINT}."):
            config = copy_example(tmp_path / str(len(means)), server.openai_base)
            data = yaml.safe_load(config.read_text())
            data["metric"] = metric
            data["prompt"]["system"] = system
            config.write_text(yaml.safe_dump(data))
            means[system] = run_cli("eval", str(config), "--json")["test_score"]
    assert list(means.values()) == [0.0, 1.0]


def refused(config: Path) -> str:
    """`promptlift eval CONFIG`'s stderr, after checking it refused the config: exit 2, one line,
    no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "promptlift", "eval", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_a_tool_called_argument_slot_the_dataset_lacks_is_one_line_exit_2(tmp_path: Path) -> None:
    config = copy_example(tmp_path, "http://127.0.0.1:9")
    data = yaml.safe_load(config.read_text())
    data["metric"] = {"type": "tool_called", "tool": "team_office", "arguments": {"team": "{teem}"}}
    config.write_text(yaml.safe_dump(data))
    assert "`metric.arguments.team` is 'teem'" in refused(config)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"metric": {"type": "tool_called", "tool": "team_offic"}},
            "`metric.tool` names the tool 'team_offic'",
        ),
        (
            {
                "metric": {
                    "type": "weighted",
                    "parts": [
                        {"type": "contains", "field": "city"},
                        {"type": "tool_called", "tool": "lookup"},
                    ],
                }
            },
            "`metric.parts.1.tool`",
        ),
        (
            {"prompt.params.tool_choice": {"type": "function", "function": {"name": "find_employe"}}},
            "did you mean `find_employee`",
        ),
    ],
)
def test_a_tool_the_prompt_lacks_is_one_line_exit_2(
    tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    config = copy_example(tmp_path, "http://127.0.0.1:9")
    data = yaml.safe_load(config.read_text())
    for key, value in change.items():
        if key == "prompt.params.tool_choice":
            data["prompt"]["params"]["tool_choice"] = value
        else:
            data[key] = value
    config.write_text(yaml.safe_dump(data))
    assert says in refused(config)
