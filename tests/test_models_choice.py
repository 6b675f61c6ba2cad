"""Model choice: one prompt across models, the cost–quality frontier, the cheapest meeting a target.

The end-to-end tests use two local endpoints: the embedded 270M model (free) and the loopback
OpenAI-compatible server with a price set for its model (it answers "positive" to every row).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.client.config import ModelPrice
from promptlift.optimize.config import RunConfig, load_config
from promptlift.optimize.models import ModelCandidate, ModelScore, cheapest_meeting, compare_models, frontier
from promptlift.optimize.prompt import Demo
from promptlift.testing.server import LoopbackServer, ok

EXAMPLE = Path(__file__).parent.parent / "examples" / "sentiment"
SERVED = "openai/loop-positive"
PRICE = ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)


def score(model: str, value: float, cost: float, latency: float = 0.1) -> ModelScore:
    return ModelScore(model, value, 10, cost, latency, 0)


def test_frontier_keeps_what_nothing_beats_on_both_score_and_cost() -> None:
    points = [
        ("free", 0.5, 0.0),
        ("cheap", 0.7, 1.0),
        ("dear", 0.9, 5.0),
        ("worse", 0.6, 2.0),
        ("twin", 0.7, 1.0),
    ]
    assert frontier(points) == {"free", "cheap", "twin", "dear"}  # "worse": cheap beats it on both
    assert frontier([("a", 0.5, 1.0), ("b", 0.5, 2.0)]) == {"a"}  # same score, dearer: dominated
    assert frontier([("only", 0.1, 9.0)]) == {"only"}


def test_cheapest_meeting_a_target() -> None:
    scores = [score("free", 0.5, 0.0), score("cheap", 0.8, 1.0, 0.3), score("fast", 0.8, 1.0, 0.1)]
    assert cheapest_meeting(scores, 0.4) == scores[0]
    assert cheapest_meeting(scores, 0.75) == scores[2]  # same cost and score: the faster
    assert cheapest_meeting(scores, 0.95) is None


def test_the_report_gives_intervals_and_a_paired_test_between_the_two_best() -> None:
    from promptlift.optimize.models import ModelReport

    a = ModelScore("a", 0.9, 10, 1.0, 0.1, 0, score_ci=(0.6, 1.0), row_scores=(1.0,) * 9 + (0.0,))
    b = ModelScore("b", 0.1, 10, 0.5, 0.1, 0, score_ci=(0.0, 0.4), row_scores=(0.0,) * 9 + (1.0,))
    c = ModelScore("c", 0.0, 10, 0.1, 0.1, 0, score_ci=(0.0, 0.3), row_scores=(0.0,) * 10)
    report = ModelReport((c, b, a), None, "test")
    first, second, gain = report.top_two()  # type: ignore[misc]
    assert (first.model, second.model) == ("a", "b")
    assert gain.gain == -0.8 and gain.method == "mcnemar-exact" and gain.verdict == "worse"
    text = report.render()
    assert "[0.600, 1.000]" in text and "b - a: -0.800" in text and "paired on 10 rows" in text
    out = report.to_dict()
    assert out["top_two"]["second_minus_first"]["verdict"] == "worse"
    assert out["models"][2]["score_ci"] == [0.6, 1.0] and "row_scores" not in out["models"][2]


def example_config(tmp_path: Path) -> RunConfig:
    text = (
        (EXAMPLE / "config.yaml")
        .read_text()
        .replace("path: reviews.jsonl", f"path: {EXAMPLE / 'reviews.jsonl'}")
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.model
def test_report_on_the_embedded_model_and_a_priced_server(tmp_path: Path, loopback: LoopbackServer) -> None:
    loopback.set_default(ok("positive"), model="loop-positive")
    config = example_config(tmp_path)
    served = ModelCandidate(SERVED, api_base=loopback.openai_base, price=PRICE)
    local = ModelCandidate("local/gemma-3-270m")
    demos = (
        Demo({"text": "I loved every minute, wonderful."}, "positive"),
        Demo({"text": "It broke after a day, awful."}, "negative"),
        Demo({"text": "Brilliant, funny and moving."}, "positive"),
        Demo({"text": "Rude staff and cold food, never again."}, "negative"),
    )
    fewshot = config.prompt.replace(demos=demos)

    report = compare_models(config, [local, served], target=0.6, prompt=fewshot)
    by = {s.model: s for s in report.scores}
    rows = by[SERVED].rows
    positives = sum(1 for r in loopback.requests if r.model == "loop-positive")
    assert positives == rows == 26  # every test row went to the server, once
    # the server answers "positive" everywhere: its score is the share of positive rows
    assert 0.2 < by[SERVED].score < 0.8
    assert by["local/gemma-3-270m"].cost_per_1k_rows == 0.0
    assert by[SERVED].cost_per_1k_rows > 0
    assert by["local/gemma-3-270m"].latency_p50_s > 0 and by[SERVED].latency_p50_s > 0
    # with demos the free model beats the served one: the priced model is off the frontier
    assert by["local/gemma-3-270m"].score > by[SERVED].score
    assert by["local/gemma-3-270m"].on_frontier and not by[SERVED].on_frontier
    assert report.cheapest is not None and report.cheapest.model == "local/gemma-3-270m"
    assert "cheapest meeting 0.6: local/gemma-3-270m" in report.render()
    assert all(s.score_ci is not None and s.score_ci[0] <= s.score <= s.score_ci[1] for s in report.scores)
    top = report.top_two()
    assert top is not None and top[0].model == "local/gemma-3-270m" and top[2].rows == 26

    # zero-shot the base model scores (nearly) nothing: both are on the frontier, and a target
    # above the free model's score is met only by paying
    zero = compare_models(config, [local, served], target=by[SERVED].score, prompt=config.prompt)
    by0 = {s.model: s for s in zero.scores}
    assert by0["local/gemma-3-270m"].score < by0[SERVED].score
    assert by0["local/gemma-3-270m"].on_frontier and by0[SERVED].on_frontier
    assert zero.cheapest is not None and zero.cheapest.model == SERVED


def test_cli_compare_prices_the_served_model(
    tmp_path: Path, loopback: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    loopback.set_default(ok("positive"), model="loop-positive")
    config = example_config(tmp_path)
    argv = [
        "models",
        "compare",
        str(config.path),
        "--model",
        SERVED,
        "--api-base",
        f"{SERVED}={loopback.openai_base}",
    ]
    argv += ["--price", f"{SERVED}=2,8", "--target", "0.1", "--rows", "validation", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (model,) = report["models"]
    assert model["model"] == SERVED and model["rows"] == 26 and model["on_frontier"]
    # each request priced from the server's counts (words) at $2 in / $8 out per million tokens
    words = [sum(len(m["content"].split()) for m in r.json["messages"]) for r in loopback.requests]
    assert len(words) == 26
    expected = sum(w * 2.0 + 1 * 8.0 for w in words) / 1e6 / 26 * 1000
    assert model["cost_per_1k_rows"] == pytest.approx(expected)
    assert report["cheapest"] == SERVED
