"""Shared fixtures. Append new fixtures below; do not rewrite others'."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promptlift.testing.server import LoopbackServer


# -- issue 3: the loopback model server ------------------------------------------------------------
@pytest.fixture(scope="session")
def _loopback_session() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(_loopback_session: LoopbackServer) -> Iterator[LoopbackServer]:
    """One real HTTP server for the session, with its scripts and records cleared for each test."""
    _loopback_session.reset()
    yield _loopback_session
    _loopback_session.reset()
