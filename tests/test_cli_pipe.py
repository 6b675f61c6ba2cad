"""A reader that closes stdout early (``promptlift ... | head -1``): every command ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promptlift.cli import STDOUT_CLOSED


def _closed_early(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """The command with its stdout a pipe whose reader closes it before the first byte (``head -0``):
    deterministic, as the interpreter starts long after the close; ``| head -2`` only sometimes is."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptlift", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # whatever the command prints meets a closed pipe
    with proc.stderr:
        err = proc.stderr.read()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=120), b"", err)


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("runs", "--help"), ("optimize", "c.yaml", "--dry-run"), ("runs", "show", "x", "--help")],
    ids=["help", "runs help", "optimize dry run", "runs show help"],
)
def test_a_closed_stdout_ends_quietly_with_141(argv: tuple[str, ...], tmp_path: Path) -> None:
    _config(tmp_path)
    done = _closed_early(*argv, cwd=tmp_path)
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr.decode()
    # argparse's --help may print before the reader goes and exit 0; a command's own output is 141
    allowed = (0, STDOUT_CLOSED) if "--help" in argv else (STDOUT_CLOSED,)
    assert done.returncode in allowed, done.stderr.decode()


def _config(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(
        "".join(f'{{"text": "r{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(12)), encoding="utf-8"
    )
    (tmp_path / "c.yaml").write_text(
        "model: local/gemma-3-270m\nprompt: {user: 'Review: {text}'}\n"
        "dataset: {path: d.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25}}\n"
        "metric: {type: exact_match, field: label}\noptimizer: {name: fewshot, params: {trials: 2}}\n"
        "store: runs/\n",
        encoding="utf-8",
    )


def test_main_returns_141_when_stdout_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptlift.cli import main

    _config(tmp_path)
    monkeypatch.chdir(tmp_path)

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["optimize", "c.yaml", "--dry-run"]) == STDOUT_CLOSED
