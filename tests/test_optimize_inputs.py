"""Bad input gets a clear error naming the problem and the fix: datasets, templates, configs, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.client.config import ModelPrice, RateLimit
from promptlift.client.retry import RetryPolicy
from promptlift.errors import ConfigError, DatasetError, TemplateError
from promptlift.optimize import Dataset, Prompt, split
from promptlift.optimize.config import load_config
from promptlift.optimize.dataset import Row
from promptlift.optimize.metrics import (
    Choice,
    Contains,
    ExactMatch,
    Normalize,
    Numeric,
    Regex,
    Score,
    TokenF1,
    metric_from_config,
)
from promptlift.testing.server import LoopbackServer, ok, server_error


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- datasets ---------------------------------------------------------------------------------------
def test_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"empty.jsonl: the dataset is empty"):
        Dataset.load(write(tmp_path, "empty.jsonl", "\n\n"))


def test_row_missing_a_field_names_file_row_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl, row 2: missing field 'label'"):
        Dataset.load(path)


def test_ragged_rows_with_an_extra_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "a"}\n{"text": "b", "label": "y"}\n')
    with pytest.raises(DatasetError, match=r"row 2: unexpected field 'label'"):
        Dataset.load(path)


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"d.jsonl, line 2: not valid JSON"):
        Dataset.load(write(tmp_path, "d.jsonl", '{"text": "a"}\n{"text": \n'))


def test_csv_with_a_short_row(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"d.csv, line 3: 1 values for 2 columns"):
        Dataset.load(write(tmp_path, "d.csv", "text,label\nhello,x\nbye\n"))


def test_csv_json_and_records_load_alike(tmp_path: Path) -> None:
    csv_data = Dataset.load(write(tmp_path, "d.csv", 'text,label\n"a, b",x\nc,y\n'))
    json_data = Dataset.load(
        write(tmp_path, "d.json", '[{"text": "a, b", "label": "x"}, {"text": "c", "label": "y"}]')
    )
    assert [r.fields for r in csv_data] == [r.fields for r in json_data]
    assert csv_data.fields == ("text", "label")


def test_split_is_seeded_disjoint_and_complete() -> None:
    data = Dataset.from_records([{"i": i} for i in range(40)])
    a, b = split(data, 0.5, 0.25, 0.25, seed=3), split(data, 0.5, 0.25, 0.25, seed=3)
    c = split(data, 0.5, 0.25, 0.25, seed=4)
    idx = [[r.index for r in part] for part in (a.train, a.validation, a.test)]
    assert [len(p) for p in idx] == [20, 10, 10]
    assert sorted(i for part in idx for i in part) == list(range(40))
    assert idx == [[r.index for r in part] for part in (b.train, b.validation, b.test)]
    assert idx[2] != [r.index for r in c.test]


# -- templates --------------------------------------------------------------------------------------
def test_placeholder_not_in_dataset_is_caught_before_any_call() -> None:
    with pytest.raises(TemplateError, match=r"uses \{review\} but the dataset has no field 'review'.*text"):
        Prompt(user="Review: {review}").check(["text", "label"])


def test_malformed_braces_and_attribute_access() -> None:
    with pytest.raises(TemplateError, match=r"malformed braces"):
        Prompt(user="Review: {text").check(["text"])
    with pytest.raises(TemplateError, match=r"not a plain field name"):
        Prompt(user="{text.upper}").check(["text"])


def test_escaped_braces_are_literal() -> None:
    prompt = Prompt(user='Answer as JSON like {{"label": ...}} for: {text}')
    prompt.check(["text"])
    assert prompt.messages({"text": "hi"})[-1].content == 'Answer as JSON like {"label": ...} for: hi'


# -- configs ----------------------------------------------------------------------------------------
GOOD = """
model: local/gemma-3-270m
prompt: {system: "s", user: "Review: {text}"}
dataset: {path: d.jsonl}
metric: {type: exact_match, field: label}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed\n", r"not valid YAML at line 2"),
        ("- a list\n", r"expected a mapping of settings"),
        (GOOD + "optimiser: fewshot\n", r"unknown key `optimiser`"),
        (GOOD.replace("dataset: {path: d.jsonl}", ""), r"`dataset` is missing"),
        (GOOD.replace('user: "Review: {text}"', "system: x"), r"`prompt.user` is missing"),
        (GOOD + "budget: {max_calls: -5}\n", r"`budget.max_calls` must be a whole number of at least 1"),
        (GOOD + "budget: {max_cals: 5}\n", r"unknown key `budget.max_cals`; did you mean `max_calls`"),
        (GOOD.replace("type: exact_match, ", ""), r"`metric.type` is missing"),
        (GOOD + "retry: {max_attempt: 5}\n", r"unknown key `retry.max_attempt`; did you mean `max_attempts`"),
        (GOOD + "retry: {max_attempts: 2.5}\n", r"retry `max_attempts` must be a positive whole number"),
        (GOOD + "retry: {attempts_per_error: {RateLimitd: 3}}\n", r"retry: attempts_per_error names unknown"),
        (GOOD + "retry: 5\n", r"`retry` must be a mapping"),
        (
            GOOD + "rate_limits: {scope: openai, rpn: 5}\n",
            r"unknown key `rate_limits.rpn`; did you mean `rpm`",
        ),
        (GOOD + "rate_limits: {scope: openai}\n", r"a rate limit for 'openai' needs `rpm` or `tpm`"),
        (GOOD + "rate_limits: [{rpm: -1}]\n", r"rate_limits `rpm` must be a positive number"),
        (GOOD + "prices: {azure/dep: 0.15}\n", r"the price of azure/dep must be \[input, output\]"),
        (GOOD + "prices: {azure/dep: [.nan, 1]}\n", r"the price of azure/dep must be \[input, output\]"),
        (GOOD + "retry: {max_wait: .nan}\n", r"retry `max_wait` must be a positive number"),
        (GOOD + "retry: {attempts_per_error: {RateLimited: null}}\n", r"attempts for RateLimited must be"),
        (
            GOOD + "rate_limits: {scope: openai/gpt-4o-mni, rpm: 5}\n",
            r"scope 'openai/gpt-4o-mni' matches none",
        ),
        (GOOD + "prices: [0.15, 0.6]\n", r"`prices` must map models"),
    ],
)
def test_malformed_configs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "c.yaml", text))


def test_cli_reports_a_bad_config_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n' * 6)
    config = write(tmp_path, "c.yaml", GOOD.replace("{text}", "{txt}"))
    assert main(["optimize", str(config), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "uses {txt} but the dataset has no field 'txt'" in err


def test_unknown_metric_and_optimizer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`metric.type` must be one of exact_match.*got .bleu"):
        metric_from_config({"type": "bleu"})
    with pytest.raises(ConfigError, match=r"`metric.field` is missing"):
        metric_from_config({"type": "exact_match"})
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        metric_from_config({"type": "python", "function": "no_such_module:f"})


# -- metrics ----------------------------------------------------------------------------------------
ROW = Row(0, {"label": "Positive", "answer": "1,234.5", "pattern": r"^\d+$"})


@pytest.mark.parametrize(
    ("metric", "output", "value"),
    [
        (ExactMatch("label"), "  positive ", 1.0),
        (ExactMatch("label", Normalize(case=False)), "positive", 0.0),
        (ExactMatch("label", Normalize(punctuation=True)), "positive.", 1.0),
        (ExactMatch("label"), "positive.", 0.0),
        (Contains("label"), "I think POSITIVE overall", 1.0),
        (Regex(pattern=r"pos\w+"), "it is positive", 1.0),
        (Regex(field="pattern"), "12a", 0.0),
        (Numeric("answer"), "the total is 1234.5", 1.0),
        (Numeric("answer", abs_tol=0.1), "about 1234.45", 1.0),
        (Numeric("answer"), "no idea", 0.0),
        (Choice("label", ("positive", "negative")), "negative, no wait, positive", 0.0),
        (Choice("label", ("positive", "negative")), "Positive!", 1.0),
    ],
)
def test_builtin_metrics(metric: object, output: str, value: float) -> None:
    score = metric(ROW, output)  # type: ignore[operator]
    assert isinstance(score, Score) and score.value == value
    assert (score.reason == "") == (value == 1.0)


def test_token_f1_partial_credit() -> None:
    score = TokenF1("label")(Row(0, {"label": "the quick fox"}), "quick brown fox")
    assert score.value == pytest.approx(2 / 3)


def test_retry_and_rate_limits_from_the_config(tmp_path: Path) -> None:
    text = GOOD.replace("model: local/gemma-3-270m", "model: openai/gpt-4o-mini") + (
        "retry: {max_attempts: 6, initial_wait: 0.25, max_wait: 20, deadline: 300,\n"
        "        attempts_per_error: {RateLimited: 9}}\n"
        "rate_limits: [{scope: openai/gpt-4o-mini, rpm: 500, tpm: 200000}, {rpm: 60}]\n"
    )
    config = load_config(write(tmp_path, "c.yaml", text))
    r = config.retry
    assert (r.max_attempts, r.initial_wait, r.max_wait, r.deadline, dict(r.attempts_per_error)) == (
        6,
        0.25,
        20,
        300,
        {"RateLimited": 9},
    )
    assert [(x.scope, x.rpm, x.tpm) for x in config.rate_limits] == [
        ("openai/gpt-4o-mini", 500, 200000),
        ("*", 60, None),
    ]
    plain = load_config(write(tmp_path, "plain.yaml", GOOD))
    assert plain.retry == RetryPolicy() and plain.rate_limits == () and plain.prices == {}
    priced = load_config(
        write(tmp_path, "p.yaml", GOOD + "prices: {azure/dep: [0.15, 0.6], vllm/x: {input: 0, output: 0}}\n")
    )
    assert {m: (p.input_per_mtok, p.output_per_mtok) for m, p in priced.prices.items()} == {
        "azure/dep": (0.15, 0.6),
        "vllm/x": (0.0, 0.0),
    }


def test_the_configs_retry_reaches_the_wire(
    tmp_path: Path, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`promptlift eval` against a server that answers 503 three times: the config's retry (4
    attempts) carries the run through; the default (3) would have stopped it."""
    write(tmp_path, "d.jsonl", "".join(f'{{"text": "t{i}", "label": "x"}}\n' for i in range(8)))
    loopback.script(server_error(503), server_error(503), server_error(503))
    loopback.set_default(ok("x"))
    body = GOOD.replace("model: local/gemma-3-270m", f"model: openai/m\napi_base: {loopback.openai_base}")
    body += "retry: {max_attempts: 4, initial_wait: 0.01}\nconcurrency: 1\ncache: false\n"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-config-retry-0123456789")
    assert main(["eval", str(write(tmp_path, "c.yaml", body)), "--json"]) == 0
    assert len(loopback.requests) == 4 + 3  # 2 validation and 2 test rows, the first after three 503s


def test_a_cost_cap_on_a_model_with_no_price_stops_before_any_call(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An Azure deployment's name has no price: `max_cost_usd` could never bind, so the run is refused
    (exit 2, one line naming the fix) before a call is sent; with `prices:` it runs."""
    write(tmp_path, "d.jsonl", "".join(f'{{"text": "t{i}", "label": "x"}}\n' for i in range(8)))
    loopback.set_default(ok("x"))
    body = (
        GOOD.replace("model: local/gemma-3-270m", f"model: azure/my-deployment\napi_base: {loopback.url}")
        + "budget: {max_cost_usd: 1}\ncache: false\noptimizer: {name: fewshot, params: {trials: 1}}\n"
    )
    monkeypatch.setenv("AZURE_API_KEY", "sk-azure-config-0123456789")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-06-01")
    assert main(["optimize", str(write(tmp_path, "c.yaml", body)), "--yes"]) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # after the plan's warnings, one error line
    assert last.startswith("promptlift: error:") and "no price is known" in last and "prices:" in last
    assert "Traceback" not in err
    assert loopback.requests == []
    priced = body + "prices: {azure/my-deployment: [0.15, 0.6]}\n"
    assert main(["optimize", str(write(tmp_path, "p.yaml", priced)), "--yes", "--json"]) == 0
    assert loopback.requests


def test_the_configs_rate_limits_and_prices_reach_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlift.optimize.session import prepare

    monkeypatch.setenv("AZURE_API_KEY", "azure-test-key-0000001")  # prepare checks every model's key

    write(tmp_path, "d.jsonl", "".join(f'{{"text": "t{i}", "label": "x"}}\n' for i in range(8)))
    body = GOOD.replace("model: local/gemma-3-270m", "model: azure/dep") + (
        "rate_limits: {scope: azure, rpm: 60}\nprices: {azure/dep: [0.15, 0.6]}\ncache: false\n"
    )
    config = load_config(write(tmp_path, "c.yaml", body))
    prepared = prepare(config)
    try:
        assert prepared.client.config.rate_limits == config.rate_limits == (RateLimit("azure", 60.0),)
        assert prepared.client.config.prices == {"azure/dep": ModelPrice(0.15, 0.6)}
        assert "ratelimit" in prepared.client.parts  # the limiter is in the stack
    finally:
        prepared.client.close()


# -- every model checked before the first call -----------------------------------------------------
PREFLIGHT = """model: {{model: openai/x, api_base: {base}}}
reasoning_model: {reasoner}
prices: {{openai/x: {{input: 1, output: 2}}, anthropic/claude-3-5-haiku-20241022: {{input: 1, output: 2}}}}
prompt: {{system: Classify., user: "Review: {{text}}\\nSentiment:"}}
dataset: {{path: d.jsonl, split: {{train: 0.5, validation: 0.25, test: 0.25, seed: 0}}}}
metric: {{type: exact_match, field: label}}
optimizer: {{name: metaprompt, params: {{rounds: 1}}}}
"""


def test_a_reasoning_model_without_a_key_is_refused_before_the_task_models_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f'{{"text": "review {i}", "label": "{"pos" if i % 2 else "neg"}"}}\n' for i in range(12))
    write(tmp_path, "d.jsonl", rows)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-preflight-task-00000001")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with LoopbackServer() as srv:
        config = write(
            tmp_path,
            "c.yaml",
            PREFLIGHT.format(base=srv.openai_base, reasoner="anthropic/claude-3-5-haiku-20241022"),
        )
        code = main(["optimize", str(config), "--yes"])
        sent = len(srv.requests)
    err = capsys.readouterr().err
    assert code == 2, err
    assert sent == 0  # not one paid task call before the missing key was found
    assert "no API key for anthropic: set ANTHROPIC_API_KEY" in err
    assert "Traceback" not in err


def test_complete_with_an_unknown_provider_is_one_line_and_sends_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["complete", "--model", "bogus/xyz", "hi"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "model 'bogus/xyz': 'bogus' is not a provider LiteLLM knows" in line and line.startswith(
        "promptlift: error"
    )
