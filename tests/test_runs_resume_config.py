"""`--resume` with an edited config is refused (naming what changed) unless `--new-run` asks for one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer, ok

CONFIG = (
    "model: openai/loop\napi_base: {base}\nconcurrency: {concurrency}\n"
    "prompt: {{system: '{system}', user: 'Text: {{text}}\\nLabel:', params: {{max_tokens: 2}}}}\n"
    "dataset: {{path: rows.jsonl}}\nmetric: {{type: exact_match, field: label}}\n"
    "optimizer: {{name: fewshot, params: {{trials: 3}}}}\n"
    "budget: {{max_calls: 60}}\nstore: runs/\ncache: false\n"
)


def test_resume_refuses_a_changed_config_and_new_run_starts_a_fresh_one(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"

    def write(system: str, concurrency: int = 2) -> str:
        config.write_text(CONFIG.format(base=loopback.openai_base, system=system, concurrency=concurrency))
        return str(config)

    assert main(["optimize", write("Label it."), "--yes", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    sent = len(loopback.requests)

    # how calls are made may change: same search, resumed, nothing sent again
    assert main(["optimize", write("Label it.", concurrency=1), "--yes", "--json", "--resume", run_id]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == run_id and len(loopback.requests) == sent

    assert main(["optimize", write("Another prompt."), "--yes", "--resume", run_id]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("promptlift: error:") and f"run {run_id} was started with another config" in err
    assert "(prompt changed)" in err and "--new-run" in err
    assert len(loopback.requests) == sent  # refused before any call

    assert main(["optimize", str(config), "--yes", "--json", "--resume", run_id, "--new-run"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_id"] != run_id and result["calls"] == len(loopback.requests) - sent <= 60
    store = RunStore(tmp_path / "runs")
    try:
        assert store.run(result["run_id"])["config"]["resumed_from"] == run_id
        assert store.run(run_id)["config"]["prompt"]["system"] == "Label it."  # the old run is untouched
    finally:
        store.close()


MAPPED = (
    "model: [{{model: openai/loop, api_base: '{base}', api_key_env: {env}}}]\n"
    "prompt: {{system: 'Label it.', user: 'Text: {{text}}\\nLabel:', params: {{max_tokens: 2}}}}\n"
    "dataset: {{path: rows.jsonl}}\nmetric: {{type: exact_match, field: label}}\n"
    "optimizer: {{name: fewshot, params: {{trials: 3}}}}\n"
    "budget: {{max_calls: 60}}\nstore: runs/\ncache: false\n"
)


def test_resume_holds_when_a_models_own_endpoint_or_key_variable_moves(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A `model:` mapping carries how its calls are made (endpoint, key variable) beside the model:
    # moving the server, or naming the key's variable differently, is not another search.
    monkeypatch.setenv("KEY_A", "sk-test-not-a-real-key-aaa")
    monkeypatch.setenv("KEY_B", "sk-test-not-a-real-key-bbb")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    config.write_text(MAPPED.format(base=loopback.openai_base, env="KEY_A"))
    assert main(["optimize", str(config), "--yes", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    sent = len(loopback.requests)

    with LoopbackServer() as moved:
        moved.set_default(ok("a"))
        config.write_text(MAPPED.format(base=moved.openai_base, env="KEY_B"))
        code = main(["optimize", str(config), "--yes", "--json", "--resume", run_id])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert json.loads(captured.out)["run_id"] == run_id
        assert len(loopback.requests) == sent and not moved.requests  # a finished run: nothing sent


def test_resume_accepts_the_same_search_whatever_the_store_redacted_or_the_endpoint(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The store keeps a redacted config (a prompt may hold ``token=...``, an endpoint ``?key=``),
    and a model's endpoint may move: neither is another search, so --resume goes on."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    system = "Label it. Never print token=abcdefghijklmnop1234."  # redact() takes the value out

    def write(model: str) -> str:
        body = CONFIG.format(base=loopback.openai_base, system=system, concurrency=2)
        config.write_text(body.replace("model: openai/loop\n", model))
        return str(config)

    assert main(["optimize", write("model: openai/loop\n"), "--yes", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    moved = f"model: [{{model: openai/loop, api_base: '{loopback.openai_base}'}}]\n"
    assert main(["optimize", write(moved), "--yes", "--json", "--resume", run_id]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads(capsys.readouterr().out)["run_id"] == run_id


def test_a_changed_optimizer_param_is_named_once(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    body = CONFIG.format(base=loopback.openai_base, system="Label it.", concurrency=2)
    config.write_text(body)
    assert main(["optimize", str(config), "--yes", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    config.write_text(body.replace("{trials: 3}", "{trials: 3, max_demos: 2}"))
    assert main(["optimize", str(config), "--yes", "--resume", run_id]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(optimizer_params changed)" in err, err
