"""The one interface every backend implements, and every client wrapper implements too."""

from __future__ import annotations

import abc

from promptlift.types import Completion, CompletionRequest


class Provider(abc.ABC):
    """Turns a ``CompletionRequest`` into a ``Completion`` or raises a ``promptlift.errors`` error.

    Contract: ``acomplete`` may be called concurrently from one event loop; it never raises an
    exception from a third-party library (the provider translates them); it sends exactly one
    request per call (retries belong to the client's retry wrapper).
    """

    name: str = "provider"

    @abc.abstractmethod
    async def acomplete(self, request: CompletionRequest) -> Completion:
        """Send one request and return its normalized completion."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections; the default holds none."""
