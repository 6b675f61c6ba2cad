"""How long a server asked us to wait, from the headers of its 429 or 503.

Pure functions of the headers (no LiteLLM), so every form is tested without a server; the provider
reads the headers off LiteLLM's exception and puts the answer on our error as ``retry_after``.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_duration", "parse_retry_after", "retry_after_from_headers"]

# A LiteLLM proxy forwards the upstream provider's headers under this prefix, and its own rate
# limiter's 429 carries only ``llm_provider-retry-after`` (FACTS.md): no plain Retry-After at all.
_FORWARDED = "llm_provider-"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def retry_after_from_headers(headers: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds a server asked us to wait, from every header gateways send for it.

    Per hop (the server itself, and the provider behind a LiteLLM proxy, ``llm_provider-*``):
    ``retry-after-ms`` (OpenAI's, the precise one), else ``Retry-After`` (seconds or an HTTP-date).
    When both hops ask, the longer wait wins: retrying sooner would meet the other limit. Without
    any of them, OpenAI-style ``x-ratelimit-reset-requests`` / ``-tokens`` count, but only for a
    limit whose ``x-ratelimit-remaining-*`` says it is used up: the reset of a limit that still
    has room says nothing about this 429. None: no header says.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    waits = [w for prefix in ("", _FORWARDED) if (w := _hop_retry_after(lower, prefix, now)) is not None]
    if waits:
        return max(waits)
    resets = [
        w
        for prefix in ("", _FORWARDED)
        for limit in ("requests", "tokens")
        if lower.get(f"{prefix}x-ratelimit-remaining-{limit}", "").strip() == "0"
        and (w := parse_duration(lower.get(f"{prefix}x-ratelimit-reset-{limit}", ""))) is not None
    ]
    return max(resets) if resets else None


def _hop_retry_after(headers: Mapping[str, str], prefix: str, now: float | None) -> float | None:
    millis = headers.get(prefix + "retry-after-ms", "").strip()
    try:
        return max(0.0, float(millis) / 1000)
    except ValueError:  # absent, or not a number: the seconds header may still say
        pass
    value = headers.get(prefix + "retry-after")
    return parse_retry_after(value, now) if value else None


def parse_duration(value: str) -> float | None:
    """OpenAI's reset durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain seconds."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * scale[u] for n, u in parts)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (never negative)."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
