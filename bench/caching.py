"""What provider prompt caching saves one optimization run of the bundled example's shape.

The run is ``examples/sentiment/config.yaml`` (fewshot, up to 4 demos, 20 trials, the 104 reviews,
at most 600 calls) sent to the loopback server, which plays the task model (right once its demos show
both labels, so every run makes the same search) and reports prompt-cache reads and writes the way
each provider does (``testing.prompt_cache``, its real minimum of 1,024 tokens; tokens are words):

- caching off: ``prompt_cache: false`` (no breakpoints, every row sent as it comes);
- caching on: the default (Anthropic breakpoints on the system text and the last demo, the first
  row of each evaluation sent alone before the others);
- caching on + batch scoring: also ``provider_batch: {test_scoring: true}``: the driver's two test
  scorings (the starting prompt's and the best's) sent as provider Batch API jobs to the server's
  emulation (``testing.batch_api``), priced at the batch rate (``pricing.batch_price``).

Each is run as Anthropic (claude-sonnet-4-5) and as OpenAI (gpt-4.1-mini, gpt-4o-mini) at the
price map's list prices, computed from the usage the server reported, for the prompt as shipped (a
one-line instruction) and with a labelling guide of ~1,100 words as its system text. "Full price"
is every call's input at the input rate: what a client that never caches pays.

    uv run --locked --all-extras python -m bench.caching      # writes bench/results/caching.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import save
from promptlift.optimize.config import load_config
from promptlift.optimize.plan import make_plan
from promptlift.optimize.session import run_config
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sentiment"
MODELS = ("anthropic/claude-sonnet-4-5", "openai/gpt-4.1-mini", "openai/gpt-4o-mini")
DELAY_S = 0.02  # each answer: calls in flight together miss the cache, as at the providers

_DOMAINS = (
    "hotels and spas",
    "restaurants and cafes",
    "films and series",
    "books and comics",
    "phones and laptops",
    "kitchen appliances",
    "clothes and shoes",
    "toys and games",
    "tools and hardware",
    "concerts and theatre",
    "flights and trains",
    "software and apps",
    "furniture",
    "beauty products",
    "courses and classes",
    "pet supplies",
    "garden equipment",
    "car rentals",
)


def guide() -> str:
    """A labelling guide of ~1,100 words: the kind of instruction a real classification prompt has."""
    rules = ["Classify the sentiment of the review as positive or negative. Follow these guidelines."]
    for i, domain in enumerate(_DOMAINS, 1):
        rules.append(
            f"{i}. Reviews of {domain}: judge the reviewer's overall verdict, not single details. "
            f"Praise for quality, value, comfort or service in {domain} with no serious complaint is "
            f"positive. A review of {domain} that reports something broken, rude, late, dirty, unsafe "
            f"or not as described is negative even when it is politely written or ends with thanks. "
            f"Sarcasm about {domain} counts as the sentiment it really means. Mixed reviews take the "
            f"label of the final judgement the reviewer gives, and a recommendation to others decides a "
            f"close call."
        )
    rules.append("Answer with one word, positive or negative, and nothing else.")
    return "\n".join(rules)


def labeller(labels: dict[str, str]) -> Any:
    def answer(request: RecordedRequest) -> Reply:
        turns = request.conversation
        shown = {t.text.strip() for t in turns if t.role == "assistant"}
        review = turns[-1].text.split("Review:", 1)[-1].split("\nSentiment:", 1)[0].strip()
        right = labels.get(review)
        both = {"positive", "negative"} <= shown
        return dataclasses.replace(ok(right if both and right else "neutral"), delay=DELAY_S)

    return answer


def write_config(
    folder: Path, model: str, api_base: str, system: str, caching: bool, batch: bool = False
) -> Path:
    folder.mkdir(parents=True)
    body = (EXAMPLE / "config.yaml").read_text()
    body = body.replace("model: local/gemma-3-270m\n", f"model: {model}\napi_base: {api_base}\n")
    body = body.replace('system: "Classify the sentiment of the review."', f"system: {json.dumps(system)}")
    body = body.replace("path: reviews.jsonl", f"path: {EXAMPLE / 'reviews.jsonl'}")
    body = body.replace("store: runs/", "store: runs/\ncache: false")  # every call paid: no answer reuse
    path = folder / "config.yaml"
    extra = ("" if caching else "prompt_cache: false\n") + (
        "provider_batch: {test_scoring: true, poll_interval: 0.01}\n" if batch else ""
    )
    path.write_text(body + extra)
    return path


def one_run(
    srv: LoopbackServer, folder: Path, model: str, system: str, caching: bool, batch: bool = False
) -> dict[str, Any]:
    base = srv.openai_base if model.startswith("openai/") else srv.url
    config = load_config(write_config(folder, model, base, system, caching, batch))
    srv.emulate_prompt_cache(minimum=1024, step=128)  # a fresh cache per run
    plan = make_plan(config)
    started = time.perf_counter()
    result = run_config(config)
    summary = result.summary()
    full = summary["cost_usd"] + summary["cache_saved_usd"] + summary["batch_saved_usd"]
    return {
        "calls": summary["calls"],
        "cost_usd": round(summary["cost_usd"], 6),
        "full_price_usd": round(full, 6),
        "cached_input_tokens": summary["cached_input_tokens"],
        "cache_saved_usd": round(summary["cache_saved_usd"], 6),
        "batch_saved_usd": round(summary["batch_saved_usd"], 6),
        "less_than_full_price": round(1 - summary["cost_usd"] / full, 4) if full else 0.0,
        "test_best_score": summary["test_best_score"],
        "best_prompt": summary["best_prompt"],
        "plan_prompt_cache": plan.caching.to_dict() if plan.caching else None,
        "plan_batch_test_scoring": plan.batch.to_dict() if plan.batch else None,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench-not-a-real-key")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    labels = {}
    for line in (EXAMPLE / "reviews.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels[row["text"]] = row["label"]
    prompts = {"as shipped": "Classify the sentiment of the review.", "with a labelling guide": guide()}
    runs: dict[str, Any] = {}
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as tmp:
        srv.handler = labeller(labels)
        for shape, system in prompts.items():
            for model in MODELS:
                by_mode = {}
                for mode in ("off", "on", "on+batch"):
                    folder = Path(tmp) / shape.replace(" ", "_") / model.replace("/", "_") / mode
                    by_mode[mode] = one_run(srv, folder, model, system, mode != "off", mode == "on+batch")
                off, on, batched = by_mode["off"], by_mode["on"], by_mode["on+batch"]
                same = all(
                    off["best_prompt"] == x["best_prompt"] and off["test_best_score"] == x["test_best_score"]
                    for x in (on, batched)
                )
                runs[f"{shape} · {model}"] = {
                    "system_words": len(system.split()),
                    "off": {k: v for k, v in off.items() if k != "best_prompt"},
                    "on": {k: v for k, v in on.items() if k != "best_prompt"},
                    "on+batch": {k: v for k, v in batched.items() if k != "best_prompt"},
                    "on_less_than_off": round(1 - on["cost_usd"] / off["cost_usd"], 4)
                    if off["cost_usd"]
                    else 0,
                    "on_batch_less_than_full": batched["less_than_full_price"],
                    "same_result": same,
                }
                print(
                    f"{shape:24} {model:28} off ${off['cost_usd']:.4f} on ${on['cost_usd']:.4f} "
                    f"on+batch ${batched['cost_usd']:.4f} full ${on['full_price_usd']:.4f} "
                    f"on vs full -{on['less_than_full_price']:.0%} "
                    f"on+batch vs full -{batched['less_than_full_price']:.0%} "
                    f"same result: {same}",
                    flush=True,
                )
    path = save(
        "caching",
        {"example": "examples/sentiment/config.yaml", "answer_delay_s": DELAY_S, "runs": runs},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
