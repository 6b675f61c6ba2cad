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
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok, tool_call

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"
sys.path.insert(0, str(EXAMPLE))
from directory import EMPLOYEES, TEAM_OFFICES  # noqa: E402

HINT = "then call team_office"
PROPOSAL = "Answer with the city only. First call find_employee with the full name, then call team_office."


def scripted(request: RecordedRequest) -> Reply:
    body = request.json
    messages = body["messages"]
    if not body.get("tools"):  # the reasoning model
        seen_steps = "called find_employee(" in json.dumps(messages)
        return ok(PROPOSAL if seen_steps else "Answer the question carefully.")
    last = messages[-1]
    if last["role"] == "user":
        name = next(n for n in EMPLOYEES if n in last["content"])
        return ok("", tool_calls=(tool_call("find_employee", {"name": name}, id="call_1"),))
    if last["role"] == "tool" and last["content"] in TEAM_OFFICES.values():
        return ok(last["content"])
    found = json.loads(last["content"])
    told = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    told += " ".join(t["function"]["description"] for t in body["tools"])
    if HINT not in told:
        return ok(f"They are on the {found['team']} team.")
    return ok("", tool_calls=(tool_call("team_office", {"team": found["team"]}, id="call_2"),))


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
