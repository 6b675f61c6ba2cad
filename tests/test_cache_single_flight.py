"""Identical calls in flight at once are sent once and shared (the cache's single flight): over
real HTTP to a loopback server through LiteLLM, and against the shipped doubles for the edges —
a failure shared, a cancelled leader replaced, different requests kept apart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from promptlift import Client, ClientConfig
from promptlift.client.config import CacheConfig
from promptlift.errors import BadRequest
from promptlift.testing import FunctionProvider
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok
from promptlift.types import CompletionRequest


def client_for(tmp_path: Path, provider: FunctionProvider) -> Client:
    cache = CacheConfig(path=str(tmp_path / "cache.sqlite"))
    return Client(ClientConfig(models=("openai/m",), cache=cache, concurrency=16), provider=provider)


async def many(client: Client, prompt: str, n: int) -> list:  # type: ignore[type-arg]
    return list(await asyncio.gather(*(client.acomplete(prompt, temperature=0) for _ in range(n))))


def test_identical_calls_in_flight_are_sent_once_over_http(tmp_path: Path) -> None:
    def slow(request: RecordedRequest) -> Reply:
        time.sleep(0.3)  # every copy arrives while the first is still being answered
        return ok("shared answer")

    with LoopbackServer() as server:
        server.handler = slow
        with Client(
            ClientConfig(
                models=("openai/m",), api_base=server.openai_base, api_key="sk-test-single-flight-001",
                cache=CacheConfig(path=str(tmp_path / "cache.sqlite")), concurrency=16,
            )
        ) as client:  # fmt: skip
            answers = asyncio.run(many(client, "the same question", 8))
            other = client.complete("another question", temperature=0)
        assert len(server.requests) == 2  # the 8 identical ones once, the other once
    assert {a.content for a in answers} == {"shared answer"}
    assert sum(1 for a in answers if not a.cached) == 1 and sum(1 for a in answers if a.cached) == 7
    assert other.content == "shared answer" and not other.cached


class Refusing(FunctionProvider):
    """Takes a moment, then refuses the request (after the client's retries: a bad request)."""

    async def acomplete(self, request: CompletionRequest):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        await asyncio.sleep(0.1)
        raise BadRequest("no", provider="scripted", model="m", status=400)


def test_a_shared_call_that_fails_fails_for_all_without_sending_again(tmp_path: Path) -> None:
    provider = Refusing(lambda r: "unused")
    with client_for(tmp_path, provider=provider) as client:

        async def run() -> list[object]:
            calls = (client.acomplete("q", temperature=0) for _ in range(5))
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = asyncio.run(run())
    assert all(isinstance(r, BadRequest) for r in results), results
    assert len(provider.requests) == 1


def test_when_the_call_others_wait_on_is_cancelled_the_next_one_sends(tmp_path: Path) -> None:
    provider = FunctionProvider(lambda r: "answer", delay=0.3)
    with client_for(tmp_path, provider=provider) as client:

        async def run() -> str:
            leader = asyncio.ensure_future(client.acomplete("q", temperature=0))
            await asyncio.sleep(0.05)
            follower = asyncio.ensure_future(client.acomplete("q", temperature=0))
            await asyncio.sleep(0.05)
            leader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leader
            answer = await follower  # not cancelled itself: it sends its own call
            return answer.content

        assert asyncio.run(run()) == "answer"
    assert len(provider.requests) == 2


def test_different_requests_are_not_merged(tmp_path: Path) -> None:
    provider = FunctionProvider(lambda r: r.messages[-1].text.upper(), delay=0.1)
    with client_for(tmp_path, provider=provider) as client:

        async def run() -> list[str]:
            got = await asyncio.gather(*(client.acomplete(f"q{i}", temperature=0) for i in range(6)))
            return [g.content for g in got]

        assert asyncio.run(run()) == [f"Q{i}" for i in range(6)]
    assert len(provider.requests) == 6
