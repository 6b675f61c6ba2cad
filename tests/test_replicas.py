"""Replicas behind one name (issue 18): the real LiteLLM over real HTTP to two loopback servers, one
stopped mid-run and started again on its port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig, errors
from promptlift.client.config import ModelSpec
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.testing.redis_server import free_port
from promptlift.testing.server import LoopbackServer, ok, slow

MODEL = "openai/served-model"
COOLDOWN = 1.5


@pytest.fixture
def pair() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer(port=free_port()) as a, LoopbackServer(port=free_port()) as b:
        a.set_default(ok("from a"))
        b.set_default(ok("from b"))
        yield a, b


def replicated(a: LoopbackServer, b: LoopbackServer, **config: object) -> Client:
    settings: dict[str, object] = {
        "models": (ModelSpec(MODEL, replicas=(a.openai_base, b.openai_base)),),
        "retry": RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02),
        "fallback": FallbackPolicy(failure_threshold=2, cooldown=COOLDOWN),
        "timeout": 10.0,
        **config,
    }
    return Client(ClientConfig(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["litellm", "native"])
def test_a_stopped_replica_is_skipped_after_its_failures_and_used_again_once_back(
    pair: tuple[LoopbackServer, LoopbackServer], transport: str
) -> None:
    a, b = pair
    a_url, b_url = a.openai_base, b.openai_base  # b's stays its own across the restart
    with replicated(a, b, transport=transport) as client:
        answers = [client.complete(f"q{i}", max_tokens=4).content for i in range(6)]
        assert sorted(answers) == ["from a"] * 3 + ["from b"] * 3  # one caller at a time alternates

        b.close()  # replica b goes down mid-run
        b_seen = len(b.requests)
        down = [client.complete(f"down{i}", max_tokens=4) for i in range(10)]
        assert {c.content for c in down} == {"from a"}  # every call still succeeds
        assert sum(c.attempts for c in down) == 10 + 2  # b's two failures, retried on a
        stats = {s.endpoint: s for s in client.replica_stats()}
        assert stats[b_url].state == "open" and stats[b_url].failures == 2
        assert stats[a_url].state == "closed" and stats[a_url].in_flight == 0
        assert len(b.requests) == b_seen  # nothing reached it: it was down

        b.start()  # back, on the same port
        time.sleep(COOLDOWN + 0.1)
        back = [client.complete(f"back{i}", max_tokens=4).content for i in range(6)]
        assert "from b" in back and all(c in ("from a", "from b") for c in back)
        assert len(b.requests) > b_seen  # the probe and the calls after it
        stats = {s.endpoint: s for s in client.replica_stats()}
        assert stats[b_url].state == "closed" and b.openai_base == b_url
        assert stats[a_url].calls + stats[b_url].calls == 6 + 12 + 6


def test_a_call_goes_to_the_replica_with_fewest_calls_in_flight(
    pair: tuple[LoopbackServer, LoopbackServer],
) -> None:
    a, b = pair
    a.script(slow(1.0, ok("slow a")))

    async def run(client: Client) -> tuple[str, list[str]]:
        held = asyncio.ensure_future(client.acomplete("held", max_tokens=4))  # a is busy with it
        while not a.requests:
            await asyncio.sleep(0.01)
        others = [(await client.acomplete(f"q{i}", max_tokens=4)).content for i in range(4)]
        busy = {s.endpoint: s.in_flight for s in client.replica_stats()}
        assert busy == {a.openai_base: 1, b.openai_base: 0}
        return (await held).content, others

    with replicated(a, b) as client:
        held, others = asyncio.run(run(client))
    assert held == "slow a" and others == ["from b"] * 4


def test_every_replica_down_is_a_typed_error_after_the_retries(
    pair: tuple[LoopbackServer, LoopbackServer],
) -> None:
    a, b = pair
    client = replicated(a, b)
    a.close()
    b.close()
    with client, pytest.raises(errors.ProviderError) as raised:
        client.complete("q", max_tokens=4)
    assert raised.value.retryable  # refused connections, then every replica paused


def test_one_cache_entry_whichever_replica_answered(pair: tuple[LoopbackServer, LoopbackServer]) -> None:
    from promptlift.client.config import CacheConfig

    a, b = pair
    with replicated(a, b, cache=CacheConfig()) as client:
        first = client.complete("same", max_tokens=4, temperature=0)
        again = client.complete("same", max_tokens=4, temperature=0)
    assert again.cached and again.content == first.content
    assert len(a.requests) + len(b.requests) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": ("http://h:1/v1", "http://h:1/v1/")}, "appears twice"),
        ({"replicas": "http://h:1/v1"}, "must be a list"),
        ({"replicas": ("http://h:1/v1", "http://h:2/v1"), "api_base": "http://h:3/v1"}, "not both"),
    ],
)
def test_replica_mistakes_are_refused_where_they_are_given(spec: dict[str, object], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        ModelSpec(MODEL, **spec)  # type: ignore[arg-type]


def test_api_base_as_a_list_is_replicas_and_the_first_is_the_models_endpoint() -> None:
    spec = ModelSpec(MODEL, api_base=["http://h:1/v1", "http://h:2/v1"])  # type: ignore[arg-type]
    assert spec.replicas == ("http://h:1/v1", "http://h:2/v1") and spec.api_base == "http://h:1/v1"
    assert ModelSpec(MODEL, replicas=("http://h:1/v1",)) == ModelSpec(MODEL, api_base="http://h:1/v1")


def test_replicas_from_yaml_and_the_allow_list_checks_every_one(tmp_path: Path) -> None:
    from promptlift.optimize.config import load_config

    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a", "label": "b"}\n' * 8)

    def config(model: str, extra: str = "") -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"model: {model}\nprompt: {{user: '{{text}}'}}\n"
            f"dataset: {{path: {data}}}\nmetric: {{type: exact_match, field: label}}\n{extra}"
        )
        return path

    two = "{model: openai/m, replicas: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]}"
    loaded = load_config(config(two))
    (spec,) = loaded.chain
    assert isinstance(spec, ModelSpec) and spec.replicas == (
        "http://10.0.0.1:8000/v1",
        "http://10.0.0.2:8000/v1",
    )
    listed = load_config(
        config("{model: openai/m, api_base: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]}")
    )
    assert listed.chain == loaded.chain
    with pytest.raises(errors.ConfigError, match=r"10\.0\.0\.2"):
        load_config(config(two, "allowed_hosts: [10.0.0.1]\n"))


def test_a_model_call_span_names_the_replica_that_served_it(
    pair: tuple[LoopbackServer, LoopbackServer],
) -> None:
    from promptlift.client.config import TracingConfig
    from promptlift.testing.otlp import OtlpReceiver

    a, b = pair
    with OtlpReceiver() as receiver:
        client = replicated(a, b, tracing=TracingConfig(otlp_endpoint=receiver.url))
        with client:
            answers = [client.complete(f"q{i}", max_tokens=4).content for i in range(4)]
        calls = sorted(receiver.spans, key=lambda s: s.start_ns)
    ports = {"from a": a.port, "from b": b.port}
    assert [c.attributes["server.port"] for c in calls] == [ports[text] for text in answers]
    assert {c.attributes["promptlift.replica"] for c in calls} == {a.openai_base, b.openai_base}


def test_a_credential_in_a_replicas_url_reaches_neither_its_stats_nor_a_span() -> None:
    from promptlift.client.config import TracingConfig
    from promptlift.testing import FunctionProvider
    from promptlift.testing.otlp import OtlpReceiver

    canary = "replica-canary-7f3a9c0e"
    replicas = (f"http://gpu1:8000/v1?api-key={canary}", f"http://user:{canary}@gpu2:8000/v1")
    with OtlpReceiver() as receiver:
        config = ClientConfig(
            models=(ModelSpec(MODEL, replicas=replicas),),
            tracing=TracingConfig(otlp_endpoint=receiver.url),
        )
        with Client(config, provider=FunctionProvider(lambda r: "ok")) as client:
            for i in range(4):
                client.complete(f"q{i}")
            stats = client.replica_stats()
        raw = receiver.raw()
        served = {s.attributes["server.address"] for s in receiver.spans}
    assert served == {"gpu1", "gpu2"} and [s.calls for s in stats] == [2, 2]
    assert canary not in repr(stats) and canary.encode() not in raw
