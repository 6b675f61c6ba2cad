"""The same optimization runs from a plain script, inside a running event loop and in a real
notebook kernel (ipykernel, driven by nbclient as Jupyter drives it), with the same result.

The optimization is a program of two prompts and a pipeline of two optimizers, written the way the
README shows it: one import, the model named once in the client.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
from nbclient import NotebookClient

# Prints the run's outcome as one JSON line: the best program's prompts, the scores, the calls.
CELL = textwrap.dedent(
    """
    import json
    from promptlift import Budget, Client, ClientConfig, FewShot, MetaPrompt, Pipeline, RunSettings
    from promptlift.optimize import ExactMatch
    from promptlift.testing import FunctionProvider
    from promptlift.testing.conformance import (
        REASONING_MODEL, synthetic_program_model, synthetic_splits, two_step_program,
    )

    model = FunctionProvider(synthetic_program_model)
    client = Client(ClientConfig(models=("scripted/task",)), provider=model)
    pipeline = Pipeline(
        [MetaPrompt(rounds=2, candidates_per_round=1, minibatch=4), FewShot(answer_field="label", trials=3)]
    )
    result = pipeline.optimize(
        two_step_program(), synthetic_splits(), ExactMatch("label"), client=client,
        settings=RunSettings(reasoning_model=REASONING_MODEL, budget=Budget(max_calls=600)),
    )
    client.close()
    outcome = {
        "best": result.best.prompt.to_dict(),
        "initial_test": result.initial_test.mean,
        "best_test": result.best_test.mean,
        "calls": result.spend.calls,
        "stages": [s.optimizer for s in result.stages],
    }
    print("OUTCOME " + json.dumps(outcome, sort_keys=True))
    """
)


def outcome(text: str) -> dict[str, object]:
    line = next(line for line in text.splitlines() if line.startswith("OUTCOME "))
    return json.loads(line.removeprefix("OUTCOME "))  # type: ignore[no-any-return]


def from_a_script(tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "optimize.py"
    script.write_text(CELL, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return outcome(done.stdout)


def test_a_script_a_running_loop_and_a_notebook_kernel_give_the_same_result(tmp_path: Path) -> None:
    script = from_a_script(tmp_path)
    assert script["stages"] == ["metaprompt", "fewshot"]
    assert script["best_test"] > script["initial_test"]  # type: ignore[operator]

    # Inside a running event loop (an async web handler, a notebook's): the blocking call still works.
    async def handler() -> dict[str, object]:
        namespace: dict[str, object] = {}
        printed: list[str] = []
        namespace["print"] = printed.append
        exec(CELL, namespace)  # the same cell, as code in a coroutine
        return outcome("\n".join(printed))

    assert asyncio.run(handler()) == script

    # A real kernel: the cell executed by ipykernel, as Jupyter runs it (a loop is running there).
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import asyncio; asyncio.get_running_loop()"),  # the kernel's loop runs
        nbformat.v4.new_code_cell(CELL),
    ]
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    streams = [out["text"] for out in notebook.cells[1]["outputs"] if out.get("output_type") == "stream"]
    errors = [out for cell in notebook.cells for out in cell["outputs"] if out.get("output_type") == "error"]
    assert not errors, errors
    assert outcome("".join(streams)) == script
