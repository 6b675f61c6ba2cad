"""``promptlift complete --stream``: the real CLI in a subprocess, against the loopback server."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time

from promptlift.testing.server import LoopbackServer, cut_stream, held_stream, ok

# Without PYTHONUNBUFFERED: the CLI's own flushes must get the text out of a pipe's buffer.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {
    "OPENAI_API_KEY": "sk-cli-stream-000000001"
}


def cli(server: LoopbackServer, *flags: str) -> list[str]:
    base = [
        "complete",
        "--model",
        "openai/gpt-4o-mini",
        "--api-base",
        server.openai_base,
        "--max-retries",
        "0",
    ]
    return [sys.executable, "-m", "promptlift", *base, *flags, "Say hello."]


def test_stream_prints_text_as_it_arrives_then_a_summary_on_stderr() -> None:
    release = threading.Event()
    with LoopbackServer() as server:
        server.script(held_stream(2, release, ok("early late", input_tokens=7, output_tokens=2)))
        proc = subprocess.Popen(
            cli(server, "--stream"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
        )
        assert proc.stdout is not None
        seen, deadline = b"", time.monotonic() + 60
        try:
            # the server sends "late" only once "early " is on the CLI's stdout: a CLI that buffered
            # its output would show nothing here until it exits, and it cannot exit before "late"
            while b"early" not in seen and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 1024)
                    if not chunk:
                        break
                    seen += chunk
            assert seen == b"early ", seen
        finally:
            release.set()
        out, err = proc.communicate(timeout=60)
        assert server.requests[0].json["stream"] is True
    assert proc.returncode == 0, err
    assert (seen + out).decode() == "early late\n"
    (line,) = err.decode().strip().splitlines()
    assert line.startswith("promptlift: openai/gpt-4o-mini") and "7 in / 2 out tokens" in line


def test_a_stream_cut_mid_answer_ends_its_line_and_exits_1() -> None:
    with LoopbackServer() as server:
        server.script(cut_stream(3, ok("one two three four")))
        proc = subprocess.run(cli(server, "--stream"), capture_output=True, env=ENV, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.decode().startswith("one ") and proc.stdout.decode().endswith("\n")
    (line,) = proc.stderr.decode().strip().splitlines()
    assert line.startswith("promptlift: error: ConnectionFailed")


def test_stream_with_json_is_refused_in_one_line() -> None:
    with LoopbackServer() as server:
        proc = subprocess.run(cli(server, "--stream", "--json"), capture_output=True, env=ENV, timeout=60)
        assert server.requests == []
    assert proc.returncode == 2 and proc.stdout == b""
    (line,) = proc.stderr.decode().strip().splitlines()
    assert "--stream" in line and "--json" in line
