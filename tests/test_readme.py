"""The README's promises: its Python example runs as written, its commands exist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from promptlift.cli import build_parser, main
from promptlift.optimize.config import load_config
from promptlift.optimize.dataset import Row
from promptlift.optimize.metrics import metric_from_config

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.model
def test_python_example_runs_and_improves_the_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = re.findall(r"```python\n(.*?)```", README, flags=re.S)[0]
    monkeypatch.chdir(Path(__file__).parent.parent)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best_test.mean > result.initial_test.mean  # type: ignore[attr-defined]
    before, after = capsys.readouterr().out.split("->")
    assert float(after) > float(before)


def test_the_streaming_example_runs_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptlift.testing.server import LoopbackServer, ok

    (code,) = [c for c in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "client.stream(" in c]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-stream-000001")
    with LoopbackServer() as server:
        server.script(ok("Still water, cold sky.", output_tokens=4))
        exec(compile(code, "README.md", "exec"), {"API_BASE": server.openai_base})
        assert server.requests[0].json["stream"] is True
    out = capsys.readouterr().out
    assert out.startswith("Still water, cold sky.\n4 tokens, $")


def test_every_command_the_readme_lists_exists() -> None:
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", README, flags=re.S))
    listed = set(re.findall(r"^promptlift (\w+)", shell, flags=re.M))
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert listed and listed <= commands, listed - commands


def test_quickstart_commands_are_make_targets() -> None:
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


def _readme_config(tmp_path: Path) -> Path:
    """The README's config block, written as is beside a copy of the example dataset it names."""
    block = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)[0]
    shutil.copy(Path(__file__).parent.parent / "examples/sentiment/reviews.jsonl", tmp_path / "reviews.jsonl")
    path = tmp_path / "config.yaml"
    path.write_text(block, encoding="utf-8")
    return path


def test_the_readme_config_block_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(_readme_config(tmp_path)), "--dry-run", "--json"]) == 0, (
        capsys.readouterr().err
    )
    plan = json.loads(capsys.readouterr().out)
    assert plan["stages"][0]["optimizer"] == "fewshot" and plan["stages"][0]["task_calls"] > 0
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_the_readme_python_metric_form_loads_a_module_beside_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`{python: "module:function"}` as the README writes it, from a module in the config's folder
    (no PYTHONPATH): it parses, its function is imported before any call, and it scores."""
    path = _readme_config(tmp_path)
    (tmp_path / "readme_metric_mod.py").write_text(
        "def score(row, output):\n    return float(output.strip().lower() == row['label'].lower())\n"
    )
    (line,) = re.findall(r"^# or (\{python: .*?\})", README, flags=re.M)
    text = path.read_text().replace(
        "{type: exact_match, field: label}", line.replace("my_metric", "readme_metric_mod")
    )
    path.write_text(text)
    config = load_config(path)
    assert config.metric == {"type": "python", "function": "readme_metric_mod:score", "field": "label"}
    metric = metric_from_config(config.metric, base_dir=tmp_path)
    assert metric(Row(0, {"label": "Positive"}), " positive").value == 1.0


def test_the_readme_agent_block_loads_as_written(tmp_path: Path) -> None:
    """The agent prompt the README shows, beside the agent example's tools: every key it names is
    taken, the history slot and the tools' overrides included."""
    block = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)[1]
    shutil.copy(Path(__file__).parent.parent / "examples/agent/directory.py", tmp_path / "directory.py")
    shutil.copy(Path(__file__).parent.parent / "examples/agent/questions.jsonl", tmp_path / "q.jsonl")
    path = tmp_path / "config.yaml"
    path.write_text(block + "dataset: {path: q.jsonl}\nmetric: {type: contains, field: city}\n")
    prompt = load_config(path).prompt
    assert [t.history or t.role for t in prompt.turns] == ["user", "assistant", "conversation"]
    assert prompt.user == "{question}" and prompt.max_steps == 5
    assert [t.name for t in prompt.tools] == ["find_employee", "team_office"]
    assert prompt.tools[1].description == "The city of a team's office." and prompt.tools[1].timeout_s == 5
    assert prompt.params["tool_choice"] == "auto"


def test_the_readme_structured_output_block_loads_and_scores_as_written(tmp_path: Path) -> None:
    """The structured-output prompt and json_fields metric the README shows: the schema is the
    prompt's, sent as its response_format, and the metric scores a JSON answer field by field."""
    block = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)[2]
    row = {"text": "2 teas for Ada, Oslo", "name": "Ada", "total": 7, "tags": '["tea"]', "city": "Oslo"}
    answer = {"customer": "ada", "total": 7.004, "tags": ["tea"], "address": {"city": "Oslo, Norway"}}
    (tmp_path / "orders.jsonl").write_text(json.dumps({**row, "answer": json.dumps(answer)}) + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(block + "dataset: {path: orders.jsonl}\noptimizer: fewshot\n")
    config = load_config(path)
    schema = config.prompt.output_schema
    assert schema is not None and (schema.name, schema.strict) == ("order", False)
    assert schema.schema["required"] == ["customer", "total"]
    assert config.prompt.request_params()["response_format"]["json_schema"]["name"] == "order"
    assert schema.parse(json.dumps(answer)).ok and not schema.parse('{"customer": "Ada"}').ok
    metric = metric_from_config(config.metric)
    assert metric(Row(0, row), json.dumps(answer)).value == 1.0
    half = metric(Row(0, row), json.dumps({**answer, "total": 9}))
    assert half.value == pytest.approx(3 / 5) and half.reason == "total: expected 7, got 9"


@pytest.mark.model
def test_the_program_example_runs_as_written_and_gains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "Program(" in c]
    monkeypatch.chdir(Path(__file__).parent.parent)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best_test.mean > result.initial_test.mean  # type: ignore[attr-defined]
    best, start = result.best.prompt, result.initial.prompt  # type: ignore[attr-defined]
    assert best.prompts["country"] != start.prompts["country"]
    before, after = capsys.readouterr().out.split("->")
    assert float(after) > float(before)
