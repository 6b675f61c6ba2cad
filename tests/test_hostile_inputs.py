"""What real users bring: a table of bad configs, datasets and flags, replayed through ``main``.

Every case must end the same way: exit code 2, exactly one line on stderr naming the problem, no
traceback, and nothing written (no run store, no cache file, no output) in the folder it ran in.
To add a case, append a ``Case`` to ``CASES``: ``config`` edits the good config below (a key set to
``DROP`` is removed), ``files`` adds or replaces files, ``argv`` is the command (``{config}`` is the
config's path).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.cli import main

DROP = object()
ROWS = "".join(
    json.dumps({"text": f"review {i}", "label": "positive" if i % 2 else "negative"}) + "\n"
    for i in range(12)
)
GOOD: dict[str, Any] = {
    "model": "local/gemma-3-270m",
    "prompt": {
        "system": "Classify the review.",
        "user": "Review: {text}\nSentiment:",
        "params": {"max_tokens": 4},
    },
    "dataset": {"path": "d.jsonl", "split": {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 0}},
    "metric": {"type": "exact_match", "field": "label"},
    "optimizer": {"name": "fewshot", "params": {"trials": 2}},
    "store": "runs/",
}
DRY = ["optimize", "{config}", "--dry-run"]
BASE = ("eval", "{config}", "--baseline", "b.yaml")
RUN = ["optimize", "{config}", "--yes"]  # a real run: whatever slips past the checks would write a store


@dataclass(frozen=True)
class Case:
    id: str
    config: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value (DROP removes it)
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    argv: tuple[str, ...] = tuple(DRY)
    says: str = ""  # a substring the one error line must contain


def _edited(edits: Mapping[str, Any]) -> dict[str, Any]:
    config = json.loads(json.dumps(GOOD))
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return config


CASES = [
    # -- a key misspelt at any level: refused with the nearest valid name --------------------------
    Case("prompt.sytem", {"prompt.sytem": "x"}, says="did you mean `system`"),
    Case("dataset.spilt", {"dataset.spilt": {"train": 1}}, says="did you mean `split`"),
    Case("split.sead", {"dataset.split.sead": 3}, says="did you mean `seed`"),
    Case("metric ignorecase", {"metric.ignorecase": True}, says="did you mean `ignore_case`"),
    Case("top-level optimiser", {"optimiser": "fewshot"}, says="did you mean `optimizer`"),
    Case("budget max_cals", {"budget": {"max_cals": 5}}, says="did you mean `max_calls`"),
    Case("retry max_attempt", {"retry": {"max_attempt": 5}}, says="did you mean `max_attempts`"),
    Case("prompt param temprature", {"prompt.params.temprature": 0}, says="did you mean `temperature`"),
    Case("prompt param unsupported", {"prompt.params.logit_bias": {"50256": -100}}, says="logit_bias"),
    Case("optimizer param trails", {"optimizer.params": {"trails": 3}}, says="did you mean `trials`"),
    Case("optimizer param typo, real run", {"optimizer.params": {"max_demo": 3}}, argv=tuple(RUN)),
    Case("unknown metric type", {"metric.type": "exact"}, says="did you mean `exact_match`"),
    Case("unknown optimizer", {"optimizer.name": "fewshots"}, says="did you mean `fewshot`"),
    Case("acceptance rule", {"acceptance": {"rule": "bestest"}}, says="best, significant"),
    Case("judge key of another metric", {"metric.rubric": "be fair"}, says="rubric"),
    # -- values of the wrong kind ----------------------------------------------------------------------
    Case("seed text", {"seed": "abc"}, says="`seed` must be a whole number"),
    Case("concurrency text", {"concurrency": "x"}, says="`concurrency`"),
    Case("concurrency negative", {"concurrency": -3}, says="`concurrency`"),
    Case("timeout text", {"timeout": "soon"}, says="`timeout`"),
    Case("timeout negative", {"timeout": -1}, says="`timeout`"),
    Case("split train text", {"dataset.split.train": "half"}, says="`dataset.split.train`"),
    Case("api_base a number", {"api_base": 123}, says="`api_base`"),
    Case("temperature text", {"prompt.params.temperature": "cold"}, says="`prompt.params.temperature`"),
    Case("trials text", {"optimizer.params.trials": "many"}, says="`optimizer.params.trials`"),
    Case("top_p above 1", {"prompt.params.top_p": 5}, says="`prompt.params.top_p`"),
    Case("stop a number", {"prompt.params.stop": 3}, says="`prompt.params.stop`"),
    Case("abs_tol text", {"metric": {"type": "numeric", "field": "label", "abs_tol": "x"}}, says="abs_tol"),
    Case("optimizer params a list", {"optimizer.params": [1, 2]}, says="`optimizer.params`"),
    Case("prompt a text", {"prompt": "Review: {text}"}, says="`prompt` must be a mapping"),
    Case("reasoning_model a number", {"reasoning_model": 7}, says="`reasoning_model`"),
    # -- values accepted before that meant nothing --------------------------------------------------------
    Case("concurrency 0", {"concurrency": 0}, says="at least 1"),
    Case("optimizer empty list", {"optimizer": []}, says="empty list"),
    Case("max_calls a fraction", {"budget": {"max_calls": 0.5}}, says="whole number"),
    Case("max_demos negative", {"optimizer.params.max_demos": -1}, says="max_demos"),
    Case("trials 0", {"optimizer.params.trials": 0}, says="trials"),
    Case("prompt max_tokens 0", {"prompt.params.max_tokens": 0}, says="max_tokens"),
    Case("negative price", {"prices": {"local/gemma-3-270m": [-1, 0]}}, says="price"),
    Case("test fraction 0", {"dataset.split.test": 0}, says="`dataset.split.test`"),
    Case(
        "split sums to 1.9",
        {"dataset.split": {"train": 0.9, "validation": 0.5, "test": 0.5}},
        says="`dataset.split` fractions sum to 1.9",
    ),
    Case("split sums to 0.6", {"dataset.split.train": 0.1}, says="sum to 0.6"),
    Case("split sums to 1.9, eval", {"dataset.split.train": 1.4}, argv=("eval", "{config}"), says="1.9"),
    Case(
        "validation fraction negative", {"dataset.split.validation": -0.25}, says="`dataset.split.validation`"
    ),
    Case(
        "choice with no labels", {"metric": {"type": "choice", "field": "label", "labels": []}}, says="labels"
    ),
    Case("regex with nothing to match", {"metric": {"type": "regex"}}, says="pattern"),
    Case("judge with no rubric", {"metric": {"type": "llm_judge", "field": "label"}}, says="rubric"),
    Case(
        "metaprompt rounds 0", {"optimizer": {"name": "metaprompt", "params": {"rounds": 0}}}, says="rounds"
    ),
    # -- fields and files a run would only find after its first calls -----------------------------------
    Case("metric field misspelt", {"metric.field": "lable"}, says="fields: text, label"),
    Case("metric field misspelt, real run", {"metric.field": "lable"}, argv=tuple(RUN), says="did you mean"),
    Case("fewshot answer_field misspelt", {"optimizer.params.answer_field": "lable"}, says="lable"),
    Case("placeholder not in the dataset", {"prompt.user": "Review: {txt}"}, says="{txt}"),
    Case("python metric without a colon", {"metric": {"python": "my_metric"}}, says="module:function"),
    Case(
        "python metric module missing", {"metric": {"python": "no_such_mod_xyz:score"}}, says="cannot import"
    ),
    Case(
        "python metric module fails on import",
        {"metric": {"python": "broken_metric_mod:score", "field": "label"}},
        files={"broken_metric_mod.py": "raise RuntimeError('boom')\n"},
        says="RuntimeError: boom",
    ),
    Case(
        "python metric not a function",
        {"metric": {"python": "os:sep", "field": "label"}},
        says="not a function",
    ),
    Case("dataset missing", {"dataset.path": "nope.jsonl"}, says="not found"),
    Case("dataset a folder", {"dataset.path": "adir"}, files={"adir/d.jsonl": ROWS}, says="adir is a folder"),
    Case(
        "python metric module calls sys.exit on import",
        {"metric": {"python": "exiting_metric_mod:score", "field": "label"}},
        files={"exiting_metric_mod.py": "import sys\nsys.exit(3)\n"},
        says="'exiting_metric_mod' called sys.exit(3)",
    ),
    Case(
        "python metric module calls sys.exit on import, real run",
        {"metric": {"python": "exiting_metric_mod2:score", "field": "label"}},
        files={"exiting_metric_mod2.py": "raise SystemExit('usage: ...')\n"},
        argv=tuple(RUN),
        says="sys.exit",
    ),
    Case("dataset under ~ missing", {"dataset.path": "~/no-such-promptlift-dir/d.jsonl"}, says="no-such"),
    Case(
        "dataset not UTF-8",
        files={"d.jsonl": '{"text": "caf\xe9", "label": "x"}\n'.encode("latin-1")},
        says="UTF-8",
    ),
    Case("dataset empty", files={"d.jsonl": "\n"}, says="empty"),
    Case("dataset ragged", files={"d.jsonl": ROWS + '{"text": "t"}\n'}, says="missing field"),
    Case("cache a text file", {"cache": "notes.txt"}, files={"notes.txt": "my notes\n"}, argv=tuple(RUN)),
    Case(
        "cache a text file, dry run",
        {"cache": "notes.txt"},
        files={"notes.txt": "keep\n"},
        says="not an SQLite",
    ),
    Case("store a text file", {"store": "notes.txt"}, files={"notes.txt": "my notes\n"}, argv=tuple(RUN)),
    Case("cache a folder", {"cache": "adir"}, files={"adir/keep": "x"}, says="folder"),
    # -- the config file itself -----------------------------------------------------------------------------
    Case("config not YAML", files={"c.yaml": "model: [unclosed\n"}, says="not valid YAML"),
    Case("config not UTF-8", files={"c.yaml": "model: caf\xe9\n".encode("latin-1")}, says="UTF-8"),
    Case("config a list", files={"c.yaml": "- a\n- b\n"}, says="mapping"),
    Case("config missing", argv=("optimize", "no-such.yaml", "--dry-run"), says="not found"),
    # -- the same through other commands --------------------------------------------------------------------
    Case("eval with a bad seed", {"seed": "abc"}, argv=("eval", "{config}"), says="`seed`"),
    Case("eval with a misspelt metric field", {"metric.field": "lable"}, argv=("eval", "{config}")),
    Case("compare with concurrency 0", {"concurrency": 0}, argv=("models", "compare", "{config}")),
    # -- eval --baseline FILE: checked as a config's prompt is, and against the config's dataset ----------
    Case("baseline placeholder not in the dataset", files={"b.yaml": 'user: "{nofield}"\n'}, argv=BASE),
    Case(
        "baseline malformed braces", files={"b.yaml": 'user: "{text"\n'}, argv=BASE, says="malformed braces"
    ),
    Case(
        "baseline key misspelt", files={"b.yaml": "sytem: hi\nuser: '{text}'\n"}, argv=BASE, says="`system`"
    ),
    Case(
        "baseline param misspelt",
        files={"b.yaml": "user: '{text}'\nparams: {tempreture: 0}\n"},
        argv=BASE,
        says="did you mean `temperature`",
    ),
    Case(
        "baseline a run config of another dataset",
        files={"b.yaml": yaml.safe_dump({**GOOD, "prompt": {"user": "Q: {question}"}})},
        argv=BASE,
        says="{question}",
    ),
    Case("baseline not a prompt", files={"b.yaml": "colour: blue\n"}, argv=BASE, says="not a prompt"),
    Case(
        "baseline run id, no store yet",
        argv=("eval", "{config}", "--baseline", "nope-1"),
        says="no run store",
    ),
    Case(
        "baseline messages placeholder missing",
        files={"b.yaml": "messages:\n  - {role: user, content: '{txt}'}\n"},
        argv=BASE,
        says="{txt}",
    ),
    Case("compare --target 5", argv=("models", "compare", "{config}", "--target", "5"), says="--target"),
    Case(
        "compare --price negative",
        argv=("models", "compare", "{config}", "--price", "m=-1,2"),
        says="--price",
    ),
    Case("compare --price text", argv=("models", "compare", "{config}", "--price", "m=a,b"), says="--price"),
    Case("optimize --confirm-above -1", argv=("optimize", "{config}", "--confirm-above", "-1")),
    Case("optimize --dryrun", argv=("optimize", "{config}", "--dryrun"), says="--dryrun"),
    Case("optimize --new-run alone", argv=("optimize", "{config}", "--new-run"), says="--resume RUN_ID"),
    Case("optimize --new-run alone, dry run", argv=(*DRY, "--new-run"), says="with --resume"),
    Case("optimize --resume no store yet, dry run", argv=(*DRY, "--resume", "nope-1"), says="nope-1"),
    Case("optimize --resume no store yet", argv=(*RUN, "--resume", "nope-1"), says="no run store"),
    Case("optimize --resume empty", argv=(*DRY, "--resume", ""), says="--resume is empty"),
    Case("optimize --resume, no store: key", {"store": DROP}, argv=(*DRY, "--resume", "x-1"), says="store"),
    Case("complete --max-tokens 0", argv=("complete", "hi", "--max-tokens", "0"), says="--max-tokens"),
    Case("complete --max-tokens x", argv=("complete", "hi", "--max-tokens", "x"), says="--max-tokens"),
    Case(
        "complete --temperature cold", argv=("complete", "hi", "--temperature", "cold"), says="--temperature"
    ),
    Case("complete --temperature nan", argv=("complete", "hi", "--temperature", "nan"), says="--temperature"),
    Case("complete --timeout -1", argv=("complete", "hi", "--timeout", "-1"), says="--timeout"),
    Case("complete --max-retries -2", argv=("complete", "hi", "--max-retries", "-2"), says="--max-retries"),
    # -- the breaker and price knobs (fallback:, prices: rates, --breaker-*) ----------------------------
    Case(
        "fallback threshold misspelt",
        {"fallback.failure_treshold": 2},
        says="did you mean `failure_threshold`",
    ),
    Case(
        "fallback threshold negative", {"fallback.failure_threshold": -1}, says="`fallback.failure_threshold`"
    ),
    Case("fallback threshold fraction", {"fallback.failure_threshold": 1.5}, says="whole number"),
    Case("fallback cooldown text", {"fallback.cooldown": "soon"}, says="`fallback.cooldown`"),
    Case("fallback cooldown NaN", {"fallback.cooldown": float("nan")}, says="`fallback.cooldown`"),
    Case("fallback wait_for_probe text", {"fallback.wait_for_probe": "no"}, says="true or false"),
    Case("fallback a list", {"fallback": [1]}, says="`fallback` must be a mapping"),
    Case(
        "price rate misspelt",
        {"prices": {"m/x": {"input": 1, "output": 2, "cache_writes": 3}}},
        says="did you mean `cache_write`",
    ),
    Case(
        "price rate negative",
        {"prices": {"m/x": {"input": 1, "output": 2, "reasoning": -1}}},
        says="reasoning",
    ),
    Case("price rate NaN", {"prices": {"m/x": {"input": float("nan"), "output": 2}}}, says="input"),
    Case("price mapping without output", {"prices": {"m/x": {"input": 1}}}, says="output"),
    Case(
        "batch --breaker-threshold -1",
        argv=("batch", "--input", "d.jsonl", "--output", "o.jsonl", "--breaker-threshold", "-1"),
        says="--breaker-threshold",
    ),
    Case("complete --breaker-cooldown nan", argv=("complete", "hi", "--breaker-cooldown", "nan")),
    Case("complete --breaker-threshold 1.5", argv=("complete", "hi", "--breaker-threshold", "1.5")),
    Case("program left empty", {"prompt": DROP, "program": None}, says="got null (an empty value)"),
    # -- a store or cache folder that cannot be created: one line, at the dry run and at the run ----------
    Case("store under /proc, dry run", {"store": "/proc/nostore/"}, says="`store` /proc/nostore cannot be"),
    Case("store under /proc, real run", {"store": "/proc/nostore/", "cache": False}, argv=tuple(RUN)),
    Case("store under /proc, eval", {"store": "/proc/nostore/"}, argv=("eval", "{config}"), says="`store`"),
    Case("cache under /proc, dry run", {"cache": "/proc/nocache/c.sqlite"}, says="writable folder"),
    Case("cache under /proc, real run", {"cache": "/proc/nocache/c.sqlite"}, argv=tuple(RUN)),
    Case("cache under /proc, eval", {"cache": "/proc/nocache/c.sqlite"}, argv=("eval", "{config}")),
    Case("store inside a file", {"store": "d.jsonl/runs/"}, says="is a file, not a folder"),
    Case(
        "batch --cache under /proc",
        argv=("batch", "--input", "d.jsonl", "--output", "o.jsonl", "--cache", "/proc/nocache/c.sqlite"),
        says="cannot be created",
    ),
    Case(
        "model of an unknown provider", {"model": "bogus/xyz"}, says="'bogus' is not a provider LiteLLM knows"
    ),
    Case("model naming no provider", {"model": "nonsense-model-x"}, says="names no provider"),
    Case("unknown embedded model", {"model": "local/gemma-9b"}, says="unknown local model 'gemma-9b'"),
    Case("unknown reasoning model provider", {"reasoning_model": "antropic/claude"}, says="'antropic'"),
    Case("unknown provider, real run", {"model": "bogus/xyz"}, argv=tuple(RUN), says="bogus"),
    Case(
        "regex metric that does not compile",
        {"metric": {"type": "regex", "pattern": "(unclosed"}},
        says="not a valid regular expression",
    ),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in folder.rglob("*")}


def _lay_out(tmp_path: Path, case: Case) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_edited(case.config), sort_keys=False), encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(ROWS, encoding="utf-8")
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return config


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _lay_out(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    code = main([a.replace("{config}", str(config)) for a in case.argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("promptlift") and "error" in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert case.says in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # no store, no cache file, no output, the user's files intact


def test_the_table_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


def test_a_csv_with_a_byte_order_mark_loads_with_clean_field_names(tmp_path: Path) -> None:
    from promptlift.optimize import Dataset

    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\nnice,positive\n".encode())
    data = Dataset.load(path)
    assert data.fields == ("text", "label") and data[0]["text"] == "nice"


def test_end_of_input_at_the_cost_confirmation_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-D at "Run it? [y/N]" on a paid model: a usage error naming --yes, not an EOFError."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    config = _lay_out(tmp_path, Case("paid", {"model": "openai/gpt-4o-mini"}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", Terminal(""))
    before = _snapshot(tmp_path)
    assert main(["optimize", str(config), "--confirm-above", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("promptlift: error:") and "--yes" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("argv", [DRY, RUN], ids=["dry run", "real run"])
def test_resume_of_a_run_not_in_the_store_is_refused_and_the_store_left_alone(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlift.optimize.store import RunStore

    config = _lay_out(tmp_path, Case("store exists"))
    RunStore(tmp_path / "runs").close()  # a store with no such run
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main([a.replace("{config}", str(config)) for a in argv] + ["--resume", "nope-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run 'nope-1'" in err[0] and "promptlift runs" in err[0], err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "text",
    [
        "messages:\n  - {role: system, content: Classify.}\n  - {role: user, content: 'Review: {text}'}\n",
        '{"system": "Classify.", "user": "Review: {text}", "demos": [], "params": {"max_tokens": 4}}',
        "prompt: {system: Classify., user: 'Review: {text}'}\n",
    ],
    ids=["messages", "exported json", "prompt section"],
)
def test_a_baseline_written_as_a_config_prompt_is_accepted(text: str, tmp_path: Path) -> None:
    from promptlift.cli.optimize import _baseline
    from promptlift.optimize.config import load_config
    from promptlift.optimize.prompt import Prompt

    config = load_config(_lay_out(tmp_path, Case("ok")))
    (tmp_path / "b.yaml").write_text(text, encoding="utf-8")
    baseline = _baseline(config, str(tmp_path / "b.yaml"))
    assert (
        isinstance(baseline, Prompt)
        and baseline.fields() == ["text"]
        and "Classify" in baseline.system + str(baseline.turns)
    )


def test_split_fractions_within_the_tolerance_of_1_are_accepted(tmp_path: Path) -> None:
    from promptlift.optimize.config import load_config

    thirds = {"dataset.split": {"train": 0.33, "validation": 0.33, "test": 0.33}}
    assert load_config(_lay_out(tmp_path, Case("thirds", thirds))).split["train"] == 0.33


def test_tilde_in_config_paths_is_the_home_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlift.optimize.config import load_config

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "d.jsonl").write_text(ROWS, encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    config = _lay_out(tmp_path, Case("home", {"dataset.path": "~/data/d.jsonl", "store": "~/runs"}))
    loaded = load_config(config)
    assert loaded.dataset_path == home / "data" / "d.jsonl" and loaded.store == home / "runs"
    assert main(["optimize", str(config), "--dry-run"]) == 0, capsys.readouterr().err


def test_the_stores_refuse_a_folder_they_cannot_create_with_one_config_error(tmp_path: Path) -> None:
    """Where the file is opened (a library caller too): a ConfigError naming the path, no OSError."""
    from promptlift.client.cache import SQLiteStore
    from promptlift.errors import ConfigError
    from promptlift.optimize.store import RunStore

    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cache /proc/nocache/c.sqlite cannot be created .*writable"):
        SQLiteStore("/proc/nocache/c.sqlite")
    with pytest.raises(ConfigError, match=r"`store` /proc/nostore cannot be created .*writable folder"):
        RunStore("/proc/nostore/")
    with pytest.raises(ConfigError, match="cannot be created"):
        RunStore(tmp_path / "afile" / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_folder_without_write_permission_is_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from promptlift.errors import ConfigError
    from promptlift.paths import check_creatable

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    with pytest.raises(ConfigError, match=r"not writable\); name a writable folder"):
        check_creatable(tmp_path / "runs" / "runs.sqlite", "`store`", kind="folder")
    assert list(tmp_path.iterdir()) == []
