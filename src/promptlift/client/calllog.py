"""An optional flight recorder: one SQLite row per call.

Every row has the model, endpoint, generation parameters, outcome, error (type and redacted
message), usage (with the provider's prompt-cache reads and writes), cost and what the prompt cache
saved, latency, attempts, cache hit and fallback. Message contents — the request's
messages and the answer — are stored only when ``log_content`` is on. Credentials never are: the
request type does not carry them, and every stored text goes through ``redact``.

Migrations are append-only and named, recorded in ``_migrations``; the file is in WAL mode so
several processes may append to it. Thread-safe (one connection under a lock).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from promptlift.client.cache import open_sqlite
from promptlift.client.metrics import CallRecord
from promptlift.errors import PromptliftError
from promptlift.jsonout import dumps
from promptlift.secrets import redact
from promptlift.types import Completion, CompletionRequest

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_calls",
        """
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            started REAL NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            served_by TEXT NOT NULL,
            api_base TEXT,
            params TEXT NOT NULL,
            ok INTEGER NOT NULL,
            error_type TEXT,
            error_message TEXT,
            latency_s REAL NOT NULL,
            attempts INTEGER NOT NULL,
            cached INTEGER NOT NULL,
            fallback_used INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            finish_reason TEXT,
            messages TEXT,
            response TEXT
        );
        CREATE INDEX calls_started ON calls (started);
        """,
    ),
    (
        "002_prompt_cache",  # input read from and written to the provider's prompt cache, and the saving
        """
        ALTER TABLE calls ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE calls ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE calls ADD COLUMN cache_saved_usd REAL NOT NULL DEFAULT 0;
        """,
    ),
]


class CallLog:
    """Appends call records to an SQLite file. ``record`` is a ``RecordingProvider`` sink."""

    def __init__(self, path: str, *, log_content: bool = False):
        self.path = path
        self.log_content = log_content
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        self._conn = open_sqlite(path)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, at REAL)")
                done = {r[0] for r in self._conn.execute("SELECT name FROM _migrations")}
                for name, sql in MIGRATIONS:
                    if name not in done:
                        for statement in filter(str.strip, sql.split(";")):
                            self._conn.execute(statement)
                        self._conn.execute("INSERT INTO _migrations VALUES (?, julianday('now'))", (name,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record(
        self,
        record: CallRecord,
        request: CompletionRequest,
        completion: Completion | None,
        error: PromptliftError | None,
    ) -> None:
        messages = response = None
        if self.log_content:
            messages = redact(dumps([m.to_dict() for m in request.messages], ensure_ascii=False))
            response = redact(completion.content) if completion is not None else None
        row: tuple[Any, ...] = (
            record.started,
            record.model,
            record.provider,
            record.served_by,
            redact(request.api_base) if request.api_base else None,  # ?api-key=... of Azure-style gateways
            redact(dumps(request.generation_params(), sort_keys=True, default=str)),
            int(record.ok),
            record.error_type or None,
            redact(str(error)) if error is not None else None,
            record.latency_s,
            record.attempts,
            int(record.cached),
            int(record.fallback_used),
            record.input_tokens,
            record.output_tokens,
            record.cost_usd,
            completion.finish_reason if completion is not None else None,
            messages,
            response,
            record.cached_input_tokens,
            completion.usage.cache_write_tokens if completion is not None and not completion.cached else 0,
            record.cache_saved_usd,
        )
        with self._lock:
            self._conn.execute(
                "INSERT INTO calls (started, model, provider, served_by, api_base, params, ok, error_type,"
                " error_message, latency_s, attempts, cached, fallback_used, input_tokens, output_tokens,"
                " cost_usd, finish_reason, messages, response, cached_input_tokens, cache_write_tokens,"
                " cache_saved_usd) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def rows(self) -> list[dict[str, Any]]:
        """Every recorded call, oldest first (for tests and reports)."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM calls ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
