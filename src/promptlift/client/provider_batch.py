"""Work that can wait, at half price: many requests as one provider Batch API job per model.

    results = run_provider_batch(client, requests, store=FileJobStore("out.jsonl.batch-job.json"))

The lifecycle of one job (the wire is ``providers.batch``'s):

1. refuse up front what cannot work: a model whose provider has no Batch API (``ConfigError``,
   before anything is sent), an endpoint without one (one ``GET /batches``, before any upload);
2. reserve the whole job's worst case, at the batch rate, in every ledger that applies (the
   client's ``max_cost`` and the run's scope): a job that does not fit is refused whole
   (``BudgetExceeded`` for every line) before any upload;
3. build every line's body as a live call would send it, upload and create the job, and write its
   id to the ``JobStore`` at once — before the first poll — so a process killed at any later moment
   finds it again: a re-run with the same requests polls and collects that job, never pays twice;
4. poll with backoff (``PollPolicy``: a first interval growing by ``factor`` up to a ceiling)
   until the job ends or ``max_wait_s`` passes (then every line is a ``Timeout`` saying how to
   resume; the job id is kept);
5. read the results back in input order, each line a ``Completion`` or the typed error a live
   call would raise (``BatchExpired`` for a line the job never ran), and settle the reservation
   with the cost the reported usage gives at the batch rate; the job's record is then cleared.

A request the client's response cache answers is not sent, and every answer the job brings is
stored there (a later run, batch or live, is served from it). The job bypasses retries and
fallbacks (a line is sent once, by the provider); ``BatchSummary`` says
what was sent, spent and saved. Each line is recorded in the client's metrics and call log as
one call that took the job's time.
Thread-safety: one call runs its jobs on the client's event loop thread; stores are per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptlift import errors, pricing
from promptlift.client.budget import (
    BudgetedProvider,
    BudgetLedger,
    Reservation,
    _reserve_in,
    carry_scope,
    scoped_ledgers,
)
from promptlift.client.cache import CachingProvider
from promptlift.client.metrics import RecordingProvider
from promptlift.log import get_logger
from promptlift.types import Completion, CompletionRequest

log = get_logger("provider_batch")
Result = Completion | errors.PromptliftError


@dataclass(frozen=True)
class PollPolicy:
    """How a job is waited for: ``interval_s`` first, times ``factor`` after each poll up to
    ``max_interval_s``; ``max_wait_s`` None waits until the job ends (its window is 24 h)."""

    interval_s: float = 30.0
    max_interval_s: float = 300.0
    factor: float = 1.5
    max_wait_s: float | None = None

    def waits(self) -> Iterator[float]:
        wait = self.interval_s
        while True:
            yield wait
            wait = min(self.max_interval_s, wait * self.factor)


class JobStore(Protocol):
    """Where a submitted job's record lives until its results are collected (a file beside the
    output, a row of the run store). ``load`` gives None when there is none."""

    def load(self) -> dict[str, Any] | None: ...
    def save(self, record: dict[str, Any]) -> None: ...
    def clear(self) -> None: ...


class FileJobStore:
    """A job record as one JSON file, written atomically (a temporary file and a rename). It holds
    the job id, the endpoint, and a hash per line: never a key nor a prompt."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                found = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("%s is not a batch job record: ignored (a new job will be submitted)", self.path)
            return None
        return found if isinstance(found, dict) else None

    def save(self, record: dict[str, Any]) -> None:
        temporary = f"{self.path}.tmp{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class MemoryJobStore:
    """A job record kept in memory (no resume across processes): for tests and one-off calls."""

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.record

    def save(self, record: dict[str, Any]) -> None:
        self.record = dict(record)

    def clear(self) -> None:
        self.record = None


@dataclass
class BatchSummary:
    """What one ``run_provider_batch`` did: jobs created or resumed, lines answered and failed, the
    spend at the batch rate and what the same usage would have cost at the list price."""

    jobs_created: int = 0
    jobs_resumed: int = 0
    cached: int = 0  # answered from the response cache: not sent
    ok: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    list_cost_usd: float = 0.0
    job_ids: list[str] = field(default_factory=list)

    @property
    def saved_usd(self) -> float:
        return self.list_cost_usd - self.cost_usd


def check_batchable(requests: Sequence[CompletionRequest]) -> None:
    """``ConfigError`` for the first model whose provider has no Batch API (nothing is sent)."""
    from promptlift.providers.batch import route_of

    for model in dict.fromkeys(r.model for r in requests):
        route_of(model)


def line_hash(line: Mapping[str, Any]) -> str:
    """What identifies one line across runs: its body, without its custom_id."""
    body = {k: v for k, v in line.items() if k != "custom_id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def run_provider_batch(
    client: Any,
    requests: Sequence[CompletionRequest],
    *,
    store: JobStore | None = None,
    poll: PollPolicy | None = None,
    on_submitted: Callable[[str], None] | None = None,
    summary: BatchSummary | None = None,
) -> list[Result]:
    """Every request's answer or typed error, in input order (see the module docstring). Requests
    of several models go as one job per model, each remembered in ``store`` under its model."""
    check_batchable(requests)
    loop = client._loop()
    loop.check_caller()
    work = abatch(client, requests, store=store, poll=poll, on_submitted=on_submitted, summary=summary)
    results: list[Result] = loop.run(carry_scope(work))
    return results


async def abatch(
    client: Any,
    requests: Sequence[CompletionRequest],
    *,
    store: JobStore | None = None,
    poll: PollPolicy | None = None,
    on_submitted: Callable[[str], None] | None = None,
    summary: BatchSummary | None = None,
) -> list[Result]:
    check_batchable(requests)
    summary = summary if summary is not None else BatchSummary()
    by_model: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        by_model.setdefault(request.model, []).append(index)
    record = store.load() if store is not None else None
    jobs_record: dict[str, Any] = dict((record or {}).get("jobs") or {})
    out: list[Result | None] = [None] * len(requests)

    def saved(model: str, job: dict[str, Any] | None) -> None:
        if job is None:
            jobs_record.pop(model, None)
        else:
            jobs_record[model] = job
        if store is not None:
            if jobs_record:
                store.save({"jobs": jobs_record})
            else:
                store.clear()

    async def one(model: str, indexes: list[int]) -> None:
        job = _Job(client, model, [requests[i] for i in indexes], poll or PollPolicy(), summary)
        for index, result in zip(
            indexes, await job.run(jobs_record.get(model), saved, on_submitted), strict=True
        ):
            out[index] = result

    await asyncio.gather(*(one(model, indexes) for model, indexes in by_model.items()))
    return [r if r is not None else errors.NotSent("not sent") for r in out]


class _Job:
    """One model's requests as one batch job, from reservation to settled results."""

    def __init__(
        self,
        client: Any,
        model: str,
        requests: list[CompletionRequest],
        poll: PollPolicy,
        summary: BatchSummary,
    ):
        self.client = client
        self.model = model
        self.poll = poll
        self.summary = summary
        budget = client.parts.get("budget")
        self.budget = budget if isinstance(budget, BudgetedProvider) else None
        self._collected = False  # the job's results came back: its lines count as sent
        # capped: a request without max_tokens is sent with the budget's ceiling, as a live call is
        self.requests = [self.budget.capped(r) for r in requests] if self.budget else list(requests)
        self.book: pricing.PriceBook = (
            self.budget.pricing if self.budget else pricing.PriceBook(client.config.prices)
        )

    def _ledgers(self) -> list[BudgetLedger]:
        own = self.budget.ledger if self.budget is not None else None
        return [x for x in (own, *scoped_ledgers()) if x is not None]

    def _worst_cases(self) -> list[tuple[float, int]]:
        """Each request's worst case at the batch rate, (cost, tokens): what it reserves, and what a
        line answered without usage is charged (as a live call is, never $0)."""
        price = self.book.batch_price(self.model)
        if price is None and any(x.budget.max_cost_usd is not None for x in self._ledgers()):
            raise errors.ConfigError(
                f"a cost cap cannot hold for {self.model}: no price is known for it; give its price "
                "(USD per 1M tokens: --input-price/--output-price, or prices: in a config), or drop the cap"
            )
        out = []
        for request in self.requests:
            usage, _ = (
                self.budget.worst_case(request) if self.budget else (pricing.worst_case_usage(request), 0.0)
            )
            out.append((price.cost(usage) if price else 0.0, usage.total_tokens))
        return out

    async def run(
        self,
        record: dict[str, Any] | None,
        saved: Callable[[str, dict[str, Any] | None], None],
        on_submitted: Callable[[str], None] | None,
    ) -> list[Result]:
        from promptlift.providers.batch import batch_endpoint

        config = self.client.config
        provider = self.client.parts.get("provider")
        litellm = getattr(provider, "fallback", provider)  # Transports(native, litellm) or LiteLLMProvider
        endpoint = await batch_endpoint(
            self.model,
            credentials=_credentials_of(provider, config),
            chain=_chain_of(provider, config),
            prices=config.prices,
            allowed_hosts=config.allowed_hosts,
            litellm_body=getattr(litellm, "batch_body", None),
        )
        cache = self.client.parts.get("cache")
        cache = cache if isinstance(cache, CachingProvider) else None
        requests, started = list(self.requests), (time.time(), time.perf_counter())
        lines: list[dict[str, Any]] = []
        fixed: dict[int, Result] = {}  # answered without the job: from the cache, or unsendable
        for i, request in enumerate(self.requests):
            hit = cache.lookup(request) if cache is not None else None
            if hit is not None:
                fixed[i] = hit
                self.summary.cached += 1
                continue
            try:
                body = endpoint.line("", request)
            except errors.PromptliftError as exc:  # this line cannot be sent: its error, the rest go
                fixed[i] = exc
                continue
            lines.append({**body, "custom_id": f"{i}-{line_hash(body)[:12]}"})
        hashes = [line_hash(x) for x in lines]
        total = len(self.requests)
        self.requests = [r for i, r in enumerate(self.requests) if i not in fixed]
        results = await self._budgeted(endpoint, lines, hashes, record, saved, on_submitted) if lines else []
        for request, result in zip(self.requests, results, strict=True):
            key = cache.key(request) if cache is not None and isinstance(result, Completion) else None
            if key is not None and cache is not None and isinstance(result, Completion):
                cache.cache.put(key, result)  # a later run, batch or live, is served from it
        merged, sent = [], iter(results)
        for i in range(total):
            merged.append(fixed[i] if i in fixed else next(sent))
        self._record(requests, merged, started)
        ok = sum(isinstance(r, Completion) for r in merged)
        self.summary.ok += ok
        self.summary.failed += total - ok
        return merged

    async def _budgeted(
        self,
        endpoint: Any,
        lines: list[dict[str, Any]],
        hashes: list[str],
        record: dict[str, Any] | None,
        saved: Callable[[str, dict[str, Any] | None], None],
        on_submitted: Callable[[str], None] | None,
    ) -> list[Result]:
        worst = self._worst_cases()
        reservation = Reservation(
            cost_usd=sum(c for c, _ in worst), tokens=sum(t for _, t in worst), calls=len(self.requests)
        )
        try:
            held = _reserve_in(self._ledgers(), reservation)
        except errors.BudgetExceeded as exc:
            return [exc] * len(lines)
        spent: list[Result] = []
        self._collected = False
        try:
            spent = await self._submit_and_collect(endpoint, lines, hashes, record, saved, on_submitted)
            return spent
        finally:
            # Counted as sent only once the job's results came back: a probe or upload that failed,
            # or a wait that ran out (resumed later), sends nothing now.
            done = [(r, w) for r, w in zip(spent, worst, strict=False) if isinstance(r, Completion)]
            for ledger in held:
                ledger.release(
                    reservation,
                    cost_usd=sum(c.cost_usd if c.usage.reported else w[0] for c, w in done),
                    tokens=sum(c.usage.total_tokens if c.usage.reported else w[1] for c, w in done),
                    sent=self._collected,
                )

    async def _submit_and_collect(
        self,
        endpoint: Any,
        lines: list[dict[str, Any]],
        hashes: list[str],
        record: dict[str, Any] | None,
        saved: Callable[[str, dict[str, Any] | None], None],
        on_submitted: Callable[[str], None] | None,
    ) -> list[Result]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=max(60.0, self.client.config.timeout))
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            try:
                resumed = self._resumable(record, endpoint, hashes)
                if resumed is not None:
                    job_id, ids = resumed
                    self.summary.jobs_resumed += 1
                    log.info("resuming batch job %s for %s (%d lines)", job_id, self.model, len(lines))
                else:
                    if record:
                        log.warning(
                            "the batch job %s on record does not hold these requests: a new job is "
                            "submitted (that one goes on at the provider, and is billed there)",
                            record.get("id"),
                        )
                    await endpoint.probe(session)
                    job_id = await endpoint.submit(session, lines)
                    ids = [str(x["custom_id"]) for x in lines]
                    saved(
                        self.model,
                        {
                            "id": job_id,
                            "route": endpoint.route,
                            "api_base": endpoint.api_base,
                            "lines": [[c, h] for c, h in zip(ids, hashes, strict=True)],
                        },
                    )
                    self.summary.jobs_created += 1
                self.summary.job_ids.append(job_id)
                if on_submitted is not None:
                    on_submitted(job_id)
                status = await self._wait(session, endpoint, job_id)
                if status is None:
                    return [self._still_running(job_id)] * len(lines)
                found = await endpoint.results(session, status, dict(zip(ids, self.requests, strict=True)))
            except errors.ConfigError:
                raise
            except (errors.BadRequest, errors.ModelNotFound) as exc:
                # the job failed, or is gone: polling it again cannot help, so a re-run submits anew
                saved(self.model, None)
                return [exc] * len(lines)
            except errors.PromptliftError as exc:  # every line says so; the job stays on record
                return [exc] * len(lines)
        saved(self.model, None)
        results = [found[c] for c in ids]
        self._collected = True
        self._account(results)
        return results

    def _resumable(
        self, record: dict[str, Any] | None, endpoint: Any, hashes: list[str]
    ) -> tuple[str, list[str]] | None:
        """The saved job and the custom_id of each line, when it holds every line asked for."""
        if not record or record.get("api_base") != endpoint.api_base or record.get("route") != endpoint.route:
            return None
        free: dict[str, list[str]] = {}
        for custom_id, digest in record.get("lines") or ():
            free.setdefault(str(digest), []).append(str(custom_id))
        ids = []
        for digest in hashes:
            if not free.get(digest):
                return None
            ids.append(free[digest].pop(0))
        return str(record["id"]), ids

    async def _wait(self, session: Any, endpoint: Any, job_id: str) -> Any:
        """The job's final status, or None when ``max_wait_s`` passed first."""
        started = time.monotonic()
        for wait in self.poll.waits():
            try:
                status = await endpoint.status(session, job_id)
            except (
                errors.RateLimited,
                errors.ProviderUnavailable,
                errors.ConnectionFailed,
                errors.Timeout,
            ) as exc:
                log.warning("polling batch job %s: %s; polling again", job_id, exc)
            else:
                if status.ended:
                    return status
            if self.poll.max_wait_s is not None and time.monotonic() - started + wait > self.poll.max_wait_s:
                return None
            await asyncio.sleep(wait)
        return None  # pragma: no cover - waits() never ends

    def _still_running(self, job_id: str) -> errors.Timeout:
        return errors.Timeout(
            f"the batch job {job_id} had not ended after {self.poll.max_wait_s:g}s (--max-wait); it goes on "
            "at the provider: run the same command again to resume waiting for it (nothing is sent twice)",
            provider=self.model.split("/", 1)[0],
            model=self.model,
        )

    def _record(
        self, requests: list[CompletionRequest], results: list[Result], started: tuple[float, float]
    ) -> None:
        """Each line in the client's metrics and call log, as a call that took the job's time."""
        metrics = self.client.parts.get("metrics")
        if not isinstance(metrics, RecordingProvider):
            return
        latency = time.perf_counter() - started[1]
        for request, result in zip(requests, results, strict=True):
            done = result if isinstance(result, Completion) else None
            failed = result if isinstance(result, errors.PromptliftError) else None
            metrics._record(request, started[0], latency, done, failed)

    def _account(self, results: list[Result]) -> None:
        for result in results:
            if isinstance(result, Completion):
                self.summary.cost_usd += result.cost_usd
                listed = self.book.price(self.model)
                self.summary.list_cost_usd += listed.cost(result.usage) if listed else result.cost_usd


def _credentials_of(provider: Any, config: Any) -> Any:
    found = getattr(provider, "credentials", None) or getattr(
        getattr(provider, "fallback", None), "credentials", None
    )
    if found is not None:
        return found
    from promptlift.providers.credentials import Credentials

    return Credentials(config.api_key, source=config.credential_provider)


def _chain_of(provider: Any, config: Any) -> Any:
    found = getattr(provider, "chain", None) or getattr(getattr(provider, "fallback", None), "chain", None)
    if found is not None:
        return found
    from promptlift.providers.endpoints import Chain

    return Chain(config.models, config.api_base)
