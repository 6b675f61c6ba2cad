"""The embedded model, for real: through the client, LiteLLM's custom route and llama.cpp.

These tests load the real 270M model (about 1 s once per session) and make a few dozen short
calls; they are marked ``model``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from promptlift import Client
from promptlift.errors import ContextWindowExceeded, LocalModelError
from promptlift.providers import local
from promptlift.providers.render import render_plain
from promptlift.types import Message

pytestmark = pytest.mark.model

SENTIMENT = [
    {"role": "system", "content": "Classify the sentiment of each review."},
    {"role": "user", "content": "Review: I loved every minute, wonderful.\nSentiment:"},
    {"role": "assistant", "content": "positive"},
    {"role": "user", "content": "Review: It broke after a day, awful.\nSentiment:"},
    {"role": "assistant", "content": "negative"},
]
CASES = {
    "The best meal I have had all year.": "positive",
    "Rude staff and cold food, never again.": "negative",
    "Brilliant, funny and moving.": "positive",
    "The screen cracked the first week, terrible.": "negative",
}


def ask(text: str) -> list[dict[str, str]]:
    return [*SENTIMENT, {"role": "user", "content": f"Review: {text}\nSentiment:"}]


@pytest.fixture(scope="module")
def client() -> Client:
    with Client() as c:
        yield c


def test_default_model_is_the_embedded_one_and_costs_nothing(client: Client) -> None:
    completion = client.complete(ask("The best meal I have had all year."), max_tokens=3, temperature=0)
    assert client.model == "local/gemma-3-270m"
    assert completion.model == "local/gemma-3-270m"
    assert completion.provider == "local"
    assert completion.content == "positive"
    assert completion.cost_usd == 0.0
    assert completion.usage.input_tokens > 20 and completion.usage.output_tokens >= 1


def test_temperature_zero_is_deterministic_across_clients(client: Client) -> None:
    messages = [{"role": "user", "content": "Write one sentence about the sea:"}]
    first = client.complete(messages, max_tokens=24, temperature=0)
    with Client() as other:
        second = other.complete(messages, max_tokens=24, temperature=0)
    assert first.content and first.content == second.content


def test_system_message_reaches_the_model(client: Client) -> None:
    # The answer is only knowable from the system text: a chat template that dropped it would fail.
    with_system = client.complete(
        [
            {"role": "system", "content": "The secret word is zebra."},
            {"role": "user", "content": "The secret word is"},
        ],
        max_tokens=5,
        temperature=0,
    )
    without = client.complete(
        [{"role": "user", "content": "The secret word is"}], max_tokens=5, temperature=0
    )
    assert "zebra" in with_system.content.lower()
    assert "zebra" not in without.content.lower()


def test_plain_text_rendering_of_chat_turns() -> None:
    text = render_plain([Message(**m) for m in ask("Great.")])  # type: ignore[arg-type]
    assert text == (
        "Classify the sentiment of each review.\n\n"
        "Review: I loved every minute, wonderful.\nSentiment: positive\n\n"
        "Review: It broke after a day, awful.\nSentiment: negative\n\n"
        "Review: Great.\nSentiment:"
    )
    # A turn without a colon cue gets its answer on the next line; an assistant turn closes a block.
    assert render_plain([Message("user", "Translate: chat"), Message("assistant", "cat")]).endswith(
        "chat\ncat\n\n"
    )
    assert render_plain([Message("user", "Say hi")]) == "Say hi\n"


def test_stop_sequences_end_the_answer(client: Client) -> None:
    counting = [
        {"role": "user", "content": "Count from 1 to 5:"},
        {"role": "assistant", "content": "1, 2, 3, 4, 5"},
        {"role": "user", "content": "Count from 1 to 9:"},
    ]
    full = client.complete(counting, max_tokens=40, temperature=0)
    cut = client.complete(counting, max_tokens=40, temperature=0, stop=["6"])
    assert full.content.startswith("1, 2, 3, 4, 5, 6")
    assert cut.content == "1, 2, 3, 4, 5,"
    assert cut.finish_reason == "stop"
    assert "\n\n" not in full.content  # the block separator is a default stop


def test_shared_prefix_is_reused_from_the_kv_cache(client: Client) -> None:
    client.complete(ask("Brilliant, funny and moving."), max_tokens=3, temperature=0)
    second = client.complete(ask("Rude staff and cold food, never again."), max_tokens=3, temperature=0)
    assert second.usage.cached_tokens >= 30  # the instruction and both demos were not recomputed


def test_eight_threads_get_correct_answers(client: Client) -> None:
    texts = list(CASES) * 2
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = client.complete(ask(texts[i]), max_tokens=3, temperature=0).content

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(8)] == [CASES[t] for t in texts]


def test_eight_asyncio_tasks_get_correct_answers_without_blocking_the_loop(client: Client) -> None:
    texts = list(CASES) * 2

    async def main() -> tuple[list[str], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        done = await asyncio.gather(*(client.acomplete(ask(t), max_tokens=3, temperature=0) for t in texts))
        tick_task.cancel()
        return [c.content for c in done], ticks

    answers, ticks = asyncio.run(main())
    assert answers == [CASES[t] for t in texts]
    assert ticks > 0  # the loop kept running while the model worked


def test_prompt_longer_than_the_context_window_is_a_clear_error(client: Client) -> None:
    with pytest.raises(ContextWindowExceeded, match="context window of 4096 tokens"):
        client.complete("word " * 5000, max_tokens=8)


def test_unknown_local_model_lists_the_available_ones(client: Client) -> None:
    with pytest.raises(LocalModelError, match=r"unknown local model 'local/gpt-9'.*local/gemma-3-270m"):
        client.complete("hi", model="local/gpt-9")


def test_missing_runtime_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` sees when absent
    engine = local.LocalEngine(local.spec_for("local/gemma-3-270m"))
    with pytest.raises(LocalModelError, match=r"llama-cpp-python\) is not installed.*uv sync --extra local"):
        engine.check_ready()


def test_corrupt_weights_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLIFT_MODEL_DIR", str(tmp_path))
    spec = local.spec_for("gemma-3-270m")
    bad = local.weights_target(spec)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LocalModelError, match="checksum mismatch") as info:
        local.weights_path(spec)
    assert str(bad) in str(info.value)


def test_the_default_thread_count_leaves_busy_cores_alone() -> None:
    def readings(*pairs: tuple[int, int]) -> Callable[[], tuple[int, int]]:
        it = iter(pairs)
        return lambda: next(it)

    def free(first: tuple[int, int], second: tuple[int, int], cores: int = 2) -> int | None:
        return local.free_cores(cores=cores, read=readings(first, second), sleep=lambda s: None)

    assert free((0, 0), (200, 200)) == 2  # both cores idle through the window
    assert free((0, 0), (100, 200)) == 1  # one core busy with another process
    assert free((0, 0), (5, 200)) == 1  # both busy: still one thread, never zero
    assert free((0, 0), (380, 800), cores=8) == 4
    assert free((10, 10), (10, 10)) is None  # no time passed: no reading

    def no_proc() -> tuple[int, int]:
        raise OSError("no /proc/stat")

    assert local.free_cores(read=no_proc, sleep=lambda s: None) is None
    if sys.platform.startswith("linux"):
        assert local.free_cores() is not None  # /proc/stat read and parsed, on this machine


def test_thread_count_can_be_set_for_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = local.spec_for("gemma-3-270m")
    monkeypatch.setenv("PROMPTLIFT_LOCAL_THREADS", "1")
    assert local.LocalEngine(spec).n_threads == 1
    monkeypatch.setenv("PROMPTLIFT_LOCAL_THREADS", "two")
    with pytest.raises(LocalModelError, match="PROMPTLIFT_LOCAL_THREADS must be a whole number"):
        local.LocalEngine(spec)


def test_the_runtime_prints_nothing_of_its_own_and_its_lines_reach_our_debug_log() -> None:
    """llama.cpp's log lines (its warnings too: llama-cpp-python maps them by an old enum) go to the
    `promptlift.local` logger at DEBUG, never straight to stderr."""
    import subprocess

    def complete(*verbosity: str) -> subprocess.CompletedProcess[str]:
        argv = ["complete", "--model", "local/gemma-3-270m", "--max-tokens", "4", "Hi"]
        done = subprocess.run(
            [sys.executable, "-m", "promptlift", *verbosity, *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done

    assert complete().stderr == ""  # not one line of the runtime's (it printed llama_kv_cache_iswa: ...)
    loud = complete("-vv")
    assert "llama.cpp: llama_kv_cache_iswa" in loud.stderr  # kept, at debug level
