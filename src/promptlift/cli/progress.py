"""The terminal side of a run: a one-line progress bar on stderr and the final summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from promptlift.client.health import EndpointHealth, since
from promptlift.optimize.result import OptimizationResult, calls_split
from promptlift.optimize.run import Budget
from promptlift.optimize.stats import score_interval


class Progress:
    """A run's progress on stderr: on a terminal, one status line redrawn at each candidate;
    elsewhere (CI logs, ``nohup``, a pipe), one line per finished round, so a log shows progress
    without control characters. ``enabled=False`` prints nothing."""

    def __init__(self, budget: Budget, *, enabled: bool, terminal: bool = True):
        self.budget = budget
        self.enabled = enabled
        self.terminal = terminal
        self.started = time.monotonic()
        self.candidates = 0
        self._last: tuple[int, str, list[EndpointHealth]] | None = None  # not yet written (log mode)
        self._health: list[EndpointHealth] = []  # at the last line shown: what the next is measured from

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind != "candidate" or not self.enabled:
            return
        self.candidates += 1
        p = data["progress"]
        if not self.terminal and self._last is not None and self._last[0] != p.rounds:
            self._write(self._last)  # a round ended: its last state, once (the next is measured from it)
            self._last = None
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.budget.max_calls and p.calls:
            eta = f" · ETA {max(0.0, elapsed / p.calls * (self.budget.max_calls - p.calls)):.0f}s"
        best = data.get("best")
        band = _ci(best.evaluation.scores) if best is not None else ""
        health = list(data.get("health", ()))
        line = (
            f"round {p.rounds} · {self.candidates} candidates · best {p.best_score:.3f}{band} · "
            f"{p.calls} calls · ${p.cost_usd:.4f} · {elapsed:.0f}s{eta}{self._degraded(health)}"
        )
        if self.terminal:
            self._health = health
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
            return
        self._last = (p.rounds, line, health)

    def _degraded(self, health: list[EndpointHealth]) -> str:
        """What is degraded over the calls since the last line shown (a breaker open, a fifth of the
        calls failing), or "" when all is well."""
        recent = since(self._health, health)
        bad = [
            f"{h.model}{' @ ' + h.endpoint if h.endpoint else ''}: {h.degraded}" for h in recent if h.degraded
        ]
        return f" · DEGRADED {'; '.join(bad)}" if bad else ""

    def _write(self, last: tuple[int, str, list[EndpointHealth]]) -> None:
        _, line, self._health = last
        sys.stderr.write(f"promptlift: {line}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled or not self.candidates:
            return
        if self.terminal:
            sys.stderr.write("\n")
        elif self._last is not None:
            self._write(self._last)
            self._last = None


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _ci(scores: Sequence[float]) -> str:
    iv = score_interval(scores)
    return "" if iv.method == "none" else f" [{iv.low:.3f}, {iv.high:.3f}]"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def print_summary(result: OptimizationResult) -> None:
    print(
        f"run {result.run_id or '-'} · {result.optimizer} on {result.task_model} · "
        f"stopped: {result.stop_reason}"
    )
    initial, best = result.initial.evaluation, result.best.evaluation
    print(
        f"validation  {initial.mean:.3f}{_ci(initial.scores)} -> {best.mean:.3f}{_ci(best.scores)}"
        f"  ({len(best.rows)} rows)"
    )
    before, after = result.initial_test, result.best_test
    print(
        f"test        {before.mean:.3f}{_ci(before.scores)} -> {after.mean:.3f}{_ci(after.scores)}"
        f"  ({len(after.rows)} rows)"
    )
    gain = result.test_gain()
    ci = "" if gain.ci.method == "none" else f" [{gain.ci.low:+.3f}, {gain.ci.high:+.3f}]"
    print(f"test gain   {gain.gain:+.3f}{ci} · {_p(gain.p_value)} ({gain.method}) · {gain.verdict}")
    print("            (95% intervals; the gain is paired: both prompts on the same test rows)")
    spend = result.spend
    print(
        f"calls {spend.work_calls} ({calls_split(spend.work_calls, spend.cached_calls)}; task "
        f"{result.task_spend.work_calls}, reasoning {result.reasoning_spend.work_calls}) · "
        f"tokens {spend.tokens} · cost ${spend.cost_usd:.4f} · {result.duration_s:.1f} s · "
        f"{len(result.history)} candidates"
    )
    for alert in result.alerts:
        print(f"suspicious: {alert}")
    if spend.cached_input_tokens or spend.cache_saved_usd:
        print(
            f"prompt cache: {spend.cached_input_tokens} input tokens read from the provider's cache · "
            f"saved ${spend.cache_saved_usd:.4f} (${spend.cost_usd + spend.cache_saved_usd:.4f} at the "
            f"full input price)"
        )
    if spend.batch_saved_usd:
        print(
            f"provider batch: saved ${spend.batch_saved_usd:.4f} on the test scoring "
            f"(${spend.cost_usd + spend.batch_saved_usd:.4f} at the list price)"
        )
    print("initial prompt:")
    print(_indent(result.initial.prompt.describe()))
    print("best prompt:")
    print(_indent(result.best.prompt.describe()))
