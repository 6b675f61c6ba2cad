"""A closed Client leaves no connection open: LiteLLM caches its HTTP clients per event loop and
evicts them only by age or count, so the client's own loop's entries are closed with the client."""

from __future__ import annotations

import time

from promptlift import Client, ClientConfig, Secret
from promptlift.testing.server import LoopbackServer, ok


def test_close_releases_the_http_clients_litellm_cached_for_the_clients_loop() -> None:
    with LoopbackServer() as server:  # its own server: the count of open connections is this test's
        server.set_default(ok("fine"))
        config = ClientConfig(
            models=("openai/m",), api_base=server.openai_base, api_key=Secret("sk-test-sock-0001")
        )
        client = Client(config)
        for i in range(3):
            client.complete(f"hello {i}", temperature=0)
        import litellm

        before = len(litellm.in_memory_llm_clients_cache.cache_dict)
        assert server.open_connections() >= 1  # the pool kept its connection open for reuse
        client.close()
        assert len(litellm.in_memory_llm_clients_cache.cache_dict) < before
        deadline = time.monotonic() + 10  # the server's handler sees the close when it next reads
        while server.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.open_connections() == 0
