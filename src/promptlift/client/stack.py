"""Where the client's wrappers are put together, in one place, in one order.

provider (LiteLLM, or the one given) ← innermost
"""

from __future__ import annotations

from promptlift.client.config import ClientConfig
from promptlift.providers.base import Provider


def build_stack(config: ClientConfig, provider: Provider | None) -> tuple[Provider, dict[str, Provider]]:
    """Return the outermost provider and the named parts (for metrics, stats and tests)."""
    if provider is None:
        from promptlift.providers.litellm import LiteLLMProvider

        provider = LiteLLMProvider(api_key=config.api_key, api_base=config.api_base, extra=config.extra)
    parts: dict[str, Provider] = {"provider": provider}
    return provider, parts
