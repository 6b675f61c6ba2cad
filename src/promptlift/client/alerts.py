"""Suspicious activity, flagged rather than only logged: one warning each, in the log and in a
run's summary.

- a burst of authentication failures on one model (``AUTH_BURST`` within ``AUTH_WINDOW_S``): a key
  revoked, rotated or leaked mid-run;
- a request refused for a host that is not in ``allowed_hosts`` (``HostNotAllowed``): a prompt or a
  key was about to go somewhere it was not meant to;
- spend running faster than the plan said (``pace``, checked by a run against its plan): a model
  that answers at length, a dearer fallback serving the calls, prices that changed.

Thread-safe: calls end on the client's loop thread and on callers' threads alike.
"""

from __future__ import annotations

import threading
from collections import deque

from promptlift.errors import HostNotAllowed, PromptliftError
from promptlift.log import get_logger

log = get_logger("alerts")

AUTH_BURST = 3
AUTH_WINDOW_S = 60.0
# Spend is flagged once it runs at PACE_FACTOR times the plan's high estimate per call, judged after
# PACE_MIN_CALLS calls or PACE_MIN_SHARE of the planned calls, whichever is more (a few long first
# answers are not a trend).
PACE_FACTOR = 2.0
PACE_MIN_CALLS = 20
PACE_MIN_SHARE = 0.1


def pace(calls: int, cost_usd: float, planned_calls: int, planned_cost_usd: float) -> str | None:
    """Why spend runs faster than planned (``calls`` made for ``cost_usd`` so far, against a plan of
    ``planned_calls`` for at most ``planned_cost_usd``), or None while it does not."""
    if planned_calls <= 0 or planned_cost_usd <= 0:
        return None
    if calls < max(PACE_MIN_CALLS, PACE_MIN_SHARE * planned_calls):
        return None
    expected = planned_cost_usd / planned_calls * calls
    if cost_usd <= PACE_FACTOR * expected:
        return None
    return (
        f"spend runs {cost_usd / expected:.1f}x faster than planned: ${cost_usd:.4f} for {calls} calls, "
        f"where the plan's high estimate was ${expected:.4f} (${planned_cost_usd:.4f} for "
        f"{planned_calls}); longer answers, a dearer model serving the calls, or changed prices? "
        f"budget.max_cost_usd caps it"
    )


class Alerts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._auth: dict[str, deque[float]] = {}
        self._raised: dict[str, str] = {}  # key -> message, in the order raised

    def observe(self, model: str, started: float, error: PromptliftError | None) -> None:
        """See one finished call (``started``: its wall-clock start) and the error it ended with."""
        if error is None:
            return
        if type(error).__name__ == "AuthenticationFailed":
            with self._lock:
                times = self._auth.setdefault(model, deque())
                times.append(started)
                while times and times[0] < started - AUTH_WINDOW_S:
                    times.popleft()
                burst = len(times)
            if burst >= AUTH_BURST:
                self.flag(
                    f"auth:{model}",
                    f"{burst} authentication failures on {model} within {AUTH_WINDOW_S:.0f} s: a key "
                    f"revoked, rotated or leaked? check it before the run goes on",
                )
        elif isinstance(error, HostNotAllowed):
            self.flag(
                f"host:{error.host}",
                f"a request for the host {error.host!r} was refused: it is not in allowed_hosts (a prompt "
                f"or a key was about to go there)",
            )

    def flag(self, key: str, message: str) -> None:
        """Raise one alert (a WARNING and an entry in ``messages``), once per ``key``."""
        with self._lock:
            if key in self._raised:
                return
            self._raised[key] = message
        log.warning("suspicious: %s", message)

    def messages(self) -> list[str]:
        """Every alert raised so far, in order."""
        with self._lock:
            return list(self._raised.values())
