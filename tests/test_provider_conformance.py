"""Both provider paths under one contract, on the wire (``promptlift.testing.provider_conformance``):
LiteLLM's and the native OpenAI-compatible one. Then side by side: every failure maps the same way
through both, and the same answer gives equal completions."""

from __future__ import annotations

import pytest

from promptlift.testing.provider_conformance import FAILURES, TOOL, ProviderConformance, raised
from promptlift.testing.server import LoopbackServer, metered, ok, tool_call


class TestLiteLLMConformance(ProviderConformance):
    transport = "litellm"


class TestNativeConformance(ProviderConformance):
    transport = "native"


LITELLM, NATIVE = TestLiteLLMConformance(), TestNativeConformance()


@pytest.mark.parametrize(("name", "reply", "kind", "status"), FAILURES, ids=[f[0] for f in FAILURES])
def test_every_failure_maps_the_same_way_through_both_paths(name, reply, kind, status) -> None:
    seen = []
    with LoopbackServer() as server:
        for suite in (LITELLM, NATIVE):
            with suite.make_client(server) as client:
                server.reset()
                server.script(reply)
                exc = raised(client)
                seen.append((type(exc), exc.retryable, exc.status if status is not None else None))
    assert seen[0] == seen[1] == (kind, kind.retryable, status)


def test_the_same_answer_is_the_same_completion_through_both_paths() -> None:
    outs = []
    with LoopbackServer() as server:
        for suite in (LITELLM, NATIVE):
            with suite.make_client(server) as client:
                server.script(
                    metered(
                        ok("", tool_calls=(tool_call("lookup", {"word": "tarn"}, id="z9"),), input_tokens=50),
                        cached_tokens=20,
                    )
                )
                outs.append(client.complete("Look it up.", tools=[TOOL], max_tokens=20).to_dict())
    for out in outs:
        out.pop("latency_s")
    assert outs[0].pop("served_by") == "litellm" and outs[1].pop("served_by") == "native"
    assert outs[0] == outs[1]


def test_routes_the_native_path_does_not_cover_still_go_through_litellm() -> None:
    """transport "native" with a model the native path does not serve (an Anthropic route here):
    the request reaches the server in Anthropic's format, sent by LiteLLM."""
    with LoopbackServer() as server:
        with NATIVE.make_client(
            server, models=("anthropic/claude-3-5-haiku-20241022",), api_base=server.url, prices={}
        ) as client:
            out = client.complete("Say hello.", max_tokens=16)
        (request,) = server.requests
    assert request.protocol == "anthropic" and out.served_by == "litellm"


def _config(tmp_path, **top) -> object:
    import yaml

    (tmp_path / "rows.jsonl").write_text("".join(f'{{"q": "word {i}", "a": "ok"}}\n' for i in range(8)))
    config = {
        "model": "openai/conformance-model",
        "prompt": {"user": "{q}"},
        "dataset": {"path": "rows.jsonl", "split": {"train": 0.5, "validation": 0.25, "test": 0.25}},
        "metric": {"type": "contains", "field": "a"},
        "cache": False,
        **top,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def test_a_run_config_sends_through_the_native_path_when_it_says_transport_native(
    tmp_path, monkeypatch
) -> None:
    from promptlift.optimize.config import load_config
    from promptlift.optimize.session import evaluate_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-conformance-env-key-000")
    agents = {}
    with LoopbackServer() as server:
        for transport in ("litellm", "native"):
            server.reset()
            server.set_default(ok("ok"))
            path = _config(tmp_path, api_base=server.url + "/v1", transport=transport)
            report = evaluate_config(load_config(path))
            assert report["test_score"] == 1.0
            agents[transport] = {r.headers.get("user-agent", "").split("/")[0] for r in server.requests}
    assert (
        agents["native"] == {"Python"} and "Python" not in agents["litellm"]
    )  # aiohttp's agent is Python/3.x


def test_an_unknown_transport_is_one_line_naming_the_choices(tmp_path) -> None:
    from promptlift.errors import ConfigError
    from promptlift.optimize.config import load_config

    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, transport="fast"))
    assert "`transport`" in str(caught.value) and "native" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_native_path_leaves_no_connection_open_after_callers_loops_end() -> None:
    """The async API from two asyncio.run loops, then the sync API, then close: every pool is
    closed (an unclosed one is a ResourceWarning, an error in this suite)."""
    import asyncio
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with LoopbackServer() as server:
            client = NATIVE.make_client(server)
            for _ in range(2):
                assert asyncio.run(client.acomplete("Say hello.")).served_by == "native"
            assert client.complete("Say hello.").served_by == "native"
            client.close()
            native = client.parts["provider"].native
            assert native._sessions == {}
        gc.collect()


def test_closing_the_client_from_a_callers_running_loop_closes_that_loops_pool() -> None:
    import asyncio
    import gc
    import warnings

    async def use_then_close(client) -> None:
        await client.acomplete("Say hello.")
        (session, _) = client.parts["provider"].native._sessions[asyncio.get_running_loop()]
        await asyncio.to_thread(client.close)  # a sync close from async code; the client is dropped
        gc.collect()
        async with asyncio.timeout(5):  # the pool's close was scheduled on this loop
            while not session.closed:
                await asyncio.sleep(0.01)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with LoopbackServer() as server:
            asyncio.run(use_then_close(NATIVE.make_client(server)))
        gc.collect()


def test_the_native_path_does_not_follow_a_redirect_past_the_allow_list() -> None:
    from promptlift import errors
    from promptlift.testing.server import Reply

    with LoopbackServer() as elsewhere, LoopbackServer() as server:
        server.script(
            Reply(status=307, headers={"Location": elsewhere.url + "/v1/chat/completions"}, body={})
        )
        with NATIVE.make_client(
            server, allowed_hosts=(f"127.0.0.1:{server.url.rsplit(':', 1)[1]}",)
        ) as client:
            exc = raised(client)
        assert isinstance(exc, errors.BadRequest) and "redirected" in str(exc) and exc.status == 307
        assert elsewhere.requests == []  # the prompt never reached the other host


def test_openais_own_api_and_azure_stay_on_litellm() -> None:
    from promptlift.providers.native import NativeProvider
    from promptlift.types import CompletionRequest, Message

    native = NativeProvider()
    for base, covered in [
        ("https://api.openai.com/v1", False),
        ("https://me.openai.azure.com/openai", False),
        ("http://127.0.0.1:8000/v1", True),
    ]:
        request = CompletionRequest("openai/o3-mini", (Message("user", "hi"),), api_base=base)
        assert native.covers(request) is covered, base


def test_the_same_stream_gives_the_same_events_through_both_paths() -> None:
    from promptlift.types import Completion

    seen = []
    reply = metered(
        ok(
            "Looking it up now.",
            tool_calls=(tool_call("lookup", {"word": "tarn"}, id="z9"),),
            input_tokens=50,
        ),
        cached_tokens=20,
    )
    with LoopbackServer() as server:
        for suite in (LITELLM, NATIVE):
            with suite.make_client(server) as client:
                server.script(reply)
                events = list(client.stream("Look it up.", tools=[TOOL], max_tokens=20))
            final = events.pop()
            assert isinstance(final, Completion)
            out = final.to_dict()
            out.pop("latency_s"), out.pop("served_by")
            seen.append((events, out))
    assert seen[0] == seen[1]
    assert len(seen[0][0]) > 4
