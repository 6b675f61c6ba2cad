"""An agent's optimization killed with SIGKILL mid-loop resumes to the same result, paying nothing twice.

Real parts: the `promptlift` CLI in subprocesses, a tool module beside the config, real LiteLLM
over HTTP to a loopback server playing a tool-calling model (OpenAI format), a real SQLite run
store and response cache on disk. The kill lands inside a row's tool loop: once at its first model
call, once at its second (after the tool ran), so a row half done is finished from the cache.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok, tool_call
from test_resume import cli, finish, listed, statuses

pytestmark = pytest.mark.slow

HINT = "count the letters"
TOOLS_PY = '''
def letters(word: str) -> int:
    """A tool."""
    return len(word)
'''


def agent_model(request: RecordedRequest) -> Reply:
    """The reasoning call (no tools offered) proposes the hint; the task model calls ``letters`` only
    when its instruction or the tool's description carries the hint, then answers from the result."""
    body = request.json
    messages = body["messages"]
    if not body.get("tools"):
        return ok("Count the letters of the word: more than 5 is long, otherwise short.")
    last = messages[-1]
    if last["role"] == "tool":
        return ok("long" if int(last["content"]) > 5 else "short")
    shown = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    shown += " ".join(t["function"].get("description", "") for t in body["tools"])
    if HINT not in shown.lower():
        return ok("unsure")
    word = last["content"].split()[1]
    return ok("", tool_calls=(tool_call("letters", {"word": word}, id=f"call_{word}"),))


def write_config(folder: Path, api_base: str) -> Path:
    folder.mkdir()
    (folder / "agent_tools.py").write_text(TOOLS_PY)
    words = [f"w{'x' * (i % 7)}{i}" for i in range(40)]
    rows = [{"text": w, "label": "long" if len(w) > 5 else "short"} for w in words]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = folder / "config.yaml"
    config.write_text(
        f"model: openai/fake-agent\napi_base: {api_base}\nconcurrency: 1\n"
        "prompt:\n  system: 'Label the word.'\n  user: 'Word: {text}\\nLength:'\n"
        "  tools: [{function: 'agent_tools:letters'}]\n  max_steps: 3\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: pareto, params: {max_metric_calls: 40, minibatch: 3, parts: [system, tools]}}\n"
        "budget: {max_calls: 400}\nseed: 7\nstore: runs/\n"
    )
    return config


# the kill lands on a row's first model call (it calls the tool), then on its second (the tool ran)
@pytest.mark.parametrize(("kill_at", "step"), [(30, "user"), (31, "tool")])
def test_a_killed_agent_run_resumes_without_paying_twice(tmp_path: Path, kill_at: int, step: str) -> None:
    with LoopbackServer() as whole, LoopbackServer() as split_run:
        whole.handler = agent_model
        expected = finish(cli("optimize", str(write_config(tmp_path / "a", whole.openai_base)), "--json"))
        assert len(whole.requests) > kill_at + 5
        assert expected["test_best_score"] > expected["test_initial_score"]  # the hint was found
        assert "count the letters" in json.dumps(expected["best_prompt"]).lower()
        loops = [r for r in whole.requests if r.json["messages"][-1]["role"] == "tool"]
        assert loops, "the agent never ran its tool"
        killed = whole.requests[kill_at].json  # the runs are deterministic: the same call in both
        assert killed.get("tools") and killed["messages"][-1]["role"] == step

        reached, release = threading.Event(), threading.Event()

        def blocking_model(request: RecordedRequest) -> Reply:
            if len(split_run.requests) == kill_at:
                reached.set()
                release.wait(30)
            return agent_model(request)

        split_run.handler = blocking_model
        config = write_config(tmp_path / "b", split_run.openai_base)
        first = cli("optimize", str(config), "--json")
        assert reached.wait(120), "the first process never got to the kill point"
        (run,) = listed(config)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
        release.set()
        answered_before_kill = [r.body for r in split_run.requests[:kill_at]]
        assert statuses(config, "killed") == [run["id"]]
        split_run.handler = agent_model
        resumed = finish(cli("optimize", str(config), "--resume", run["id"], "--json"))

    after = split_run.requests[kill_at + 1 :]
    assert not set(answered_before_kill) & {r.body for r in after}, (
        "a call answered before the kill was sent again"
    )
    for key in ("best_prompt", "best_score", "initial_score", "test_initial_score", "test_best_score"):
        assert resumed[key] == expected[key], key
    # The steps a half-done row had paid before the kill are answered from the cache after it, and
    # reported as cached (the row's checkpoint is written when the row ends): the same work, once.
    assert resumed["calls"] + resumed["cached_calls"] == expected["calls"] + expected["cached_calls"]
    assert expected["calls"] - resumed["calls"] == resumed["cached_calls"] - expected["cached_calls"] <= 2
    assert len(whole.requests) == kill_at + len(after)
