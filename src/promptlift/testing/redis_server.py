"""A real ``redis-server`` on a free loopback port, for tests and benchmarks.

    with RedisServer() as server:
        config = CacheConfig(path=server.url)
        ...
        server.stop()       # Redis "goes down" mid-run
        server.start()      # and comes back, empty, on the same port

The server is Debian's ``redis-server`` (``.ci/run`` installs it), started with a temporary
working directory, no persistence (``--save "" --appendonly no``) and bound to 127.0.0.1 only.
``start`` waits until it answers PING; a missing binary or a server that never answers raises
``RuntimeError`` with the reason: a test that needs Redis fails, it is never skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, *, binary: str = "redis-server", startup_s: float = 10.0):
        self.binary = binary
        self.startup_s = startup_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        path = shutil.which(self.binary)
        if path is None:
            raise RuntimeError(
                f"{self.binary} not found on PATH: install it (apt-get install -y redis-server)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="promptlift-redis-")
        self.port = self.port or free_port()  # a restart comes back on the same port
        self._proc = subprocess.Popen(
            [path, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + self.startup_s
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start ({self._proc.returncode}): {err.strip()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {self.startup_s} s")

    def ping(self) -> bool:
        """True if the server answers PING (a raw RESP exchange: no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (SIGKILL: it goes away as a crashed server would); idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
