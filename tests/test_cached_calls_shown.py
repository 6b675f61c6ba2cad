"""A fully cached re-run shows its calls as the progress line counts them (sent and cached alike),
the same way in the summary, plan vs actual and `runs show`: never `calls 0`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, ok

CONFIG = (
    "model: openai/loop\napi_base: {base}\n"
    "prompt: {{system: 'Label it.', user: 'Text: {{text}}\\nLabel:', params: {{max_tokens: 2}}}}\n"
    "dataset: {{path: rows.jsonl}}\nmetric: {{type: exact_match, field: label}}\n"
    "optimizer: {{name: fewshot, params: {{trials: 3}}}}\n"
    "budget: {{max_calls: 80}}\nstore: runs/\ncache: cache.sqlite\n"
)


def test_a_cached_rerun_counts_its_calls_in_summary_plan_and_runs_show(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(base=loopback.openai_base))
    assert main(["optimize", str(config), "--yes"]) == 0
    cold = capsys.readouterr().out
    made = int(
        re.search(r"^calls (\d+) \(\1 sent, 0 from the cache; task \1, reasoning 0\) · ", cold, re.M)[1]
    )
    assert made > 0 and made == len(loopback.requests)
    sent = len(loopback.requests)

    assert main(["optimize", str(config), "--yes"]) == 0  # the same search, every answer cached
    warm, progress = capsys.readouterr()
    assert len(loopback.requests) == sent
    run_id = re.search(r"^run (\S+) ", warm, re.M)[1]
    said = f"{made} (0 sent, {made} from the cache"
    assert f"\ncalls {said}; task {made}, reasoning 0) · " in warm  # the summary
    planned = re.search(r"^  calls      ~(\d+) → (.*)$", warm, re.M)
    assert planned and planned[2] == f"{made} (0 sent, {made} from the cache)"  # plan vs actual
    counts = [int(n) for n in re.findall(r" · (\d+) calls · ", progress)]  # the progress lines
    assert counts and 0 < max(counts) <= made

    assert main(["runs", "show", run_id, "--store", str(tmp_path / "runs")]) == 0
    shown = capsys.readouterr().out
    assert (
        f"\nspend       {made} calls of max_calls 80 (0 sent, {made} from the cache; "
        f"{made} task, 0 reasoning)" in shown
    )
    assert f"\nplan        calls ~{planned[1]} → {made} calls (0 sent, {made} from the cache) · " in shown
    assert main(["runs", "show", run_id, "--store", str(tmp_path / "runs"), "--json"]) == 0
    spend = json.loads(capsys.readouterr().out)
    # the old fields keep their meaning (sent, and cached apart); the new ones count both
    assert spend["spend"]["calls"] == 0 and spend["spend"]["cached_calls"] == made
    assert spend["spend"]["work_calls"] == spend["spend"]["task_work_calls"] == made
    assert spend["plan_vs_spend"]["spent"]["work_calls"] == made
    assert main(["runs", str(tmp_path / "runs")]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"  {made} calls $" in listed[run_id]
