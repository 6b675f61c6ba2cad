"""The embedded model: promptlift's overhead over the raw runtime, prefix reuse, CLI start-up.

    uv run --all-extras python -m bench.local_model

Both sides get the same 200-token prompts and generate 20 tokens greedily; each prompt starts with
a different number so neither side reuses the KV cache (the prefix-reuse row measures that apart).
Calls alternate between the two sides so machine noise hits both alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import save, summary, timed

BODY = (
    "The committee reviewed the quarterly figures, the staffing plan and the building repairs, "
    "and asked for a shorter report next time. "
) * 7  # ~200 tokens with the prefix


def prompt(i: int) -> str:
    return f"Note {i}. {BODY}\nSummary:"


def main(rounds: int = 12) -> None:
    import llama_cpp

    from promptlift import Client
    from promptlift.providers.local import engine_for, spec_for, weights_path

    client = Client()
    client.complete("warm up", max_tokens=1)  # loads litellm and the model once
    raw = llama_cpp.Llama(
        model_path=str(weights_path(spec_for("gemma-3-270m"))),
        n_ctx=4096,
        n_threads=engine_for("local/gemma-3-270m").n_threads,
        verbose=False,
    )
    raw.create_completion("warm up", max_tokens=1)
    n_tokens = len(raw.tokenize(prompt(0).encode()))

    def once(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
        started = time.perf_counter()
        fn(*args, **kwargs)
        return time.perf_counter() - started

    ours: list[float] = []
    theirs: list[float] = []
    for i in range(rounds):  # alternate the two sides so noise hits both alike
        text = prompt(1000 + i)
        ours.append(once(client.complete, text, max_tokens=20, temperature=0, stop=["\u0000"]))
        theirs.append(once(raw.create_completion, text, max_tokens=20, temperature=0, stop=["\u0000"]))

    # Prefix reuse: 20 calls that share a 200-token instruction and differ in the last line,
    # against 20 calls whose instruction differs from the first token on.
    shared = [{"role": "system", "content": BODY}]
    reuse = [
        once(
            client.complete, [*shared, {"role": "user", "content": f"Item {i}:"}], max_tokens=3, temperature=0
        )
        for i in range(20)
    ]
    fresh = [
        once(
            client.complete,
            [{"role": "system", "content": f"{i} {BODY}"}, {"role": "user", "content": f"Item {i}:"}],
            max_tokens=3,
            temperature=0,
        )
        for i in range(20)
    ]
    script = str(Path(sys.executable).parent / "promptlift")  # the console script users run
    help_times = timed(lambda: subprocess.run([script, "--help"], check=True, capture_output=True), 10)
    client.close()
    result = {
        "prompt_tokens": n_tokens,
        "promptlift_call": summary(ours),
        "raw_llama_call": summary(theirs),
        "overhead_ratio": statistics.median(ours) / statistics.median(theirs),
        "prefix_shared_call": summary(reuse[1:]),
        "prefix_unshared_call": summary(fresh),
        "prefix_speedup": statistics.median(fresh) / statistics.median(reuse[1:]),
        "help": summary(help_times),
    }
    path = save("local_model", result)
    print(f"prompt tokens {n_tokens}")
    print(
        f"promptlift  median {statistics.median(ours) * 1000:.0f} ms   raw llama median "
        f"{statistics.median(theirs) * 1000:.0f} ms   ratio {result['overhead_ratio']:.3f}"
    )
    print(
        f"prefix reuse: shared {statistics.median(reuse[1:]) * 1000:.0f} ms vs unshared "
        f"{statistics.median(fresh) * 1000:.0f} ms  ({result['prefix_speedup']:.1f}x)"
    )
    print(f"promptlift --help median {statistics.median(help_times) * 1000:.0f} ms")
    print(f"written {path} at {time.strftime('%H:%M')}")


if __name__ == "__main__":
    main()
