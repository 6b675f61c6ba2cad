"""``promptlift batch``: a JSONL file of prompts in, a JSONL file of answers out, in input order.

Each input line is ``{"id": ..., "messages": [...]}`` or ``{"id": ..., "prompt": "..."}``, with
optional per-line ``model``, ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed`` and
``response_format``. Each output line carries the input's ``id`` and either the answer
(``ok: true``, content, model, usage, cost_usd, latency_s, attempts, cached) or
``ok: false`` with ``error: {type, message}``; one line out per line in, always.

Output lines are written (and flushed) as soon as every line before them is done, so a killed
run leaves a clean prefix; with the same cache, a re-run calls the provider only for the lines
not answered before. Each line is one sample: the batch cache serves sampled lines too.
With ``--max-cost``, the first call that would cross the budget closes it: nothing more is sent,
and every line not yet answered (nor in the cache) is recorded as a ``BudgetExceeded`` error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptlift.client import Client, ClientConfig
    from promptlift.client.metrics import MetricsSnapshot
    from promptlift.errors import PromptliftError
    from promptlift.types import Completion, CompletionRequest

_LINE_PARAMS = ("model", "temperature", "max_tokens", "top_p", "stop", "seed", "response_format")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", help="answer every prompt of a JSONL file, concurrently, within limits")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--model", action="append", default=[], help="model; repeat for a fallback chain")
    p.add_argument("--api-base", help="endpoint for every model given")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    p.add_argument("--rpm", type=float, help="requests per minute, every model together")
    p.add_argument("--tpm", type=float, help="tokens per minute, every model together")
    p.add_argument("--max-cost", type=float, metavar="USD", help="stop sending before spend would cross this")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache", metavar="PATH", help="cache file (default: $PROMPTLIFT_CACHE or ~/.cache/...)"
    )
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--max-retries", type=int, help="retries per call after the first attempt")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt")
    p.add_argument("--temperature", type=float, help="for lines that do not set one")
    p.add_argument("--max-tokens", type=int, help="for lines that do not set one")
    p.add_argument(
        "--input-price", type=float, metavar="USD_PER_MTOK", help="price of a model not in the map"
    )
    p.add_argument(
        "--output-price", type=float, metavar="USD_PER_MTOK", help="price of a model not in the map"
    )
    p.add_argument("--metrics-json", metavar="PATH", help="also write the final metrics as JSON")
    from promptlift.cli.endpoints import add_allow_host

    add_allow_host(p)
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> ClientConfig:
    from promptlift.client import ClientConfig
    from promptlift.client.cache import default_cache_path
    from promptlift.client.config import Budget, CacheConfig, ModelPrice, RateLimit

    models = tuple(args.model)
    changes: dict[str, Any] = {}
    if args.rpm or args.tpm:
        changes["rate_limits"] = (RateLimit("*", rpm=args.rpm, tpm=args.tpm),)
    if args.max_cost is not None:
        changes["budget"] = Budget(max_cost_usd=args.max_cost)
    if not args.no_cache:
        changes["cache"] = CacheConfig(path=args.cache or default_cache_path(), sampled=True)
    if args.input_price is not None or args.output_price is not None:
        price = ModelPrice(args.input_price or 0.0, args.output_price or 0.0)
        changes["prices"] = {m: price for m in models}
    if args.max_retries is not None:
        from promptlift.client.retry import RetryPolicy

        changes["retry"] = RetryPolicy.with_max_retries(args.max_retries)
    from promptlift.cli.endpoints import allowed_hosts

    changes["allowed_hosts"] = allowed_hosts(args)
    return ClientConfig(
        models=models, api_base=args.api_base, timeout=args.timeout, concurrency=args.concurrency, **changes
    )


def parse_line(client: Client, raw: str, args: argparse.Namespace) -> tuple[Any, CompletionRequest]:
    """``(id, request)`` for one input line; raises ``DatasetError`` naming what is wrong."""
    from promptlift.errors import DatasetError

    try:
        item = json.loads(raw)
    except ValueError as exc:
        raise DatasetError(f"not JSON: {exc}") from None
    if not isinstance(item, dict) or ("messages" not in item and "prompt" not in item):
        raise DatasetError('a line needs "messages" or "prompt"')
    params: dict[str, Any] = {k: item[k] for k in _LINE_PARAMS if k in item}
    if args.temperature is not None:
        params.setdefault("temperature", args.temperature)
    if args.max_tokens is not None:
        params.setdefault("max_tokens", args.max_tokens)
    if isinstance(params.get("stop"), list):
        params["stop"] = tuple(params["stop"])
    try:
        return item.get("id"), client.request(item.get("messages") or item["prompt"], **params)
    except (TypeError, ValueError) as exc:
        raise DatasetError(str(exc)) from None


def output_line(line_id: Any, result: Completion | PromptliftError) -> dict[str, Any]:
    from promptlift.secrets import redact
    from promptlift.types import Completion

    if isinstance(result, Completion):
        return {
            "id": line_id,
            "ok": True,
            "content": result.content,
            "model": result.model,
            "usage": result.usage.to_dict(),
            "cost_usd": result.cost_usd,
            "latency_s": round(result.latency_s, 6),
            "attempts": result.attempts,
            "cached": result.cached,
        }
    return {
        "id": line_id,
        "ok": False,
        "error": {"type": type(result).__name__, "message": redact(str(result))},
    }


class OrderedWriter:
    """Writes results in input order as soon as the prefix before them is complete."""

    def __init__(self, out: IO[str], ids: Sequence[Any]):
        self.out = out
        self.ids = ids
        self.pending: dict[int, dict[str, Any]] = {}
        self.next = 0

    def put(self, index: int, line: dict[str, Any]) -> None:
        self.pending[index] = line
        while self.next in self.pending:
            self.out.write(json.dumps(self.pending.pop(self.next), ensure_ascii=False) + "\n")
            self.next += 1
        self.out.flush()


class Progress:
    """One status line on stderr: done/failed, calls/s, spend, ETA. Only on a terminal."""

    def __init__(self, total: int, stream: IO[str], enabled: bool):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.done = self.failed = 0
        self.spend = 0.0
        self.started = self.last_draw = time.monotonic()

    def update(self, ok: bool, cost: float) -> None:
        self.done += 1
        self.failed += not ok
        self.spend += cost
        now = time.monotonic()
        if self.enabled and (now - self.last_draw > 0.1 or self.done == self.total):
            self.last_draw = now
            self.stream.write("\r\033[K" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {self.done}/{self.total} ok {self.done - self.failed} failed {self.failed}"
            f" | {rate:.1f} calls/s | ${self.spend:.4f} | ETA {eta:.0f}s"
        )

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def run(args: argparse.Namespace) -> int:
    from promptlift.client import Client
    from promptlift.errors import BudgetExceeded, DatasetError
    from promptlift.types import Completion

    with open(args.input, encoding="utf-8") as f:
        raw_lines = [line for line in f if line.strip()]
    config = build_config(args)
    with Client(config) as client, open(args.output, "w", encoding="utf-8") as out:
        ids: list[Any] = []
        requests: list[CompletionRequest] = []
        slots: list[int] = []  # the request index of each line, or -1 for a line that did not parse
        bad: dict[int, DatasetError] = {}
        for i, raw in enumerate(raw_lines):
            try:
                line_id, request = parse_line(client, raw, args)
            except DatasetError as exc:
                ids.append(None)
                bad[i] = exc
                slots.append(-1)
                continue
            ids.append(line_id)
            slots.append(len(requests))
            requests.append(request)
        writer = OrderedWriter(out, ids)
        progress = Progress(len(raw_lines), sys.stderr, sys.stderr.isatty())
        for i, error in bad.items():
            writer.put(i, output_line(None, error))
            progress.update(False, 0.0)
        line_of = [i for i, s in enumerate(slots) if s >= 0]
        ledger = client.budget

        def on_result(index: int, result: Completion | PromptliftError) -> None:
            if isinstance(result, BudgetExceeded) and ledger is not None:
                ledger.close()  # stop sending: the rest can only be served from the cache
            line = line_of[index]
            writer.put(line, output_line(ids[line], result))
            ok = isinstance(result, Completion)
            progress.update(ok, result.cost_usd if ok and not result.cached else 0.0)  # type: ignore[union-attr]

        results = client.batch(requests, on_result=on_result)
        progress.close()
        snapshot = client.metrics_snapshot()
    print_summary(snapshot, len(raw_lines), len(bad), sys.stderr)
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as f:
            f.write(snapshot.to_json())
    failed = len(bad) + sum(not isinstance(r, Completion) for r in results)
    return 1 if failed else 0


def print_summary(snap: MetricsSnapshot, lines: int, bad: int, stream: IO[str]) -> None:
    t = snap.total
    stream.write(
        f"{lines} lines: {t.ok} ok, {t.failed + bad} failed ({bad} unreadable) | {t.cache_hits} from cache"
        f" | {t.attempts} requests sent, {t.retries} retries | {t.input_tokens} in / {t.output_tokens} out"
        f" tokens | ${t.cost_usd:.6f} new spend\n"
    )
    for name, s in sorted(snap.models.items()):
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"
        stream.write(
            f"  {name}: {s.calls} calls, {s.success_rate:.1%} ok, cache {s.cache_hit_rate:.1%},"
            f" p50 {s.latency_p50_s * 1000:.0f} ms p95 {s.latency_p95_s * 1000:.0f} ms"
            f" p99 {s.latency_p99_s * 1000:.0f} ms, ${s.cost_usd:.6f}, errors: {errors}\n"
        )
