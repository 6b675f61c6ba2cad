"""Provider prompt caching on the wire: the breakpoints a request carries, the cached tokens read back
from each provider's usage, the cost at the cached rate, and an evaluation that warms the cache with
its first row before the rest read it.

Real LiteLLM (and the native path) over real HTTP to the loopback server, which reports cache reads
and writes the way each provider does (``testing.prompt_cache``; its tokens are words).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from promptlift import Budget, Client, ClientConfig, Secret, prompt_cache
from promptlift.client.calllog import MIGRATIONS, CallLog
from promptlift.client.config import CacheConfig, CallLogConfig
from promptlift.client.retry import RetryPolicy
from promptlift.errors import BudgetExceeded
from promptlift.optimize import Dataset, Evaluator, Prompt
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.program import Calls, Program
from promptlift.optimize.prompt import Demo
from promptlift.pricing import estimate_input_tokens
from promptlift.testing.server import LoopbackServer, Reply
from promptlift.types import Message

KEY = Secret("sk-test-prompt-cache-000000")
ONCE = RetryPolicy(max_attempts=1)
SYSTEM = " ".join(f"rule{i}" for i in range(300))  # 300 words: over the emulated minimum of 200
DEMO_USER, DEMO_ANSWER = "Review: a lovely quiet hotel", "positive"


def client_for(srv: LoopbackServer, model: str, **config: object) -> Client:
    base = srv.openai_base if model.startswith("openai/") else srv.url
    return Client(ClientConfig(models=(model,), api_base=base, api_key=KEY, retry=ONCE, **config))  # type: ignore[arg-type]


def conversation(row: str) -> list[Message]:
    return [
        Message("system", SYSTEM),
        Message("user", DEMO_USER),
        Message("assistant", DEMO_ANSWER),
        Message("user", f"{row} is the review"),
    ]


def marks(body: dict[str, object]) -> list[str]:
    """Where the request body carries a ``cache_control``: "system", or "message N"."""
    found = ["system" for block in body.get("system") or [] if "cache_control" in block]  # type: ignore[union-attr, operator]
    for i, message in enumerate(body["messages"]):  # type: ignore[arg-type]
        content = message["content"]
        if isinstance(content, list) and any("cache_control" in part for part in content):
            found.append(f"message {i}")
    return found


# -- reading cached tokens back, per provider ---------------------------------------------------------
@pytest.mark.parametrize("transport", ["litellm", "native"])
def test_openai_reports_a_prefix_seen_before_as_cached_tokens_at_the_cached_rate(
    loopback: LoopbackServer, transport: str
) -> None:
    loopback.emulate_prompt_cache(minimum=200, step=16)
    with client_for(loopback, "openai/gpt-4o-mini", transport=transport, cache=CacheConfig()) as client:
        first = client.complete(conversation("alpha"), max_tokens=4, temperature=0)
        second = client.complete(conversation("beta"), max_tokens=4, temperature=0)
        client.complete(conversation("beta"), max_tokens=4, temperature=0)  # a response-cache hit
        metrics = client.metrics_snapshot()
    assert first.served_by == transport
    assert first.usage.cached_tokens == 0 and first.cache_saved_usd == 0
    # 306 words in common (system and demo): OpenAI counts 200, then steps of 16 (128 at OpenAI)
    assert second.usage.cached_tokens == 296
    uncached = second.usage.input_tokens - 296
    # gpt-4o-mini in the price map: $0.15/M input, $0.075/M cached input, $0.60/M output
    out = second.usage.output_tokens
    assert second.cost_usd == pytest.approx((uncached * 0.15 + 296 * 0.075 + out * 0.6) / 1e6)
    assert second.cache_saved_usd == pytest.approx(296 * (0.15 - 0.075) / 1e6)
    assert "cache_control" not in loopback.requests[1].body.decode()  # nothing to mark for OpenAI
    # the metrics count the provider's cache on calls sent (the response-cache hit adds nothing)
    assert metrics.total.cached_input_tokens == 296
    assert metrics.total.cache_saved_usd == pytest.approx(second.cache_saved_usd)
    assert 'promptlift_cached_input_tokens_total{provider="openai",model="openai/gpt-4o-mini"} 296' in (
        metrics.to_prometheus()
    )


def test_anthropic_marks_the_system_text_and_the_last_demo_and_bills_writes_and_reads(
    loopback: LoopbackServer,
) -> None:
    loopback.emulate_prompt_cache(minimum=200)
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:
        ask = [client.request(conversation(row), max_tokens=4, temperature=0, cache_prefix=3) for row in "ab"]
        first, second = client.complete(ask[0]), client.complete(ask[1])
    body = loopback.requests[0].json
    assert marks(body) == ["system", "message 1"]  # the system block and the demo's answer
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": DEMO_ANSWER, "cache_control": {"type": "ephemeral"}}
    ]
    prefix = 300 + 5 + 1  # system, the demo's question and its answer
    assert (first.usage.cached_tokens, first.usage.cache_write_tokens) == (0, prefix)
    assert (second.usage.cached_tokens, second.usage.cache_write_tokens) == (prefix, 0)
    rest, out = second.usage.input_tokens - prefix, second.usage.output_tokens
    # claude-sonnet-4-5: $3/M input, $0.30/M cache reads, $3.75/M cache writes, $15/M output
    assert first.cost_usd == pytest.approx((rest * 3 + prefix * 3.75 + out * 15) / 1e6)
    assert second.cost_usd == pytest.approx((rest * 3 + prefix * 0.3 + out * 15) / 1e6)
    assert second.cache_saved_usd == pytest.approx(prefix * (3 - 0.3) / 1e6)
    assert first.cache_saved_usd == pytest.approx(-prefix * 0.75 / 1e6)  # the write's premium


def test_anthropic_caches_nothing_that_is_not_marked(loopback: LoopbackServer) -> None:
    loopback.emulate_prompt_cache(minimum=200)
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:
        answers = [client.complete(conversation(row), max_tokens=4, temperature=0) for row in "abc"]
    assert all(marks(r.json) == [] for r in loopback.requests)
    assert all(a.usage.cached_tokens == 0 and a.usage.cache_write_tokens == 0 for a in answers)


def test_a_changed_demo_rereads_the_system_text_and_writes_a_new_prefix(loopback: LoopbackServer) -> None:
    loopback.emulate_prompt_cache(minimum=200)
    other = conversation("c")
    other[2] = Message("assistant", "negative")
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:
        client.complete(client.request(conversation("a"), max_tokens=4, temperature=0, cache_prefix=3))
        changed = client.complete(client.request(other, max_tokens=4, temperature=0, cache_prefix=3))
    # the system breakpoint still hits; from there to the changed demo is a new cache entry
    assert (changed.usage.cached_tokens, changed.usage.cache_write_tokens) == (300, 6)


def test_gemini_reports_implicit_cache_hits_as_cached_content_tokens(loopback: LoopbackServer) -> None:
    loopback.emulate_prompt_cache(minimum=200, step=16)
    with client_for(loopback, "gemini/gemini-2.5-flash") as client:
        client.complete(conversation("alpha"), max_tokens=4, temperature=0)
        second = client.complete(conversation("beta"), max_tokens=4, temperature=0)
    assert second.usage.cached_tokens == 296
    # gemini-2.5-flash: $0.30/M input, $0.03/M cached input, $2.50/M output
    rest, out = second.usage.input_tokens - 296, second.usage.output_tokens
    assert second.cost_usd == pytest.approx((rest * 0.3 + 296 * 0.03 + out * 2.5) / 1e6)


# -- an evaluation: the first row warms the cache, the rest read it --------------------------------
DATA = Dataset.from_records([{"text": f"w{i} was fine", "label": "positive"} for i in range(8)])
PROMPT = Prompt(
    user="Review: {text}",
    system=" ".join(f"guideline{i}" for i in range(400)),  # ~1,300 estimated tokens: qualifies
    demos=(Demo({"text": "a lovely quiet hotel"}, "positive"),),
    params={"max_tokens": 2},
)
PREFIX = 400 + 5 + 1  # words of the system text, the demo's question and its answer


def evaluate(srv: LoopbackServer, model: str, *, prompt_cache: bool) -> tuple[float, int, float]:
    srv.reset()
    srv.emulate_prompt_cache(minimum=200, step=1)
    # answered after 50 ms: calls in flight together all miss the cache, as at the providers
    srv.set_default(Reply(content="positive", delay=0.05))
    with client_for(srv, model, concurrency=4, prompt_cache=prompt_cache) as client:
        evaluation = asyncio.run(Evaluator(client, ExactMatch("label")).evaluate(PROMPT, DATA))
    assert evaluation.mean == 1.0
    return evaluation.spend.cost_usd, evaluation.spend.cached_input_tokens, evaluation.spend.cache_saved_usd


def test_anthropic_evaluation_writes_once_then_reads_the_prefix_for_every_other_row(
    loopback: LoopbackServer,
) -> None:
    off = evaluate(loopback, "anthropic/claude-sonnet-4-5", prompt_cache=False)
    assert off[1:] == (0, 0)  # not marked: Anthropic caches nothing
    on = evaluate(loopback, "anthropic/claude-sonnet-4-5", prompt_cache=True)
    requests = loopback.requests
    assert all(marks(r.json) == ["system", "message 1"] for r in requests)
    assert requests[1].time >= requests[0].time + 0.05  # the first went alone, answered before the rest
    assert on[1] == 7 * PREFIX  # every row after the first read the whole prefix
    assert on[0] < 0.3 * off[0]
    assert on[2] == pytest.approx(off[0] - on[0])  # the saving is the difference, from reported usage


def test_openai_evaluation_reads_the_cache_on_every_row_after_the_first_only_when_warmed(
    loopback: LoopbackServer,
) -> None:
    off = evaluate(loopback, "openai/gpt-4o-mini", prompt_cache=False)
    on = evaluate(loopback, "openai/gpt-4o-mini", prompt_cache=True)
    # "Review:" opens every row too: OpenAI's automatic cache reads it with the prefix
    assert off[1] == 4 * (PREFIX + 1)  # the first 4 were sent together and all missed
    assert on[1] == 7 * (PREFIX + 1)
    assert on[0] < off[0]


def test_rows_the_response_cache_answers_do_not_count_as_warming_the_providers(
    loopback: LoopbackServer,
) -> None:
    loopback.emulate_prompt_cache(minimum=200, step=1)
    loopback.set_default(Reply(content="positive", delay=0.05))
    with client_for(loopback, "anthropic/claude-sonnet-4-5", concurrency=4, cache=CacheConfig()) as client:
        evaluator = Evaluator(client, ExactMatch("label"))
        asyncio.run(evaluator.evaluate(PROMPT, list(DATA)[:2]))  # rows 0 and 1 in the response cache
        loopback.reset()
        loopback.emulate_prompt_cache(minimum=200, step=1)  # the provider's cache expired meanwhile
        loopback.set_default(Reply(content="positive", delay=0.05))
        evaluation = asyncio.run(evaluator.evaluate(PROMPT, DATA))
    sent = loopback.requests
    assert evaluation.spend.calls == len(sent) == 6 and evaluation.spend.cached_calls == 2
    assert sent[1].time >= sent[0].time + 0.05  # row 2, the first one sent, went alone
    assert evaluation.spend.cached_input_tokens == 5 * PREFIX


def test_the_embedded_model_and_a_short_prefix_are_sent_as_before(loopback: LoopbackServer) -> None:
    short = PROMPT.replace(system="Classify the review.")
    row_first = PROMPT.replace(system=PROMPT.system + " {text}")
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:
        evaluator = Evaluator(client, ExactMatch("label"))
        assert evaluator.cache_prefix(PROMPT) == 3  # the system text, the demo's question and answer
        assert evaluator.cache_prefix(short) == 0 and evaluator.cache_prefix(row_first) == 0
    with client_for(loopback, "local/gemma-3-270m") as client:
        assert Evaluator(client, ExactMatch("label")).cache_prefix(PROMPT) == 0


def test_a_programs_prompts_are_each_marked_and_its_first_row_goes_alone(loopback: LoopbackServer) -> None:
    def program(row: dict[str, str], lm: Calls) -> str:
        return lm.call("label", text=lm.call("echo", text=row["text"]))

    loopback.emulate_prompt_cache(minimum=200)
    loopback.set_default(Reply(content="positive", delay=0.05))
    prompts = {"echo": Prompt(user="Repeat: {text}"), "label": PROMPT}
    with client_for(loopback, "anthropic/claude-sonnet-4-5", concurrency=4) as client:
        evaluation = asyncio.run(
            Evaluator(client, ExactMatch("label")).evaluate(Program(prompts, program), DATA)
        )
    requests = loopback.requests
    labelled = [r for r in requests if marks(r.json)]
    assert len(labelled) == 8 and all(marks(r.json) == ["system", "message 1"] for r in labelled)
    assert all(marks(r.json) == [] for r in requests if r not in labelled)  # a short prompt: unmarked
    assert requests[2].time >= requests[1].time + 0.05  # the first row's two calls went alone
    assert evaluation.spend.cached_input_tokens == 7 * PREFIX


def test_a_budget_reserves_a_marked_prefix_at_the_cache_write_rate(loopback: LoopbackServer) -> None:
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:
        plain = client.request(conversation("a"), max_tokens=1, temperature=0)
        marked = plain.replace(cache_prefix=3)
        tokens, prefix = estimate_input_tokens(plain), prompt_cache.prefix_tokens(plain.messages[:3])
        at_input = (tokens * 3 + 15) / 1e6  # the worst case with every input token at $3/M
        at_write = ((tokens - prefix) * 3 + prefix * 3.75 + 15) / 1e6  # the prefix at $3.75/M
        cap = (at_input + at_write) / 2
        with client.budget_scope(Budget(max_cost_usd=cap)), pytest.raises(BudgetExceeded):
            client.complete(marked)
        assert loopback.requests == []  # refused before sending
        with client.budget_scope(Budget(max_cost_usd=cap)):
            client.complete(plain)  # the same call unmarked fits
    assert len(loopback.requests) == 1


def test_each_models_minimum_comes_from_the_price_map_where_it_lists_one() -> None:
    minimum = {m: getattr(prompt_cache.rule_for(m), "min_tokens", None) for m in MINIMUMS}
    assert minimum == MINIMUMS


MINIMUMS = {
    "anthropic/claude-sonnet-4-5": 1024,
    "anthropic/claude-haiku-4-5": 4096,  # listed in the price map
    "anthropic/claude-3-5-haiku-20241022": 2048,  # not listed: Anthropic's documented minimum
    "openai/gpt-4o-mini": 1024,
    "gemini/gemini-2.5-pro": 2048,
    "local/gemma-3-270m": None,  # no provider cache: its own KV cache
}


def test_the_call_log_keeps_cache_reads_writes_and_savings_and_migrates_an_older_file(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    path = tmp_path / "calls.sqlite"
    older = sqlite3.connect(path)  # a file written before the prompt-cache columns
    older.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, at REAL)")
    older.executescript(MIGRATIONS[0][1])
    older.execute("INSERT INTO _migrations VALUES ('001_calls', 0)")
    older.commit()
    older.close()
    loopback.emulate_prompt_cache(minimum=200)
    with client_for(loopback, "anthropic/claude-sonnet-4-5", call_log=CallLogConfig(str(path))) as client:
        asks = [
            client.request(conversation(row), max_tokens=4, temperature=0, cache_prefix=3) for row in "ab"
        ]
        first, second = client.complete(asks[0]), client.complete(asks[1])
    rows = CallLog(str(path)).rows()
    prefix = 300 + 5 + 1
    assert [(r["cache_write_tokens"], r["cached_input_tokens"]) for r in rows] == [(prefix, 0), (0, prefix)]
    assert [r["cache_saved_usd"] for r in rows] == pytest.approx(
        [first.cache_saved_usd, second.cache_saved_usd]
    )


def test_an_entry_expires_once_unused_for_its_ttl_and_a_read_keeps_it_alive(loopback: LoopbackServer) -> None:
    loopback.emulate_prompt_cache(minimum=200, ttl_s=1.0)
    with client_for(loopback, "anthropic/claude-sonnet-4-5") as client:

        def read(row: str) -> int:
            ask = client.request(conversation(row), max_tokens=4, temperature=0, cache_prefix=3)
            return client.complete(ask).usage.cached_tokens

        assert read("a") == 0
        time.sleep(0.6)
        assert read("b") > 0  # read within its life, which the read renews
        time.sleep(0.6)
        assert read("c") > 0  # 1.2 s after the write, 0.6 s after the last read
        time.sleep(1.3)
        assert read("d") == 0  # unused for longer than the ttl: written again
