"""The README's promises: its Python example runs as written, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptlift.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.model
def test_python_example_runs_and_improves_the_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    monkeypatch.chdir(Path(__file__).parent.parent)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best_test.mean > result.initial_test.mean  # type: ignore[attr-defined]
    before, after = capsys.readouterr().out.split("->")
    assert float(after) > float(before)


def test_every_command_the_readme_lists_exists() -> None:
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", README, flags=re.S))
    listed = set(re.findall(r"^promptlift (\w+)", shell, flags=re.M))
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert listed and listed <= commands, listed - commands


def test_quickstart_commands_are_make_targets() -> None:
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
