"""Provider health the user can see: per model and endpoint, how calls went lately.

Two sources, one shape (``EndpointHealth``):

- ``Client.health()``: this process's client — its metrics, each model's circuit breaker (closed,
  open with the seconds left, half-open) and its rate-limit headroom;
- ``from_call_log(rows)``: the flight recorder (``ClientConfig(call_log=...)``), which several
  processes may write, read by ``promptlift status CALL_LOG`` from any shell.

An endpoint is ``degraded`` when its breaker is not closed, or when at least a fifth of its recent
calls failed, or a fifth of its attempts (calls that retries then saved count too); the reason says
which.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from promptlift.client.metrics import percentile

DEGRADED_ERROR_RATE = 0.2


@dataclass(frozen=True)
class EndpointHealth:
    model: str
    endpoint: str  # the api_base, or "" for the provider's own
    calls: int
    failed: int
    errors: dict[str, int] = field(default_factory=dict)  # by error type
    # None from a call log when no call of the endpoint is known to have been sent or cached
    latency_p50_s: float | None = 0.0
    latency_p95_s: float | None = 0.0
    cache_hit_rate: float = 0.0
    retries: int = 0
    breaker: str = "unknown"  # closed, open, half_open; unknown from a call log (another process's)
    breaker_seconds_left: float = 0.0
    rate_limit_headroom: float | None = None  # the fullest bucket's share left, 0..1; None: no limit
    last_error: str = ""
    attempts: int = 0  # requests sent, retries included (from a call log: the calls' recorded attempts)
    attempt_errors: dict[str, int] = field(default_factory=dict)  # failed attempts, retried or not

    @property
    def error_rate(self) -> float:
        return self.failed / self.calls if self.calls else 0.0

    @property
    def degraded(self) -> str:
        """Why the endpoint is degraded, or "" when it is not."""
        if self.breaker == "open":
            return f"breaker open ({self.breaker_seconds_left:.0f} s to its probe)"
        if self.breaker == "half_open":
            return "breaker half-open (a probe is out)"
        if self.calls and self.error_rate >= DEGRADED_ERROR_RATE:
            top = max(self.errors.items(), key=lambda kv: kv[1])[0] if self.errors else "errors"
            return f"{self.error_rate:.0%} of {self.calls} calls failed (mostly {top})"
        failed_attempts = sum(self.attempt_errors.values())
        if self.attempts and failed_attempts / self.attempts >= DEGRADED_ERROR_RATE:
            top = max(self.attempt_errors.items(), key=lambda kv: kv[1])[0]
            share = failed_attempts / self.attempts
            return f"{share:.0%} of {self.attempts} attempts failed (mostly {top}), retried"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate, "degraded": self.degraded}


def from_call_log(rows: Iterable[Mapping[str, Any]], *, since_s: float | None = None) -> list[EndpointHealth]:
    """Health per (model, endpoint) from call-log rows (``CallLog.rows``), the last ``since_s``
    seconds only when given."""
    cutoff = time.time() - since_s if since_s is not None else None
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        if cutoff is not None and float(row["started"]) < cutoff:
            continue
        groups.setdefault((str(row["model"]), str(row.get("api_base") or "")), []).append(row)
    out = []
    for (model, endpoint), calls in sorted(groups.items()):
        failed = [c for c in calls if not c["ok"]]
        # A failed call's latency counts too (how long it took to fail, retries included), as in
        # Client.health(); not a call that was never sent (attempts 0: refused before any request,
        # or a log written before failed calls' attempts were recorded), whose latency says nothing.
        latencies = sorted(float(c["latency_s"]) for c in calls if c["ok"] or int(c["attempts"] or 0) > 0)
        last = max(failed, key=lambda c: float(c["started"]), default=None)
        out.append(
            EndpointHealth(
                model=model,
                endpoint=endpoint,
                calls=len(calls),
                failed=len(failed),
                errors=dict(Counter(str(c["error_type"]) for c in failed)),
                latency_p50_s=percentile(latencies, 50) if latencies else None,
                latency_p95_s=percentile(latencies, 95) if latencies else None,
                cache_hit_rate=sum(1 for c in calls if c["cached"]) / len(calls),
                retries=sum(max(0, int(c["attempts"] or 0) - 1) for c in calls),
                attempts=sum(int(c["attempts"] or 0) for c in calls),
                last_error=f"{last['error_type']}: {last['error_message']}" if last is not None else "",
            )
        )
    return out


def since(before: Iterable[EndpointHealth], now: Iterable[EndpointHealth]) -> list[EndpointHealth]:
    """``now``'s health over the calls made since ``before`` (both from ``Client.health()``): calls,
    failures and errors counted in between; breaker, latency and headroom as they are now. An
    endpoint with no call in between keeps its breaker state, so an open breaker still shows."""
    earlier = {(h.model, h.endpoint): h for h in before}
    out = []
    for h in now:
        b = earlier.get((h.model, h.endpoint))
        if b is None:
            out.append(h)
            continue
        out.append(
            replace(
                h,
                calls=h.calls - b.calls,
                failed=h.failed - b.failed,
                errors=_minus(h.errors, b.errors),
                retries=h.retries - b.retries,
                attempts=h.attempts - b.attempts,
                attempt_errors=_minus(h.attempt_errors, b.attempt_errors),
            )
        )
    return out


def _minus(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}


def _ms(seconds: float | None) -> str:
    """A latency in ms, or "-" when none is known (never a made-up 0)."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(health: list[EndpointHealth]) -> str:
    if not health:
        return "no calls recorded"
    lines = []
    for h in health:
        where = f" @ {h.endpoint}" if h.endpoint else ""
        headroom = "" if h.rate_limit_headroom is None else f" · rate limit {h.rate_limit_headroom:.0%} left"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(h.errors.items())) or "none"
        lines.append(
            f"{h.model}{where}: {h.calls} calls · {h.error_rate:.0%} failed ({errors}) · p50 "
            f"{_ms(h.latency_p50_s)} · p95 {_ms(h.latency_p95_s)} · cache "
            f"{h.cache_hit_rate:.0%} · {h.retries} retries · breaker {h.breaker}{headroom}"
        )
        if h.degraded:
            last = f"; last error {h.last_error}" if h.last_error else ""
            lines.append(f"  DEGRADED: {h.degraded}{last}")
    return "\n".join(lines)
