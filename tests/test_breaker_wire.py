"""A batch against one endpoint rides out the server being killed and restarted on the same port
(the real LiteLLM over real HTTP)."""

from __future__ import annotations

import threading

from promptlift import Client, ClientConfig, Completion, Secret
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, slow


def test_a_batch_waits_for_the_probe_after_a_server_restart_and_answers_every_line() -> None:
    first = LoopbackServer().start()
    port = first.port
    down = threading.Event()
    before_kill: set[str] = set()  # the lines the first server answered

    def handler(request: RecordedRequest) -> Reply | None:
        line = request.json["messages"][-1]["content"]
        if line == "10":
            down.set()
        if down.is_set():  # from line 10 on, hold every request: the kill drops them all, mid-call
            return slow(60)
        before_kill.add(line)
        return None

    first.handler = handler
    restarted: list[LoopbackServer] = []

    def kill_and_restart() -> None:
        down.wait(60)
        first.close()  # every held request is dropped, the next ones are refused
        restarted.append(LoopbackServer(port=port).start())

    config = ClientConfig(
        models=("openai/x",),
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key=Secret("sk-test-restart-0000"),
        timeout=30.0,
        concurrency=4,
        # The first failed call opens the breaker, and no retry hides the outage: the breaker's
        # wait for its probe is all that can carry the lines across it.
        retry=RetryPolicy(max_attempts=1),
        fallback=FallbackPolicy(failure_threshold=1, cooldown=1.0),
    )
    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        with Client(config) as client:
            results = client.batch([client.request(str(i), temperature=0) for i in range(40)])
            snapshot = client.metrics_snapshot()
        killer.join()
        second = restarted[0]
        answered = {r.json["messages"][-1]["content"] for r in second.requests}
    finally:
        first.close()
        for server in restarted:
            server.close()
    failed = [(i, r) for i, r in enumerate(results) if not isinstance(r, Completion)]
    assert not failed, failed[:3]  # before: the dropped lines and every line after them failed
    assert sum(snapshot.total.attempt_errors.values()) >= 1  # the outage was seen on the wire
    assert "10" in answered and set(map(str, range(40))) - before_kill <= answered  # the rest: after
    resent = [r for r in results if isinstance(r, Completion) and r.attempts == 2]
    assert resent  # the calls the kill dropped went again once the probe came back
