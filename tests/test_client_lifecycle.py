"""A closed client: one typed error for every use, close() idempotent, nothing left running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptlift import Client, ClientConfig, errors
from promptlift.client.config import CacheConfig, CallLogConfig
from promptlift.testing import FunctionProvider


def _loop_threads() -> int:
    return sum(t.name == "promptlift-loop" and t.is_alive() for t in threading.enumerate())


def _closed_client(tmp_path: Path) -> tuple[Client, Any]:
    config = ClientConfig(
        models=("a",),
        cache=CacheConfig(path=str(tmp_path / "cache.sqlite")),
        call_log=CallLogConfig(str(tmp_path / "calls.sqlite")),
    )
    client = Client(config, provider=FunctionProvider(lambda r: "answer"))
    assert client.complete("warm the memory cache").content == "answer"
    held = client.cache  # a reference taken while the client was open
    client.close()
    return client, held


def test_every_use_of_a_closed_client_raises_client_closed(tmp_path: Path) -> None:
    client, held = _closed_client(tmp_path)
    before = _loop_threads()
    uses: dict[str, Callable[[], object]] = {
        "complete": lambda: client.complete("a new prompt"),
        "complete (a cached prompt)": lambda: client.complete("warm the memory cache"),
        "acomplete": lambda: asyncio.run(client.acomplete("a new prompt")),
        "batch": lambda: client.batch([client.request("x")]),
        "abatch": lambda: asyncio.run(client.abatch([client.request("x")])),
        "cache": lambda: client.cache,
        "held cache stats": lambda: held.stats(),
        "held cache get": lambda: held.get("k"),
        "held cache clear": lambda: held.clear(),
        "with": lambda: client.__enter__(),
    }
    for name, use in uses.items():
        with pytest.raises(errors.ClientClosed, match="closed") as info:
            use()
        assert isinstance(info.value, errors.UserError), name
    assert _loop_threads() == before  # a refused sync call starts no loop thread
    snapshot = client.metrics_snapshot()  # in memory and final: still readable
    assert snapshot.total.calls == 1


def test_close_is_idempotent_from_many_threads(tmp_path: Path) -> None:
    client, _ = _closed_client(tmp_path)
    client.close()
    again = Client(ClientConfig(models=("a",)), provider=FunctionProvider(lambda r: "x"))
    again.complete("start the loop thread")
    threads = [threading.Thread(target=again.close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(errors.ClientClosed):
        again.complete("x")
