"""Try opik-optimizer 3.2.0 the documented way, with no Opik server or account, and record what fails.

    python -m bench.opik.probe        # in bench/.venv-opik (made by `make bench-peers`)

Two attempts, each bounded: (1) an Opik dataset, which every optimizer requires, created through
the Opik client at a self-hosted server's default loopback address (none runs here); (2) a plain
list of rows passed to ``MetaPromptOptimizer.optimize_prompt`` instead. The exact exception of
each is written to ``bench/results/opik_probe.json``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from bench.common import save

ROWS = [
    {"review": "A wonderful, moving film.", "sentiment": "positive"},
    {"review": "Dull and far too long.", "sentiment": "negative"},
]


def attempt(fn: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        value = fn()
    except BaseException as exc:  # the finding is the exception, whatever it is
        return {
            "ok": False,
            "error_type": f"{type(exc).__module__}.{type(exc).__name__}",
            "error": str(exc)[:2000],
            "traceback_tail": traceback.format_exc()[-1500:],
            "seconds": round(time.perf_counter() - started, 2),
        }
    return {"ok": True, "value": repr(value)[:500], "seconds": round(time.perf_counter() - started, 2)}


def opik_dataset() -> Any:
    import opik

    client = opik.Opik()
    dataset = client.get_or_create_dataset(name="promptlift-bench-probe")
    dataset.insert(ROWS)
    return dataset


def plain_rows() -> Any:
    from opik_optimizer import ChatPrompt, MetaPromptOptimizer

    prompt = ChatPrompt(system="Classify the sentiment of the review.", user="Review: {review}\nSentiment:")

    def metric(item: dict[str, Any], output: str) -> float:
        return float(item["sentiment"] in output.lower())

    optimizer = MetaPromptOptimizer(model="openai/gpt-4o-mini")
    return optimizer.optimize_prompt(prompt=prompt, dataset=ROWS, metric=metric, max_trials=1)  # type: ignore[arg-type]


def main() -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # A self-hosted Opik's default address, on loopback, and no error reporting to Opik's Sentry:
    # nothing here may leave the machine.
    os.environ.setdefault("OPIK_URL_OVERRIDE", "http://127.0.0.1:5173/api")
    os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("opik", "opik-optimizer", "litellm")}
    result = {"versions": versions, "opik_dataset": attempt(opik_dataset), "plain_rows": attempt(plain_rows)}
    path = save("opik_probe", result)
    for key in ("opik_dataset", "plain_rows"):
        r = result[key]
        print(f"{key}: {'ok' if r['ok'] else r['error_type'] + ': ' + r['error'][:300]}")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
