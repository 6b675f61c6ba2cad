"""Structured output end to end: `promptlift optimize` and `promptlift eval` on a config with an
output schema and a json_fields metric, real LiteLLM over HTTP to a loopback server playing the
model (OpenAI format), and the best prompt of `--json` pasted into the next config as it is.

The scripted task model answers valid JSON only when its instruction tells it to count letters; else
it answers in prose, which the evaluator scores 0 with the reason. The reasoning model (the same
endpoint, called without a response_format) proposes that instruction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.cli import main
from promptlift.optimize.config import load_config
from promptlift.optimize.prompt import Prompt
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

HINT = "Count the letters of the word"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "letters": {"type": "integer"}},
    "required": ["label", "letters"],
}
WORDS = ["ox", "cat", "horse", "giraffe", "elephant", "bee", "tiger", "ant"] * 2


def scripted(request: RecordedRequest) -> Reply:
    body = request.json
    if "response_format" not in body:  # the reasoning model
        return ok(f"{HINT}, then answer with its label and letter count.")
    system = " ".join(str(m["content"]) for m in body["messages"] if m["role"] == "system")
    word = body["messages"][-1]["content"].split()[-1]
    if HINT not in system:
        return ok(f"The word {word} is an animal.")
    answer = {"label": "long" if len(word) > 4 else "short", "letters": len(word)}
    return ok(f"```json\n{json.dumps(answer)}\n```")


def write(tmp_path: Path, api_base: str, prompt: dict[str, Any]) -> Path:
    rows = [{"word": w, "label": "long" if len(w) > 4 else "short", "n": str(len(w))} for w in WORDS]
    (tmp_path / "words.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = {
        "model": "openai/scripted-structured",
        "api_base": api_base,
        "prompt": prompt,
        "dataset": {"path": "words.jsonl"},
        "metric": {
            "type": "json_fields",
            "fields": {"label": "label", "letters": {"expected": "n", "match": "numeric"}},
        },
        "optimizer": {"name": "metaprompt", "params": {"rounds": 1, "candidates_per_round": 2}},
        "budget": {"max_calls": 200},
        "cache": False,
        "prices": {"openai/scripted-structured": [0, 0]},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_optimize_and_eval_a_structured_prompt_and_its_export_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    start = {"system": "Label the word.", "user": "Word: {word}", "output_schema": SCHEMA}
    with LoopbackServer() as server:
        server.handler = scripted
        config = write(tmp_path, server.openai_base, start)
        assert main(["optimize", str(config), "--json", "--yes"]) == 0, capsys.readouterr().err
        result = json.loads(capsys.readouterr().out)
        task = [r.json for r in server.requests if "response_format" in r.json]
        assert task and all(
            body["response_format"]
            == {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA, "strict": False}}
            for body in task
        )
        assert result["initial_score"] == 0.0 and result["best_score"] == 1.0
        best = result["best_prompt"]
        assert HINT in best["system"]
        assert best["output_schema"] == {"name": "output", "schema": SCHEMA, "strict": False}

        (tmp_path / "next").mkdir()
        again = write(tmp_path / "next", server.openai_base, best)
        loaded = load_config(again).prompt
        assert loaded == Prompt.from_dict(best) and loaded.to_dict() == best
        assert main(["eval", str(again), "--json"]) == 0, capsys.readouterr().err
        scored = json.loads(capsys.readouterr().out)
    assert scored["validation_score"] == 1.0 and scored["test_score"] == 1.0, scored
