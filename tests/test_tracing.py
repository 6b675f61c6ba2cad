"""OpenTelemetry traces (issue 18): spans received by a real OTLP/HTTP receiver on loopback, sent by
the official SDK's exporter, for calls made by the real LiteLLM over HTTP to the loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, errors
from promptlift.client.config import CacheConfig, TracingConfig
from promptlift.client.retry import RetryPolicy
from promptlift.optimize.dataset import Dataset, Splits
from promptlift.optimize.evaluation import Evaluator
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Candidate, RunSettings, Search
from promptlift.optimize.tools import Tool
from promptlift.secrets import Secret
from promptlift.testing import FunctionProvider
from promptlift.testing.otlp import OtlpReceiver, ReceivedSpan
from promptlift.testing.server import LoopbackServer, bad_request, ok, server_error, tool_call
from promptlift.tracing import NO_TRACER

MODEL = "openai/gpt-4o-mini"
CANARY = "sk-canary-0tel-must-never-leave-7f3a9c"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name in ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def traced_client(srv: LoopbackServer, receiver: OtlpReceiver, **config: object) -> Client:
    settings: dict[str, object] = {
        "models": (MODEL,),
        "api_base": srv.openai_base,
        "api_key": Secret(CANARY),
        "tracing": TracingConfig(otlp_endpoint=receiver.url, capture_content=True),
        "concurrency": 2,
        **config,
    }
    return Client(ClientConfig(**settings))  # type: ignore[arg-type]


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def calls_under_the_users_span(receiver: OtlpReceiver) -> list[ReceivedSpan]:
    """The model-call spans in start order, each checked to be a child of the caller's own span."""
    spans = receiver.spans
    (user,) = named(spans, "user.request")
    calls = sorted(named(spans, "chat "), key=lambda s: s.start_ns)
    assert calls and all(c.parent_span_id == user.span_id for c in calls)
    return calls


class OneRewrite(Optimizer):
    """The smallest real search: one more candidate, scored like any other."""

    name = "one-rewrite"

    async def search(self, ctx: Search, start: Candidate) -> None:
        assert isinstance(start.prompt, Prompt)
        await ctx.evaluate(
            start.prompt.replace(system="Answer with one word."), parent=start.id, origin="rewrite"
        )


def splits() -> Splits:
    def part(texts: list[str]) -> Dataset:
        return Dataset.from_records([{"text": t, "label": "yes"} for t in texts])

    # a row carries the canary: message contents are captured, so they must be redacted
    return Splits(part(["t0"]), part(["v0", f"key {CANARY} in a row"]), part(["x0"]))


def test_a_run_is_traced_run_evaluation_row_call_and_no_secret_reaches_the_receiver(
    loopback: LoopbackServer, receiver: OtlpReceiver
) -> None:
    loopback.require_key(CANARY)
    loopback.set_default(ok("yes"))
    # the provider's error echoes the key, as OpenAI's "Incorrect API key provided: sk-..." does
    loopback.script(bad_request(f"Incorrect API key provided: {CANARY}"))
    client = traced_client(loopback, receiver)
    prompt = Prompt(user="Say yes: {text}", system="Answer.", params={"max_tokens": 3, "temperature": 0})
    try:
        result = OneRewrite().optimize(
            prompt, splits(), ExactMatch("label"), client=client, settings=RunSettings(seed=1)
        )
    finally:
        client.close()  # flushes every span to the receiver
    spans = receiver.spans
    index = by_id(spans)
    runs = named(spans, "promptlift.run")
    assert len(runs) == 1 and runs[0].parent_span_id == ""
    run = runs[0]
    assert run.attributes["promptlift.optimizer"] == "one-rewrite"
    assert run.attributes["promptlift.task_model"] == MODEL
    assert run.attributes["promptlift.run.candidates"] == len(result.history) == 2
    assert run.resource["service.name"] == "promptlift"
    assert {s.trace_id for s in spans} == {run.trace_id}  # one run, one trace

    evaluations = named(spans, "promptlift.evaluation")
    assert all(index[e.parent_span_id] is run for e in evaluations)
    splits_seen = sorted(str(e.attributes["promptlift.evaluation.split"]) for e in evaluations)
    # the start and the rewrite on validation; the start on test, and the rewrite (the start lost a row)
    assert splits_seen == ["test", "test", "validation", "validation"]
    assert {e.attributes.get("promptlift.candidate.origin") for e in evaluations} >= {"initial", "rewrite"}

    rows = named(spans, "promptlift.row")
    assert len(rows) == 6 and all(index[r.parent_span_id].name == "promptlift.evaluation" for r in rows)
    calls = named(spans, "chat ")
    assert len(calls) == len(loopback.requests) == 6  # one span per call on the wire
    for call in calls:
        assert index[call.parent_span_id].name == "promptlift.row"
        assert call.kind == "client" and call.name == "chat gpt-4o-mini"
        a = call.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.request.max_tokens"] == 3
        assert a["gen_ai.request.temperature"] == 0.0
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == loopback.port
        assert "gen_ai.input.messages" in a  # capture_content is on

    failed = [c for c in calls if c.status == "error"]
    assert len(failed) == 1
    assert failed[0].attributes["error.type"] == "BadRequest"
    assert [name for name, _ in failed[0].events] == ["exception"]
    assert index[failed[0].parent_span_id].attributes["error.type"] == "BadRequest"  # the row says why
    answered = [c for c in calls if c.status != "error"]
    for call in answered:
        a = call.attributes
        assert a["gen_ai.response.model"] and a["gen_ai.response.finish_reasons"] == ["stop"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["promptlift.attempts"] == 1 and a["promptlift.cache_hit"] is False
        assert isinstance(a["promptlift.cost_usd"], float)
        output = json.loads(str(a["gen_ai.output.messages"]))
        assert output[0]["role"] == "assistant" and output[0]["parts"][0]["content"] == "yes"
    sent = [json.loads(str(c.attributes["gen_ai.input.messages"])) for c in calls]
    assert any("key *** in a row" in json.dumps(m) for m in sent)  # the row's text, redacted

    raw = receiver.raw()
    assert raw and CANARY.encode() not in raw and CANARY[3:].encode() not in raw


def test_attempts_and_cache_hits_and_the_callers_span_across_the_sync_api(
    loopback: LoopbackServer, receiver: OtlpReceiver
) -> None:
    loopback.script(server_error(), ok("first"))
    client = traced_client(
        loopback,
        receiver,
        cache=CacheConfig(),
        retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01),
        tracing=TracingConfig(otlp_endpoint=receiver.url),  # contents not asked for
    )
    try:
        with client.tracer.span("user.request", {"user.attempt": 1}):  # the caller's own span
            client.complete("hello", max_tokens=4, temperature=0)  # a sync call: another thread's loop
            client.complete("hello", max_tokens=4, temperature=0)
    finally:
        client.close()
    first, again = calls_under_the_users_span(receiver)
    assert first.attributes["promptlift.attempts"] == 2 and first.attributes["promptlift.cache_hit"] is False
    assert again.attributes["promptlift.cache_hit"] is True
    assert len(loopback.requests) == 2  # the failure and its retry; the cache answered the second call
    assert (
        "gen_ai.input.messages" not in first.attributes and "gen_ai.output.messages" not in first.attributes
    )


def test_an_agents_tool_calls_nest_under_its_row(loopback: LoopbackServer, receiver: OtlpReceiver) -> None:
    loopback.script(ok(tool_calls=(tool_call("letters", {"word": "abc"}),)), ok("3"))

    def letters(word: str) -> int:
        """Count the letters of a word."""
        return len(word)

    client = traced_client(loopback, receiver)
    prompt = Prompt(user="{text}", tools=(Tool.from_function(letters),), max_steps=3)
    data = Dataset.from_records([{"text": "abc", "label": "3"}])
    try:
        evaluation = asyncio.run(Evaluator(client, ExactMatch("label")).evaluate(prompt, data))
    finally:
        client.close()
    assert evaluation.mean == 1.0
    spans = receiver.spans
    index = by_id(spans)
    (row,) = named(spans, "promptlift.row")
    (tool,) = named(spans, "execute_tool")
    assert row.parent_span_id == ""
    assert tool.name == "execute_tool letters" and index[tool.parent_span_id] is row
    assert (
        tool.attributes["gen_ai.tool.name"] == "letters" and tool.attributes["gen_ai.tool.call.result"] == "3"
    )
    assert "error.type" not in tool.attributes
    calls = sorted(named(spans, "chat "), key=lambda s: s.start_ns)
    assert len(calls) == 2 and all(index[c.parent_span_id] is row for c in calls)
    parts = json.loads(str(calls[0].attributes["gen_ai.output.messages"]))[0]["parts"]
    assert [p["name"] for p in parts if p["type"] == "tool_call"] == ["letters"]
    assert calls[0].end_ns <= tool.start_ns and tool.end_ns <= calls[1].start_ns  # call, tool, call
    assert row.attributes["promptlift.row.score"] == 1.0 and row.attributes["promptlift.row.steps"] == 2


def test_the_standard_environment_variable_turns_tracing_on(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly-evals")
    client = Client(ClientConfig(models=(MODEL,)), provider=FunctionProvider(lambda r: "ok"))
    try:
        assert client.tracer.enabled
        client.complete("hi")
    finally:
        client.close()
    (call,) = receiver.spans
    assert call.name == "chat gpt-4o-mini" and call.resource["service.name"] == "nightly-evals"
    assert "gen_ai.input.messages" not in call.attributes  # contents only when asked for


def test_a_failed_call_is_an_error_span_and_the_client_still_raises_its_typed_error(
    receiver: OtlpReceiver,
) -> None:
    def refuse(request: object) -> str:
        raise errors.AuthenticationFailed(f"bad key {CANARY}", provider="scripted", model=MODEL)

    config = ClientConfig(models=(MODEL,), tracing=TracingConfig(otlp_endpoint=receiver.url))
    client = Client(config, provider=FunctionProvider(refuse))
    Secret(CANARY)  # a key promptlift knows is one
    with pytest.raises(errors.AuthenticationFailed):
        client.complete("hi")
    client.close()
    (call,) = receiver.spans
    assert call.status == "error" and call.attributes["error.type"] == "AuthenticationFailed"
    assert "bad key ***" in call.status_message
    assert CANARY.encode() not in receiver.raw()


def test_without_configuration_nothing_is_traced_and_opentelemetry_is_not_imported() -> None:
    client = Client(ClientConfig(models=(MODEL,)), provider=FunctionProvider(lambda r: "ok"))
    with client:
        assert client.tracer is NO_TRACER and "tracing" not in client.parts
        with client.tracer.span("anything") as span:
            span.set("k", "v")  # the no-op span takes the same calls
    code = (
        "import sys, promptlift\n"
        "from promptlift.testing import FunctionProvider\n"
        "config = promptlift.ClientConfig(models=('openai/m',))\n"
        "c = promptlift.Client(config, provider=FunctionProvider(lambda r: 'ok'))\n"
        "c.complete('hi'); c.close()\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False"]


MISSING_EXTRA = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import promptlift
from promptlift import errors
from promptlift.client.config import TracingConfig
from promptlift.tracing import NO_TRACER, tracer_for
try:
    tracer_for(TracingConfig(otlp_endpoint="http://127.0.0.1:9"))
except errors.ConfigError as exc:
    print("config-error", "promptlift[otel]" in str(exc))
import os
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
print(tracer_for(None) is NO_TRACER, tracer_for(None) is NO_TRACER)
"""


def test_without_the_extra_config_asks_for_it_and_the_environment_alone_warns_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", MISSING_EXTRA], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["config-error", "True", "True", "True"]
    assert out.stderr.count("no spans are sent") == 1, out.stderr


def test_tracing_config_refuses_an_endpoint_that_is_not_a_url() -> None:
    with pytest.raises(errors.ConfigError, match="otlp_endpoint must be an http"):
        TracingConfig(otlp_endpoint="localhost:4318")
    assert TracingConfig(otlp_endpoint="http://h:4318/").traces_url() == "http://h:4318/v1/traces"
    assert TracingConfig(otlp_endpoint="http://h:4318/v1/traces").traces_url() == "http://h:4318/v1/traces"


def write_run(tmp_path: Path, srv: LoopbackServer, tracing: str) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"r{i}", "label": "yes"}) + "\n" for i in range(8)))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"model: {MODEL}\napi_base: {srv.openai_base}\n"
        "prompt: {user: 'Say yes: {text}', params: {max_tokens: 3}}\n"
        f"dataset: {{path: {data}, split: {{train: 0.5, validation: 0.25, test: 0.25, seed: 0}}}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 1, trials: 1}}\n"
        f"store: {tmp_path / 'runs'}\ncache: false\n{tracing}"
    )
    return config


def test_the_cli_honours_the_configs_tracing(
    tmp_path: Path, loopback: LoopbackServer, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlift.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    loopback.set_default(ok("yes"))
    config = write_run(tmp_path, loopback, f"tracing: {{otlp_endpoint: {receiver.url}}}\n")
    assert main(["optimize", str(config), "--yes"]) == 0
    spans = receiver.spans
    (run,) = named(spans, "promptlift.run")
    assert run.attributes["promptlift.optimizer"] == "fewshot" and run.attributes["promptlift.run.id"]
    assert len(named(spans, "chat ")) == len(loopback.requests) > 0
    assert CANARY.encode() not in receiver.raw()


def test_eval_from_the_cli_is_one_trace_too(
    tmp_path: Path, loopback: LoopbackServer, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptlift.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    loopback.set_default(ok("yes"))
    assert (
        main(["eval", str(write_run(tmp_path, loopback, f"tracing: {{otlp_endpoint: {receiver.url}}}\n"))])
        == 0
    )
    spans = receiver.spans
    index = by_id(spans)
    (root,) = [s for s in spans if s.parent_span_id == ""]
    assert root.name == "promptlift.eval"
    evaluations = named(spans, "promptlift.evaluation")
    assert sorted(e.attributes["promptlift.evaluation.split"] for e in evaluations) == ["test", "validation"]
    assert all(index[e.parent_span_id] is root for e in evaluations)
    rows = named(spans, "promptlift.row")
    assert rows and all(index[r.parent_span_id].name == "promptlift.evaluation" for r in rows)
    assert all(index[c.parent_span_id].name == "promptlift.row" for c in named(spans, "chat "))
    assert CANARY.encode() not in receiver.raw()


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ("tracing: {otlp_endpont: http://h:4318}\n", "otlp_endpont"),
        ("tracing: {otlp_endpoint: h:4318}\n", "otlp_endpoint must be an http"),
        ("tracing: {capture_content: maybe}\n", "true or false"),
    ],
)
def test_the_configs_tracing_mistakes_are_named(
    tmp_path: Path, loopback: LoopbackServer, tracing: str, message: str
) -> None:
    from promptlift.optimize.config import load_config

    with pytest.raises(errors.ConfigError, match=message):
        load_config(write_run(tmp_path, loopback, tracing))


def test_a_stream_is_one_span_ended_by_its_completion_or_by_the_caller_leaving_early(
    loopback: LoopbackServer, receiver: OtlpReceiver
) -> None:
    loopback.set_default(ok("one two three four"))
    client = traced_client(loopback, receiver)
    try:
        with client.tracer.span("user.request"):
            events = list(client.stream("hello", max_tokens=8))
            for _ in client.stream("again", max_tokens=8):
                break  # the caller stops reading after the first piece
    finally:
        client.close()
    whole, left = calls_under_the_users_span(receiver)
    assert whole.attributes["gen_ai.usage.output_tokens"] == events[-1].usage.output_tokens > 0  # type: ignore[union-attr]
    assert "error.type" not in whole.attributes
    assert left.attributes["error.type"] == "StreamClosed"


def test_a_budget_stop_inside_an_evaluation_is_not_an_error_span(receiver: OtlpReceiver) -> None:
    from promptlift.client.config import Budget

    config = ClientConfig(models=(MODEL,), tracing=TracingConfig(otlp_endpoint=receiver.url))
    client = Client(config, provider=FunctionProvider(lambda r: "yes"))
    prompt = Prompt(user="Say yes: {text}")
    settings = RunSettings(budget=Budget(max_calls=4))  # the start (2 + 1 test) fits; the rewrite does not
    with client:
        result = OneRewrite().optimize(
            prompt, splits(), ExactMatch("label"), client=client, settings=settings
        )
    assert result.stop_reason.startswith("budget: max_calls")
    spans = receiver.spans
    stopped = [
        e for e in named(spans, "promptlift.evaluation") if "promptlift.evaluation.stopped" in e.attributes
    ]
    assert len(stopped) == 1 and stopped[0].status != "error"
    assert stopped[0].attributes["promptlift.candidate.origin"] == "rewrite"
    (run,) = named(spans, "promptlift.run")
    assert run.status != "error" and run.attributes["promptlift.run.stop_reason"] == result.stop_reason
