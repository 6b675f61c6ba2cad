"""``promptlift batch`` under what real users bring: malformed lines, reruns, its own flag errors.

LiteLLM over HTTP to the loopback server, through ``promptlift.cli.main``.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig
from promptlift.cli import main
from promptlift.testing.replies import empty_choices
from promptlift.testing.server import LoopbackServer, ok, server_error

CANARY = "sk-canary-batch-edges-0123456789"


@pytest.fixture
def server(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    return loopback


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(srv: LoopbackServer, inp: Path, out: Path, *extra: str) -> int:
    argv = ["batch", "--input", str(inp), "--output", str(out), "--model", "openai/x"]
    return main([*argv, "--api-base", srv.openai_base, "--timeout", "10", *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("promptlift: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- case 1: every line gets its own output line, with its id --------------------------------------

MALFORMED: list[tuple[object, object, str]] = [  # (line, its id in the output, words of the error)
    ({"id": "stop", "prompt": "p", "stop": 5}, "stop", '"stop" must be'),
    ({"id": "model", "prompt": "p", "model": 5}, "model", '"model" must be'),
    ({"id": "rf", "prompt": "p", "response_format": "json"}, "rf", '"response_format" must be'),
    ({"id": "empty", "messages": []}, "empty", '"messages" must be a non-empty list'),
    ("{not json", None, "not JSON"),
    ("[1, 2]", None, "must be a JSON object"),
    ({"id": [1, {"a": None}], "messages": [{"role": "user", "content": 5}]}, [1, {"a": None}], "content"),
    ({"id": 3.5, "prompt": "p", "temprature": 1}, 3.5, 'did you mean "temperature"'),
    ({"id": {"k": True}, "prompt": "p", "max_tokens": 10**30}, {"k": True}, '"max_tokens" must be'),
    ('{"id": "nan", "prompt": "p", "temperature": NaN}', None, "NaN is not a JSON number"),
    ('{"id": "big", "prompt": "p", "top_p": 1e999}', None, "out of range"),
    ('{"id": "twice", "prompt": "p", "prompt": "q"}', None, "appears twice"),
    ({"id": False, "prompt": "p", "max_tokens": 2.5}, False, '"max_tokens" must be a whole number'),
    ({"id": "both", "prompt": "p", "messages": [{"role": "user", "content": "q"}]}, "both", "exactly one"),
    ({"id": "role", "messages": [{"role": "tool", "content": "q"}]}, "role", "role must be one of"),
    ("[" * 100_000, None, "not JSON"),
]


def test_malformed_lines_and_an_empty_answer_each_get_their_own_line(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.handler = lambda r: (
        empty_choices()
        if r.json["messages"][-1]["content"] == "nothing"
        else ok("re " + r.json["messages"][-1]["content"])
    )
    good: list[object] = [{"id": 0, "prompt": "first"}]
    lines = good + [bad for bad, _, _ in MALFORMED] + [{"id": None, "prompt": "nothing"}]
    lines += [{"id": "last", "prompt": "after"}, {"prompt": "no id"}]
    inp = write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert run(server, inp, out, "--no-cache", "--max-retries", "0", "--concurrency", "4") == 1
    got = read(out)
    assert len(got) == len(lines)
    assert [o["line"] for o in got] == list(range(1, len(lines) + 1))
    assert got[0]["ok"] and got[0]["id"] == 0 and got[0]["content"] == "re first"
    for record, (_, want_id, words) in zip(got[1:], MALFORMED, strict=False):
        assert record["ok"] is False and record["id"] == want_id, record
        error = record["error"]
        assert isinstance(error, dict) and error["type"] == "DatasetError" and words in error["message"], (
            record
        )
    empty, last, no_id = got[-3:]
    assert empty["ok"] is False and empty["id"] is None
    assert empty["error"] == {  # a typed, retryable error, not an IndexError ending the batch
        "type": "ProviderUnavailable",
        "message": "ProviderUnavailable (HTTP 200) from openai/x: malformed response from the provider: "
        "a 200 with no choices (no answer in the body)",
    }
    assert last["ok"] and last["id"] == "last" and last["content"] == "re after"
    assert no_id["ok"] and no_id["id"] is None
    assert sorted(r.json["messages"][-1]["content"] for r in server.requests) == [
        "after",
        "first",
        "no id",
        "nothing",
    ]


# -- case 2: the output file is never the input, and a re-run resumes from it -----------------------


def test_output_that_is_the_input_is_refused_by_any_path(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": i, "prompt": f"q{i}"} for i in range(3)])
    before = inp.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(inp)
    os.link(inp, tmp_path / "hard.jsonl")
    (tmp_path / "sub").mkdir()
    for same in (inp, tmp_path / "sub" / ".." / "in.jsonl", tmp_path / "link.jsonl", tmp_path / "hard.jsonl"):
        assert run(server, inp, same, "--no-cache") == 2
        assert "is the input file itself" in one_error_line(capsys)
    assert inp.read_bytes() == before
    assert server.requests == []


def test_a_rerun_without_cache_keeps_answers_and_retries_failures_and_a_cut_line(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.script(server_error(), model="x")  # the first request sent fails (no retries)
    server.set_default(ok("fine"))
    inp = write(tmp_path / "in.jsonl", [{"id": i, "prompt": f"q{i}"} for i in range(6)])
    out = tmp_path / "out.jsonl"
    assert run(server, inp, out, "--no-cache", "--max-retries", "0", "--concurrency", "1") == 1
    first = read(out)
    assert [o["ok"] for o in first] == [False, True, True, True, True, True]
    # As if killed while writing line 6: a partial last line, and line 5 never written.
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:4]) + text[5][:25])
    sent = len(server.requests)
    assert run(server, inp, out, "--no-cache") == 0
    again = read(out)
    assert [o["ok"] for o in again] == [True] * 6 and [o["id"] for o in again] == list(range(6))
    assert again[1:4] == first[1:4]  # kept as they were
    assert sorted(r.json["messages"][-1]["content"] for r in server.requests[sent:]) == ["q0", "q4", "q5"]
    # Everything answered: a third run sends nothing and leaves the file as it is.
    settled = out.read_bytes()
    assert run(server, inp, out, "--no-cache") == 0
    assert len(server.requests) == sent + 3 and out.read_bytes() == settled


def test_a_changed_line_is_sent_again_and_another_files_content_is_refused(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = lambda r: ok("re " + r.json["messages"][-1]["content"])
    inp = write(tmp_path / "in.jsonl", [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}])
    out = tmp_path / "out.jsonl"
    assert run(server, inp, out, "--no-cache") == 0
    write(inp, [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "changed"}])
    assert run(server, inp, out, "--no-cache") == 0
    assert [o["content"] for o in read(out)] == ["re a", "re changed"]
    assert len(server.requests) == 3
    notes = write(tmp_path / "notes.jsonl", ["my own notes", {"id": 1}])
    capsys.readouterr()
    assert run(server, inp, notes, "--no-cache") == 2
    assert "other than promptlift batch output" in one_error_line(capsys)
    assert notes.read_text() == 'my own notes\n{"id": 1}\n' and len(server.requests) == 3


# -- case 3: identical sampled lines are separate samples ------------------------------------------


def test_identical_sampled_lines_are_each_their_own_sample(server: LoopbackServer, tmp_path: Path) -> None:
    counter = itertools.count(1)
    server.handler = lambda r: ok(f"sample {next(counter)}")
    inp = write(tmp_path / "in.jsonl", [{"id": i, "prompt": "a poem", "temperature": 1} for i in range(5)])
    out, cache = tmp_path / "out.jsonl", str(tmp_path / "c.sqlite")
    assert run(server, inp, out, "--cache", cache, "--concurrency", "1") == 0
    first = read(out)
    assert len(server.requests) == 5
    assert len({o["content"] for o in first}) == 5
    # From the cache, each line gets back the sample it had, not one sample for all.
    out.unlink()
    assert run(server, inp, out, "--cache", cache) == 0
    again = read(out)
    assert len(server.requests) == 5 and all(o["cached"] for o in again)
    assert [o["content"] for o in again] == [o["content"] for o in first]


# -- case 5: --max-cost on a model without a price ----------------------------------------------------


def test_max_cost_on_an_unpriced_model_is_refused_before_any_line(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": i, "prompt": f"q{i}"} for i in range(30)])
    out = tmp_path / "out.jsonl"
    assert run(server, inp, out, "--no-cache", "--max-cost", "1") == 2
    assert "--max-cost cannot hold for openai/x" in one_error_line(capsys)
    assert not out.exists() and server.requests == []
    assert (
        run(server, inp, out, "--no-cache", "--max-cost", "1", "--input-price", "0", "--output-price", "0")
        == 0
    )
    assert len(read(out)) == 30


# -- case 6: batch's own flag errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"input": "missing.jsonl"}, "no such file"),
        ({"output": "nowhere/out.jsonl"}, "does not exist"),
        ({"output": "."}, "is a folder"),
        ({"flags": ["--concurrency", "0"]}, "--concurrency must be at least 1"),
        ({"flags": ["--rpm", "-5"]}, "--rpm must be more than 0"),
        ({"flags": ["--rpm", "0"]}, "--rpm must be more than 0"),
        ({"flags": ["--tpm", "nan"]}, "--tpm must be more than 0"),
        ({"flags": ["--max-retries", "-1"]}, "--max-retries must be at least 0"),
        ({"flags": ["--timeout", "0"]}, "--timeout must be more than 0"),
        ({"flags": ["--max-cost", "-1"]}, "--max-cost must be at least 0"),
    ],
)
def test_a_bad_flag_is_one_line_exit_2_and_nothing_written(
    server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, object],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.jsonl", [{"id": 1, "prompt": "q"}])
    inp = Path(str(change.get("input", "in.jsonl")))
    out = Path(str(change.get("output", "out.jsonl")))
    flags = change.get("flags", [])
    assert isinstance(flags, list)
    assert run(server, inp, out, "--cache", str(tmp_path / "c.sqlite"), *flags) == 2
    assert words in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    assert server.requests == []


def test_the_library_refuses_limits_that_mean_nothing_with_a_config_error() -> None:
    from promptlift.client.config import RateLimit
    from promptlift.errors import ConfigError

    for bad in ({"rpm": -5}, {"rpm": 0}, {"tpm": float("nan")}, {"rpm": 10, "burst_s": 0}):
        with pytest.raises(ConfigError, match="must be a positive number"):
            RateLimit("*", **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        Client(ClientConfig(concurrency=0))


def test_blank_lines_are_skipped_and_keep_their_numbers(server: LoopbackServer, tmp_path: Path) -> None:
    """The README: one output line per input line, blank lines skipped; ``line`` is the input's."""
    server.set_default(ok("fine"))
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "prompt": "p1"}, "", "   ", {"id": "b", "prompt": "p2"}])
    out = tmp_path / "out.jsonl"
    assert run(server, inp, out, "--no-cache") == 0
    records = read(out)
    assert [(r["id"], r["line"], r["ok"]) for r in records] == [("a", 1, True), ("b", 4, True)]
    assert len(server.requests) == 2


def test_batch_takes_an_endpoint_per_model_and_refuses_one_for_a_model_not_in_the_run(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--api-base MODEL=URL`` as on ``complete``: the model's calls go there, and a misspelt model
    name is one line, exit 2, nothing sent (it would otherwise go to the public endpoint)."""
    server.set_default(ok("fine"))
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "prompt": "p1"}])
    out = tmp_path / "out.jsonl"
    argv = ["batch", "--input", str(inp), "--output", str(out), "--model", "openai/x", "--timeout", "10"]
    argv += ["--cache", str(tmp_path / "cache.sqlite")]  # its own cache: this prompt may be cached elsewhere
    assert main([*argv, "--api-base", f"openai/x={server.openai_base}"]) == 0
    assert [r["ok"] for r in read(out)] == [True] and len(server.requests) == 1
    capsys.readouterr()
    typo = tmp_path / "typo.jsonl"
    argv[4] = str(typo)
    assert main([*argv, "--api-base", f"openai/y={server.openai_base}"]) == 2
    assert "openai/y" in one_error_line(capsys) and not typo.exists() and len(server.requests) == 1
