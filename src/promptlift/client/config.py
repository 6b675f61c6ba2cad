"""Every knob of a client, typed and grouped; merged in one place (``ClientConfig.merged``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from promptlift.secrets import Secret


@dataclass(frozen=True)
class ClientConfig:
    """``models`` is the fallback chain, first choice first; empty means the embedded model."""

    models: tuple[str, ...] = ()
    api_base: str | None = None
    api_key: Secret | None = None
    timeout: float = 120.0  # seconds per attempt
    concurrency: int = 16  # calls in flight through this client, all callers together
    extra: dict[str, Any] = field(default_factory=dict)  # passed to litellm as is

    def merged(self, **overrides: Any) -> ClientConfig:
        """A copy with the non-None overrides applied (defaults → config file → flags)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
