"""``promptlift batch``: a JSONL file of prompts in, a JSONL file of answers out, in input order.

Each input line is ``{"id": ..., "messages": [...]}`` or ``{"id": ..., "prompt": "..."}``, with
optional per-line ``model``, ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed`` and
``response_format``, each checked before anything is sent (``cli.batch_lines``). Each output line
carries the input's ``id`` (as given), its ``line`` number and ``request_hash``, and either the
answer (``ok: true``, content, model, usage, cost_usd, latency_s, attempts, cached) or ``ok: false``
with ``error: {type, message}``: one line out per non-blank line in, always, whatever the others do.

Output lines are written (and flushed) as soon as every line before them is done, so a killed
run leaves a clean prefix. A re-run resumes from the output file itself (``cli.batch_output``): a
line answered there for the same request is kept and not sent again, even with ``--no-cache``;
the others (failed, unanswered, changed) are sent. Identical sampled lines are separate samples.
With ``--max-cost``, the first call that would cross the budget closes it: nothing more is sent,
and every line not yet answered (nor in the cache) is recorded as a ``BudgetExceeded`` error; a
model whose price is unknown is refused before any line.

With ``--provider-batch`` the lines to send go as one provider Batch API job per model (OpenAI,
Anthropic; half price, answered within 24 h; ``client.provider_batch``): the same output, in
order, one line out per line in, each failed line with the typed error a live call would give;
a line the cache answers is not sent, and the job's answers are stored in the cache.
``--max-cost`` then holds for the whole job: its worst case at the batch rate is reserved before
anything is uploaded, and a job that does not fit is not submitted (each of its lines is a
``BudgetExceeded`` error). The job id is written to ``OUT.jsonl.batch-job.json`` (beside the output)
before the first poll: a re-run of the same command after a kill polls and collects that job
instead of submitting another; the file is removed once the answers are written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from promptlift.cli.endpoints import add_allow_host, add_chain_flags, allowed_hosts, chain_from_flags
from promptlift.errors import ConfigError, DatasetError, PromptliftError

if TYPE_CHECKING:
    from promptlift.client import Client, ClientConfig
    from promptlift.client.metrics import MetricsSnapshot
    from promptlift.types import Completion, CompletionRequest


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", help="answer every prompt of a JSONL file, concurrently, within limits")
    p.add_argument("--input", required=True, metavar="IN.jsonl")
    p.add_argument("--output", required=True, metavar="OUT.jsonl")
    add_chain_flags(p)
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    p.add_argument("--rpm", type=float, help="requests per minute, every model together")
    p.add_argument("--tpm", type=float, help="tokens per minute, every model together")
    p.add_argument(
        "--shared-limits",
        metavar="REDIS_URL",
        help="keep --rpm/--tpm/--max-cost in this Redis, shared by every process using it (redis://host:6379/0)",
    )
    p.add_argument(
        "--local-limits-if-unreachable",
        action="store_true",
        help="if that Redis is down, go on with local limits (default: send nothing, fail)",
    )
    p.add_argument("--max-cost", type=float, metavar="USD", help="stop sending before spend would cross this")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        metavar="PATH",
        help="cache file or redis:// URL (default: $PROMPTLIFT_CACHE or ~/.cache/...)",
    )
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--max-retries", type=int, help="retries per call after the first attempt")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt")
    p.add_argument("--temperature", type=float, help="for lines that do not set one")
    p.add_argument("--max-tokens", type=int, help="for lines that do not set one")
    p.add_argument(
        "--input-price",
        type=float,
        metavar="USD_PER_MTOK",
        help="price of a model not in the map (cache reads and writes are charged at it too)",
    )
    p.add_argument(
        "--output-price",
        type=float,
        metavar="USD_PER_MTOK",
        help="price of a model not in the map (reasoning tokens are charged at it too)",
    )
    p.add_argument("--metrics-json", metavar="PATH", help="also write the final metrics as JSON")
    p.add_argument(
        "--provider-batch",
        action="store_true",
        help="send the lines as a provider Batch API job (openai/, anthropic/: half price, within 24 h)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="with --provider-batch: seconds to the first poll, then 1.5x per poll up to 10x (default 30)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        metavar="S",
        help="with --provider-batch: stop waiting after S seconds (the job goes on; a re-run resumes it)",
    )

    add_allow_host(p)
    from promptlift.cli.breaker import add_breaker_flags

    add_breaker_flags(p)
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> ClientConfig:
    from promptlift.client import ClientConfig
    from promptlift.client.cache import default_cache_path
    from promptlift.client.config import Budget, CacheConfig, ModelPrice, RateLimit

    models, api_base = chain_from_flags(args)
    changes: dict[str, Any] = {}
    shared = {
        "shared": args.shared_limits,
        "on_unreachable": "local" if args.local_limits_if_unreachable else "fail",
    }
    if args.shared_limits and args.rpm is None and args.tpm is None and args.max_cost is None:
        raise ConfigError("--shared-limits keeps --rpm, --tpm and --max-cost in Redis: give one of them too")
    if args.rpm is not None or args.tpm is not None:
        changes["rate_limits"] = (RateLimit("*", args.rpm, args.tpm, **shared),)
    if args.max_cost is not None:
        changes["budget"] = Budget(max_cost_usd=args.max_cost, **shared)
    if not args.no_cache:
        changes["cache"] = CacheConfig(path=args.cache or default_cache_path(), sampled=True)
    if args.input_price is not None or args.output_price is not None:
        price = ModelPrice(args.input_price or 0.0, args.output_price or 0.0)
        changes["prices"] = {m: price for m in models}
    if args.max_retries is not None:
        from promptlift.client.retry import RetryPolicy

        changes["retry"] = RetryPolicy.with_max_retries(args.max_retries)

    changes["allowed_hosts"] = allowed_hosts(args)
    from promptlift.cli.breaker import fallback_policy

    changes["fallback"] = fallback_policy(args)
    return ClientConfig(
        models=models, api_base=api_base, timeout=args.timeout, concurrency=args.concurrency, **changes
    )


# (flag, smallest allowed, whether the smallest is allowed itself, what it means)
_NUMERIC_FLAGS = (
    ("concurrency", 1, True, "calls in flight"),
    ("rpm", 0, False, "requests per minute"),
    ("tpm", 0, False, "tokens per minute"),
    ("max_cost", 0, True, "USD"),
    ("max_retries", 0, True, "retries"),
    ("timeout", 0, False, "seconds"),
    ("temperature", 0, True, "temperature"),
    ("max_tokens", 1, True, "tokens"),
    ("input_price", 0, True, "USD per 1M tokens"),
    ("output_price", 0, True, "USD per 1M tokens"),
    ("poll_interval", 0, False, "seconds"),
    ("max_wait", 0, False, "seconds"),
)


def check_flags(args: argparse.Namespace) -> None:
    """``ConfigError`` naming the first flag whose value means nothing (0 calls in flight, -5 rpm)."""
    for name, low, inclusive, unit in _NUMERIC_FLAGS:
        value = getattr(args, name)
        if value is None:
            continue
        fits = value >= low if inclusive else value > low
        if not math.isfinite(value) or not fits:
            bound = f"at least {low}" if inclusive else f"more than {low}"
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be {bound} ({unit}), got {value:g}")


def check_paths(args: argparse.Namespace) -> tuple[str, str]:
    """The input file and the real path of the output file; ``ConfigError`` when either cannot be
    used, before anything is read or written. The output is resolved through symlinks, so that the
    final rename replaces the file the link points to, not the link."""
    source = args.input
    if not os.path.exists(source):
        raise ConfigError(f"--input {source}: no such file")
    if os.path.isdir(source):
        raise ConfigError(f"--input {source} is a folder; give the JSONL file of prompts")
    target = os.path.realpath(args.output)
    if os.path.isdir(target):
        example = os.path.join(args.output, "out.jsonl")
        raise ConfigError(f"--output {args.output} is a folder; give a file path, such as {example}")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ConfigError(f"--output {args.output}: the folder {folder} does not exist; create it first")
    if os.path.exists(target) and os.path.samefile(source, target):
        raise ConfigError(f"--output {args.output} is the input file itself; write the answers elsewhere")
    return source, target


def read_input(path: str) -> list[tuple[int, str | DatasetError]]:
    """``(line number, text)`` of each non-blank line (1-based, blank lines counted); a line that is not
    UTF-8 is a ``DatasetError`` in its place, so it is reported and the rest still run."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"--input {path}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as some editors on Windows write
        data = data[3:]
    lines: list[tuple[int, str | DatasetError]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            lines.append((number, raw.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as exc:
            where = f"byte {raw[exc.start]:#04x} at column {exc.start + 1}"
            lines.append((number, DatasetError(f"not UTF-8 text ({where})")))
    return lines


@dataclass
class Item:
    """One input line: its number, its id as given, and its request or why it has none."""

    number: int
    id: Any
    request: CompletionRequest | None = None
    error: DatasetError | None = None
    request_hash: str = ""


def prepare(client: Client, number: int, text: str | DatasetError, args: argparse.Namespace) -> Item:
    from promptlift.cli.batch_lines import parse_line

    if isinstance(text, DatasetError):
        return Item(number, None, error=DatasetError(f"line {number}: {text}"))
    line_id, parsed = parse_line(text)
    if isinstance(parsed, DatasetError):
        return Item(number, line_id, error=DatasetError(f"line {number}: {parsed}"))
    params = dict(parsed.params)
    if args.temperature is not None:
        params.setdefault("temperature", args.temperature)
    if args.max_tokens is not None:
        params.setdefault("max_tokens", args.max_tokens)
    return Item(number, line_id, request=client.request(parsed.messages, **params))


def number_samples(client: Client, items: Sequence[Item]) -> None:
    """Give the n-th of identical sampled lines sample index n, so each is its own sample (and its own
    cache entry: a re-run serves each line the answer it had, not one answer to all of them). Then
    hash each request as it will be sent, for the output's ``request_hash``."""
    from promptlift.client.cache import cache_key, canonical_request

    config = client.config
    seen: dict[str, int] = {}
    for item in items:
        if item.request is None:
            continue
        if item.request.is_sampled:
            shape = canonical_request(item.request)
            item.request = item.request.replace(sample=seen.get(shape, 0))
            seen[shape] = item.request.sample + 1
        item.request_hash = cache_key(item.request, api_base=config.api_base, extra=config.extra)[:16]


def check_prices(client: Client, items: Sequence[Item]) -> None:
    """With ``--max-cost``, refuse before any line a model whose price is unknown: its calls would
    count as $0 and the cap would never bind (the budget would refuse every line one by one)."""
    from promptlift.client.budget import BudgetedProvider

    budget = client.parts.get("budget")
    if client.config.budget is None or not isinstance(budget, BudgetedProvider):
        return
    models = dict.fromkeys([*budget.chain, *(i.request.model for i in items if i.request is not None)])
    unpriced = [m for m in models if budget.pricing.price(m) is None]
    if unpriced:
        raise ConfigError(
            f"--max-cost cannot hold for {', '.join(unpriced)}: no price is known for it; give its price"
            " with --input-price and --output-price (USD per 1M tokens; 0 for a free server), or drop"
            " --max-cost"
        )


def output_line(item: Item, result: Completion | PromptliftError) -> dict[str, Any]:
    from promptlift.secrets import redact
    from promptlift.types import Completion

    head: dict[str, Any] = {"id": item.id, "line": item.number}
    if item.request_hash:
        head["request_hash"] = item.request_hash
    if isinstance(result, Completion):
        return {
            **head,
            "ok": True,
            "content": result.content,
            "model": result.model,
            "usage": result.usage.to_dict(),
            "cost_usd": result.cost_usd,
            "latency_s": round(result.latency_s, 6),
            "attempts": result.attempts,
            "cached": result.cached,
        }
    return {**head, "ok": False, "error": {"type": type(result).__name__, "message": redact(str(result))}}


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
    from promptlift.cli.batch_output import OrderedWriter, open_for_run, read_earlier, rewrite, same_id
    from promptlift.client import Client

    check_flags(args)
    if args.max_wait is not None and not args.provider_batch:
        raise ConfigError(
            "--max-wait is how long --provider-batch waits for its job: give --provider-batch too"
        )
    source, target = check_paths(args)
    lines = read_input(source)
    earlier = read_earlier(target)
    with Client(build_config(args)) as client:
        client.preflight()  # the chain's models: a typo or a missing key before any line is sent
        items = [prepare(client, number, text, args) for number, text in lines]
        number_samples(client, items)
        check_prices(client, items)
        kept = {
            item.number: earlier.answered[item.number]
            for item in items
            if item.number in earlier.answered
            and earlier.answered[item.number].get("request_hash") == item.request_hash
            and same_id(earlier.answered[item.number].get("id"), item.id)
            and item.request is not None
        }
        todo = [item for item in items if item.number not in kept]
        batch_summary = None
        if args.provider_batch:
            check_provider_batch(args, todo)
        with open_for_run(target, earlier) as out:
            writer = OrderedWriter(out, [i.number for i in todo])
            if args.provider_batch:
                results, batch_summary = answer_in_provider_batch(
                    client, todo, writer, len(kept), args, target
                )
            else:
                results = answer(client, todo, writer, len(kept))
            snapshot = client.metrics_snapshot()
    if earlier.has_content:  # resumed: the file holds earlier lines, then these; put them in order
        rewrite(target, [kept.get(i.number) or results[i.number] for i in items])
    bad = sum(item.error is not None for item in items)
    failed = sum(not r["ok"] for r in results.values())
    if batch_summary is not None:
        print_batch_summary(batch_summary, len(items), bad, len(kept), sys.stderr)
    else:
        print_summary(snapshot, len(items), bad, len(kept), sys.stderr)
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as f:
            f.write(snapshot.to_json())
    return 1 if failed else 0


def answer(client: Client, todo: Sequence[Item], writer: Any, done: int) -> dict[int, dict[str, Any]]:
    """Sends the lines of ``todo`` that have a request, writes every one of them; their records by
    line number. ``done`` lines were answered before (kept from the output file)."""
    from promptlift.errors import BudgetExceeded
    from promptlift.types import Completion

    records: dict[int, dict[str, Any]] = {}
    progress = Progress(len(todo) + done, sys.stderr, sys.stderr.isatty())
    progress.done = done

    def record(item: Item, result: Completion | PromptliftError) -> None:
        records[item.number] = line = output_line(item, result)
        writer.put(item.number, line)
        ok = isinstance(result, Completion)
        progress.update(ok, result.cost_usd if isinstance(result, Completion) and not result.cached else 0.0)

    for item in todo:
        if item.error is not None:
            record(item, item.error)
    sent = [item for item in todo if item.request is not None]
    ledger = client.budget

    def on_result(index: int, result: Completion | PromptliftError) -> None:
        if isinstance(result, BudgetExceeded) and ledger is not None:
            ledger.close()  # stop sending: the rest can only be served from the cache
        record(sent[index], result)

    client.batch([item.request for item in sent if item.request is not None], on_result=on_result)
    progress.close()
    return records


def check_provider_batch(args: argparse.Namespace, todo: Sequence[Item]) -> None:
    """``ConfigError`` before anything is sent when ``--provider-batch`` cannot hold as asked."""
    from promptlift.client.provider_batch import check_batchable

    for flag, given in (("--shared-limits", args.shared_limits), ("--rpm", args.rpm), ("--tpm", args.tpm)):
        if given is not None:
            raise ConfigError(
                f"--provider-batch sends one job per model, not calls: {flag} does not apply to it; drop one"
                " of them"
            )
    check_batchable([item.request for item in todo if item.request is not None])


def answer_in_provider_batch(
    client: Client, todo: Sequence[Item], writer: Any, done: int, args: argparse.Namespace, target: str
) -> tuple[dict[int, dict[str, Any]], Any]:
    """``answer``, as provider Batch API jobs: every line of ``todo`` written, in order."""
    from promptlift.client.provider_batch import BatchSummary, FileJobStore, PollPolicy, run_provider_batch
    from promptlift.types import Completion

    records: dict[int, dict[str, Any]] = {}
    progress = Progress(len(todo) + done, sys.stderr, sys.stderr.isatty())
    progress.done = done

    def record(item: Item, result: Completion | PromptliftError) -> None:
        records[item.number] = line = output_line(item, result)
        writer.put(item.number, line)
        progress.update(
            isinstance(result, Completion), result.cost_usd if isinstance(result, Completion) else 0.0
        )

    for item in todo:
        if item.error is not None:
            record(item, item.error)
    sent = [item for item in todo if item.request is not None]
    summary = BatchSummary()
    if sent:
        policy = PollPolicy(args.poll_interval, args.poll_interval * 10, max_wait_s=args.max_wait)
        store = FileJobStore(target + ".batch-job.json")

        def submitted(job_id: str) -> None:
            sys.stderr.write(f"batch job {job_id}: waiting for it (its id is in {store.path})\n")

        requests = [item.request for item in sent if item.request is not None]
        results = run_provider_batch(
            client, requests, store=store, poll=policy, on_submitted=submitted, summary=summary
        )
        for item, result in zip(sent, results, strict=True):
            record(item, result)
    progress.close()
    return records, summary


def print_batch_summary(summary: Any, lines: int, bad: int, kept: int, stream: IO[str]) -> None:
    earlier = f", {kept} kept from the output file" if kept else ""
    jobs = ", ".join(summary.job_ids) or "none"
    stream.write(
        f"{lines} lines: {summary.ok + kept} ok{earlier}, {summary.failed + bad} failed ({bad} unreadable)"
        f" | {summary.cached} from cache | batch jobs: {jobs} ({summary.jobs_created} created,"
        f" {summary.jobs_resumed} resumed)"
        f" | ${summary.cost_usd:.6f} at the batch rate, ${summary.saved_usd:.6f} saved on the list price\n"
    )


def print_summary(snap: MetricsSnapshot, lines: int, bad: int, kept: int, stream: IO[str]) -> None:
    t = snap.total
    earlier = f", {kept} kept from the output file" if kept else ""
    stream.write(
        f"{lines} lines: {t.ok + kept} ok{earlier}, {t.failed + bad} failed ({bad} unreadable)"
        f" | {t.cache_hits} from cache"
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
