"""The typed parameters beyond sampling — penalties and reasoning effort — on the wire: each
provider gets them in its own shape (through real LiteLLM to the loopback server), a model that
lacks one has it dropped with a warning or, strict, refused before any request; and a prompt's
YAML params check them."""

from __future__ import annotations

from typing import Any

import pytest

from promptlift import Client, ClientConfig, Secret, errors
from promptlift.optimize.prompt import check_params
from promptlift.testing.server import LoopbackServer

PARAMS = {"reasoning_effort": "low", "frequency_penalty": 0.5, "presence_penalty": 0.1, "max_tokens": 2048}


def sent(server: LoopbackServer, model: str, strict: bool = False, **params: Any) -> dict[str, Any]:
    base = server.url + ("/v1" if model.startswith("openai/") else "")
    config = ClientConfig(
        models=(model,), api_base=base, api_key=Secret("sk-params-0123456789"), strict_params=strict
    )
    with Client(config) as client:
        client.complete("Think, then answer.", **params)
    (request,) = server.requests
    return request.json  # type: ignore[no-any-return]


def test_a_reasoning_model_gets_its_effort_and_a_chat_model_its_penalties(loopback: LoopbackServer) -> None:
    body = sent(loopback, "openai/o4-mini", reasoning_effort="high")
    assert body["reasoning_effort"] == "high"
    loopback.reset()
    body = sent(loopback, "openai/gpt-4o-mini", frequency_penalty=0.5, presence_penalty=-0.25)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.5, -0.25)


def test_reasoning_effort_becomes_anthropics_thinking_budget_and_geminis(loopback: LoopbackServer) -> None:
    body = sent(loopback, "anthropic/claude-sonnet-4-5", reasoning_effort="low", max_tokens=2048)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "reasoning_effort" not in body
    loopback.reset()
    body = sent(loopback, "gemini/gemini-2.5-flash", **PARAMS)
    generation = body["generationConfig"]
    assert generation["thinkingConfig"]["thinkingBudget"] == 1024
    assert (generation["frequency_penalty"], generation["presence_penalty"]) == (0.5, 0.1)


def test_a_parameter_the_model_lacks_is_dropped_with_a_warning_or_refused_when_strict(
    loopback: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = sent(loopback, "anthropic/claude-sonnet-4-5", reasoning_effort="low", frequency_penalty=0.5)
    assert "frequency_penalty" not in body and "frequency_penalty" in caplog.text
    loopback.reset()
    with pytest.raises(errors.ConfigError, match="does not support the parameter 'reasoning_effort'"):
        sent(loopback, "openai/gpt-4o-mini", strict=True, reasoning_effort="low")
    assert loopback.requests == []


def test_the_native_path_sends_them_as_openai_does(loopback: LoopbackServer) -> None:
    config = ClientConfig(models=("hosted_vllm/qwen3",), api_base=loopback.url + "/v1", transport="native")
    with Client(config) as client:
        out = client.complete(
            "Think.", reasoning_effort="medium", frequency_penalty=1.0, presence_penalty=0.5
        )
    body = loopback.requests[0].json
    assert out.served_by == "native" and body["model"] == "qwen3"
    assert (body["reasoning_effort"], body["frequency_penalty"], body["presence_penalty"]) == (
        "medium",
        1.0,
        0.5,
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"reasoning_effort": "extreme"}, "`prompt.params.reasoning_effort`"),
        ({"frequency_penalty": 3}, "`prompt.params.frequency_penalty`"),
        ({"presence_penalty": "a lot"}, "`prompt.params.presence_penalty`"),
    ],
)
def test_a_prompts_bad_params_are_one_line_naming_the_key(params: dict[str, Any], says: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        check_params(params)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert check_params({"reasoning_effort": "minimal", "frequency_penalty": -2}) == {
        "reasoning_effort": "minimal",
        "frequency_penalty": -2.0,
    }


def _with_logprobs() -> dict[str, Any]:
    return {
        "id": "chatcmpl-lp",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Yes"},
                "finish_reason": "stop",
                "logprobs": {
                    "content": [
                        {
                            "token": "Yes",
                            "logprob": -0.01,
                            "bytes": [89, 101, 115],
                            "top_logprobs": [
                                {"token": "Yes", "logprob": -0.01, "bytes": None},
                                {"token": "No", "logprob": -4.6, "bytes": None},
                            ],
                        }
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


@pytest.mark.parametrize("transport", ["litellm", "native"])
def test_logprobs_are_asked_for_and_come_back_as_tokens(
    loopback: LoopbackServer, transport: str, tmp_path: Any
) -> None:
    from promptlift.client.config import CacheConfig
    from promptlift.testing.server import Reply
    from promptlift.types import TokenLogprob

    config = ClientConfig(
        models=("openai/gpt-4o-mini",),
        api_base=loopback.url + "/v1",
        api_key=Secret("sk-params-0123456789"),
        transport=transport,
        strict_params=True,
        cache=CacheConfig(path=str(tmp_path / "cache.sqlite")),
    )
    loopback.script(Reply(body=_with_logprobs()))
    with Client(config) as client:
        out = client.complete("Yes or no?", temperature=0, logprobs=True, top_logprobs=2)
        again = client.complete("Yes or no?", temperature=0, logprobs=True, top_logprobs=2)
    (request,) = loopback.requests  # the second answer came from the cache
    assert (request.json["logprobs"], request.json["top_logprobs"]) == (True, 2)
    expected = (TokenLogprob("Yes", -0.01, (("Yes", -0.01), ("No", -4.6))),)
    assert out.logprobs == expected and again.logprobs == expected and again.cached


def test_top_logprobs_without_logprobs_is_not_sent(loopback: LoopbackServer) -> None:
    body = sent(loopback, "openai/gpt-4o-mini", top_logprobs=3)
    assert "top_logprobs" not in body and "logprobs" not in body


def _answers(*texts: str) -> dict[str, Any]:
    body = _with_logprobs()
    body["choices"] = [
        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
        for i, t in enumerate(texts)
    ]
    body["usage"] = {
        "prompt_tokens": 5,
        "completion_tokens": 3 * len(texts),
        "total_tokens": 5 + 3 * len(texts),
    }
    return body


@pytest.mark.parametrize("transport", ["litellm", "native"])
def test_n_samples_in_one_call_come_back_together(loopback: LoopbackServer, transport: str) -> None:
    from promptlift.testing.server import Reply

    config = ClientConfig(
        models=("openai/gpt-4o-mini",),
        api_base=loopback.url + "/v1",
        api_key=Secret("sk-params-0123456789"),
        transport=transport,
        strict_params=True,
    )
    loopback.script(Reply(body=_answers("red", "blue", "red")))
    with Client(config) as client:
        out = client.complete("A colour?", temperature=1.0, n=3, max_tokens=5)
    assert loopback.requests[0].json["n"] == 3
    assert out.content == "red" and out.samples == ("red", "blue", "red")
    assert out.usage.output_tokens == 9  # the provider's count covers every sample


def test_a_budget_reserves_every_samples_worst_case(loopback: LoopbackServer) -> None:
    from promptlift.client.config import Budget
    from promptlift.testing.server import Reply

    config = ClientConfig(
        models=("openai/gpt-4o-mini",),
        api_base=loopback.url + "/v1",
        api_key=Secret("sk-params-0123456789"),
        budget=Budget(max_tokens=120),
    )
    loopback.set_default(Reply(body=_answers("a", "b")))
    with Client(config) as client:
        client.complete("Hi", n=2, max_tokens=40)  # 2 x 40 and the input: under 120
        with pytest.raises(errors.BudgetExceeded):
            client.complete("Hi", n=3, max_tokens=40)  # 3 x 40 alone is the cap: refused unsent
    assert len(loopback.requests) == 1


def test_each_sample_is_scored_and_the_row_gets_their_mean() -> None:
    import asyncio

    from promptlift import Completion
    from promptlift.optimize.dataset import Row
    from promptlift.optimize.evaluation import Evaluator
    from promptlift.optimize.metrics import ExactMatch
    from promptlift.optimize.prompt import Prompt
    from promptlift.testing import FunctionProvider

    def model(request):  # type: ignore[no-untyped-def]
        assert request.n == 3
        return Completion("a", request.model, "function", samples=("a", "b", "a"))

    prompt = Prompt(user="{q}", params={"n": 3, "temperature": 1.0})
    with Client(ClientConfig(models=("scripted/n",)), provider=FunctionProvider(model)) as client:
        evaluation = asyncio.run(
            Evaluator(client, ExactMatch("label")).evaluate(prompt, [Row(0, {"q": "x", "label": "a"})])
        )
    (row,) = evaluation.rows
    assert row.score == pytest.approx(2 / 3) and row.output == "a"
    assert row.reason.startswith("1 of 3 samples fell short")


def test_an_agent_with_n_samples_is_refused() -> None:
    from promptlift.optimize.prompt import Prompt
    from promptlift.optimize.tools import Tool

    def lookup(word: str) -> str:
        """Look a word up."""
        return word

    with pytest.raises(errors.ConfigError, match="drop the `n` param"):
        Prompt(user="{q}", tools=(Tool.from_function(lookup),), params={"n": 2})


def test_n_samples_are_counted_by_the_plan_and_the_judge_budget(tmp_path: Any) -> None:
    import yaml

    from promptlift.optimize.config import load_config
    from promptlift.optimize.evaluation import Evaluator
    from promptlift.optimize.metrics import LLMJudge
    from promptlift.optimize.plan import make_plan
    from promptlift.optimize.prompt import Prompt
    from promptlift.testing import FunctionProvider

    with Client(ClientConfig(models=("scripted/n",)), provider=FunctionProvider(lambda r: "7")) as client:
        judged = Evaluator(client, LLMJudge(client, "Is it right?"))
        assert judged.calls_per_row(Prompt(user="{q}", params={"n": 3})) == 1 + 3  # a judge call per sample
        assert judged.calls_per_row(Prompt(user="{q}")) == 2

    (tmp_path / "rows.jsonl").write_text("".join(f'{{"q": "w{i}", "a": "x"}}\n' for i in range(20)))

    def plan_cost(n: int) -> float:
        config = {
            "model": "openai/gpt-4o-mini",
            "prompt": {"user": "{q}", "params": {"max_tokens": 50, "n": n, "temperature": 1.0}},
            "dataset": {"path": "rows.jsonl"},
            "metric": {"type": "contains", "field": "a"},
            "optimizer": {"name": "fewshot", "params": {"trials": 2}},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        return float(make_plan(load_config(tmp_path / "config.yaml")).to_dict()["cost_usd"][1])  # [low, high]

    one, four = plan_cost(1), plan_cost(4)
    assert four > 2.5 * one  # output dominates the high end here: four answers a call cost about four times
