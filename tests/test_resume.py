"""A run killed with SIGKILL and resumed ends exactly like an uninterrupted run, paying nothing twice.

Real parts: the `promptlift` CLI in subprocesses, real LiteLLM over HTTP to a loopback server that
plays a deterministic task model, a real SQLite run store and response cache on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from promptlift.testing.conformance import synthetic_program_model
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok
from promptlift.types import CompletionRequest, messages_from

pytestmark = pytest.mark.slow

KILL_AT = 25  # the request during which the first process is killed


def fake_model(request: RecordedRequest) -> Reply:
    """Right answers only with at least two demos in the prompt (so few-shot search matters)."""
    messages = request.json["messages"]
    word = messages[-1]["content"].split()[1]
    demos = sum(1 for m in messages if m["role"] == "assistant")
    return ok(("long" if len(word) > 5 else "short") if demos >= 2 else "unsure")


def program_model(request: RecordedRequest) -> Reply:
    """The task model of the shipped two-prompt program (``testing.conformance.two_step``)."""
    messages = messages_from(request.json["messages"])
    return ok(synthetic_program_model(CompletionRequest(model="openai/fake-task", messages=messages)))


FEWSHOT = "{name: fewshot, params: {max_demos: 3, trials: 6}}"
PROGRAM = "{name: fewshot, params: {max_demos: 3, trials: 6, bootstrap_rows: 20}}  # program"
PROGRAM_CODE = """
from promptlift.testing.conformance import two_step as run
"""
# Two stages: 30 calls of scoring the start, 40 of few-shot trials, then parameter trials.
PIPELINE = "[{name: fewshot, params: {max_demos: 3, trials: 4}}, {name: parameters, params: {trials: 3}}]"


def write_config(folder: Path, api_base: str, optimizer: str = FEWSHOT) -> Path:
    folder.mkdir()
    rows = [
        {"text": f"w{'x' * (i % 7)}{i}", "label": "long" if len(f"w{'x' * (i % 7)}{i}") > 5 else "short"}
        for i in range(40)
    ]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = folder / "config.yaml"
    prompt = "prompt: {system: 'Label the word.', user: 'Word: {text}\\nLength:', params: {max_tokens: 2}}\n"
    if optimizer == PROGRAM:  # two prompts in the user's code, a module beside the config
        (folder / "steps.py").write_text(PROGRAM_CODE)
        prompt = (
            "program: 'steps:run'\nprompts:\n"
            "  measure: {system: 'Look at the word.', user: \"Word: {text}\\nLetters:\",\n"
            "            params: {max_tokens: 4}}\n"
            "  label: {system: 'Label the count.', user: \"Letters: {count}\\nLabel:\",\n"
            "          params: {max_tokens: 2}}\n"
        )
    config.write_text(
        f"model: openai/fake-task\napi_base: {api_base}\nconcurrency: 1\n" + prompt + ""
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        f"optimizer: {optimizer}\n"
        "budget: {max_calls: 400}\nseed: 7\nstore: runs/\n"
    )
    return config


def cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000"}
    return subprocess.Popen(
        [sys.executable, "-m", "promptlift", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def listed(config: Path) -> list[dict[str, Any]]:
    """``promptlift runs CONFIG --json``, in a process of its own as a user would run it."""
    out = finish(cli("runs", str(config), "--json"))
    assert isinstance(out, list)
    return out


def statuses(config: Path, status: str) -> list[str]:
    return [r["id"] for r in listed(config) if r["status"] == status]


def finish(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("optimizer", "kill_at"),
    [(FEWSHOT, KILL_AT), (PIPELINE, 85), (PROGRAM, 30)],  # the pipeline is killed in its second stage
    ids=["fewshot", "pipeline", "program"],
)
def test_killed_run_resumes_to_the_same_result_without_paying_twice(
    tmp_path: Path, optimizer: str, kill_at: int
) -> None:
    model = program_model if optimizer == PROGRAM else fake_model
    with LoopbackServer() as whole, LoopbackServer() as split_run:
        whole.handler = model
        expected = finish(
            cli("optimize", str(write_config(tmp_path / "a", whole.openai_base, optimizer)), "--json")
        )
        assert len(whole.requests) > kill_at + 5  # the kill point is inside the run

        reached, release = threading.Event(), threading.Event()

        def blocking_model(request: RecordedRequest) -> Reply:
            if len(split_run.requests) == kill_at:  # this request arrives while KILL_AT are recorded
                reached.set()
                release.wait(30)
            return model(request)

        split_run.handler = blocking_model
        config = write_config(tmp_path / "b", split_run.openai_base, optimizer)
        first = cli("optimize", str(config), "--json")
        assert reached.wait(120), "the first process never got to the kill point"
        # a pipeline's later stages are runs of their own, "<run>.<stage>"
        (run,) = [r for r in listed(config) if "." not in r["id"]]
        live = run["id"] + (".1" if optimizer == PIPELINE else "")
        assert statuses(config, "running") == [live]  # its process is there, waiting on the gate
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)  # reap it and close its pipes
        release.set()
        answered_before_kill = {r.body for r in split_run.requests[:kill_at]}
        assert statuses(config, "killed") == [live]  # killed where meant, and shown so
        assert statuses(config, "running") == []
        split_run.handler = model
        resumed = finish(cli("optimize", str(config), "--resume", run["id"], "--json"))
        assert {r["status"] for r in listed(config)} == {"finished"}

    after = split_run.requests[kill_at + 1 :]
    assert not answered_before_kill & {r.body for r in after}, (
        "a request answered before the kill was sent again"
    )
    for key in (
        "best_prompt",
        "best_score",
        "initial_score",
        "test_initial_score",
        "test_best_score",
        "calls",
    ):
        assert resumed[key] == expected[key], key
    assert resumed["run_id"] == run["id"]
    assert expected["test_best_score"] > expected["test_initial_score"]
    # Every request of the uninterrupted run was made exactly once across the two processes.
    assert len(whole.requests) == kill_at + len(after)
