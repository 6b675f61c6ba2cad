"""The run store: every run, candidate and evaluation, written to SQLite as it happens.

A run keeps its config, the plan made before it started, and its result (with its Pareto front and
the client's call metrics); each candidate its parents, the reasoning replies that proposed it and
its per-row results; and, apart (``rejected``), every proposal the search dropped before validation,
with why and the rows it was scored on.

Migrations are append-only and named; the ``migrations`` table records which ran. The file is in
WAL mode so a report can read it while a run writes. One ``RunStore`` may be shared by the
threads of one process (a lock serializes writes); several processes may open the same file.

Resuming: each expensive step of a run (an evaluation, a reasoning call) is written to ``steps``
under a key derived from its inputs. A resumed run replays the optimizer from its seed and reads
each step back instead of calling a model, so nothing is paid for twice.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptlift.errors import ConfigError
from promptlift.jsonout import dumps
from promptlift.optimize.liveness import listed_status, owner, refuse_if_live
from promptlift.paths import make_parent
from promptlift.secrets import redact

MIGRATIONS: list[tuple[str, str]] = [
    (
        "001_runs",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
            optimizer TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL, result TEXT
        );
        CREATE TABLE candidates (
            run_id TEXT NOT NULL REFERENCES runs(id), id INTEGER NOT NULL, created REAL NOT NULL,
            round INTEGER NOT NULL, parent INTEGER, origin TEXT NOT NULL, prompt TEXT NOT NULL,
            score REAL, evaluation TEXT, PRIMARY KEY (run_id, id)
        );
        CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, created REAL NOT NULL,
            value TEXT NOT NULL, PRIMARY KEY (run_id, key)
        );
        """,
    ),
    # Who runs it (``liveness.owner``), so a listing can tell a killed run from a running one.
    ("002_run_owner", "ALTER TABLE runs ADD COLUMN owner TEXT"),
    # A candidate's parents (two for a merge or crossover), the reasoning model's replies that
    # proposed it, and the run's spend when it was recorded (cost over time); and the proposals a
    # search dropped before validation (worse on a minibatch, unusable, a duplicate), with why.
    # Rows written before this have NULL here: ``candidates`` derives their parents.
    (
        "003_candidate_lineage",
        """
        ALTER TABLE candidates ADD COLUMN parents TEXT;
        ALTER TABLE candidates ADD COLUMN proposal TEXT;
        ALTER TABLE candidates ADD COLUMN spent TEXT;
        CREATE TABLE rejected (
            run_id TEXT NOT NULL REFERENCES runs(id), id INTEGER NOT NULL, created REAL NOT NULL,
            round INTEGER NOT NULL, parents TEXT NOT NULL, origin TEXT NOT NULL, prompt TEXT NOT NULL,
            reason TEXT NOT NULL, proposal TEXT, evaluation TEXT, spent TEXT, PRIMARY KEY (run_id, id)
        )
        """,
    ),
    # The plan (``optimize.plan``: expected calls and cost) as the run started, for plan vs spend.
    ("004_run_plan", "ALTER TABLE runs ADD COLUMN plan TEXT"),
]


def _redacted_json(value: Any) -> str:
    """A run's config and result as stored: an endpoint's ``?api-key=``, a key in ``extra`` or in an
    error message never reach the file (a store is shared, copied and attached to reports). The
    cache keys on the endpoint itself; the store only records what the run was given."""
    return redact(dumps(value, default=str))  # strict JSON: NaN and infinities as null


HEARTBEAT_S = 10.0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _refuse_other_file(path: Path) -> None:
    """An existing file that is no run store (empty, not SQLite, another SQLite database) is refused
    before anything is written to it: opening it would turn it into one."""
    what = f"{path} is not a run store"
    fix = "name the store folder (a config's `store:`) or its runs.sqlite"
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ConfigError(f"cannot read the run store at {path} ({exc.strerror or exc}); {fix}") from None
    if head != _SQLITE_MAGIC:
        raise ConfigError(f"{what} ({'empty' if not head else 'not an SQLite file'}); {fix}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:  # a damaged file, or one this user may not read
        raise ConfigError(f"cannot read the run store at {path} ({exc}); {fix}") from None
    if "runs" not in tables:
        raise ConfigError(f"{what} (an SQLite file without promptlift's runs); {fix}")


class RunStore:
    def __init__(self, path: str | Path, *, create: bool = True):
        """``create=False`` opens an existing store only: a missing one is a ``ConfigError`` naming
        the path, not a new empty store (a mistyped path would otherwise list no runs)."""
        self.path = Path(path)
        if self.path.suffix == "" or self.path.is_dir():
            self.path = self.path / "runs.sqlite"
        if not create and not self.path.is_file():
            raise ConfigError(
                f"no run store at {self.path}; name the store folder (a config's `store:`, relative to "
                f"the config) or the run's config file: promptlift runs CONFIG.yaml"
            )
        # An existing file must already be a run store, whoever opens it: opening another SQLite file
        # (or any file) would migrate promptlift's tables into it. An empty file only a new store may take.
        if not create or (self.path.is_file() and self.path.stat().st_size):
            _refuse_other_file(self.path)
        make_parent(self.path, "`store`", kind="folder", target=self.path.parent)
        try:
            self._conn = _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the run store at {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
            done = {r[0] for r in self._conn.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if name not in {r[0] for r in self._conn.execute("SELECT name FROM migrations")}:
                        for statement in filter(str.strip, sql.split(";")):
                            self._conn.execute(statement)
                        self._conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.execute(sql, params)

    def _write_and_touch(self, run_id: str, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.execute(sql, params)
            self._touch(run_id)

    # -- runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        optimizer: str,
        config: Mapping[str, Any],
        run_id: str | None = None,
        *,
        plan: Mapping[str, Any] | None = None,
    ) -> str:
        """A new run, ``running``; ``plan`` is what ``optimize.plan`` expected it to spend
        (``Plan.to_dict``), kept for plan vs spend (None: none was made, as from library code)."""
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self._write(
            "INSERT INTO runs (id, created, updated, optimizer, status, config, owner, plan) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                now,
                now,
                optimizer,
                "running",
                _redacted_json(config),
                dumps(owner()),
                _redacted_json(plan) if plan is not None else None,
            ),
        )
        return run_id

    def claim_run(self, run_id: str) -> None:
        """Mark a stored run as running again, owned by this process (``--resume``).

        Refused (``RunInUse``) while another live process owns it (``liveness.listed_status`` says
        ``running``): two processes driving one run would mix their totals. The check and the claim
        are one write transaction, so of two resumers racing exactly one wins; the loser then sees
        the winner's live owner. A run whose owner is gone (killed, rebooted, ``stale?`` on another
        host) or that this process already owns may be claimed."""
        me = owner()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # the write lock first: no other claim in between
            try:
                row = self._conn.execute(
                    "SELECT status, owner, updated FROM runs WHERE id = ?", (run_id,)
                ).fetchone()
                if row is None:
                    raise ConfigError(
                        f"no run {run_id!r} in {self.path}; `promptlift runs` lists the runs there"
                    )
                refuse_if_live(run_id, row[0], json.loads(row[1]) if row[1] else None, row[2], me)
                self._conn.execute(
                    "UPDATE runs SET status = 'running', owner = ?, updated = ? WHERE id = ?",
                    (dumps(me), time.time(), run_id),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def check_claimable(self, run_id: str) -> None:
        """``claim_run``'s refusal, without claiming: for a CLI to refuse before it prints a plan."""
        with self._lock:
            row = self._conn.execute(
                "SELECT status, owner, updated FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise ConfigError(f"no run {run_id!r} in {self.path}; `promptlift runs` lists the runs there")
        refuse_if_live(run_id, row[0], json.loads(row[1]) if row[1] else None, row[2], owner())

    @staticmethod
    def _status(status: str, recorded: str | None, updated: float) -> str:
        """The stored status, except that a ``running`` run whose process is gone is ``killed``
        (``liveness.listed_status``): a SIGKILL or a reboot never writes a run's end."""
        return listed_status(status, json.loads(recorded) if recorded else None, updated, time.time())

    def run(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, created, updated, optimizer, status, config, result, plan, owner FROM runs "
                "WHERE id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            raise ConfigError(f"no run {run_id!r} in {self.path}; `promptlift runs` lists the runs there")
        keys = ("id", "created", "updated", "optimizer", "status", "config", "result", "plan")
        out = dict(zip(keys, row[:-1], strict=True))
        out["status"] = self._status(out["status"], row[-1], out["updated"])
        for key in ("config", "result", "plan"):  # plan: None in a run stored before plans were kept
            out[key] = json.loads(out[key]) if out[key] else None
        return out

    def owner_of(self, run_id: str) -> dict[str, Any] | None:
        """The process that started or last resumed the run (``liveness.owner``), None when the
        run was stored before owners were recorded, or is not in the store."""
        with self._lock:
            row = self._conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first; ``status`` as ``run`` gives it."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, created, optimizer, status, owner, updated FROM runs ORDER BY created DESC "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"id": i, "created": c, "optimizer": o, "status": self._status(s, w, u)}
            for i, c, o, s, w, u in rows
        ]

    def _touch(self, run_id: str) -> None:
        """The run's heartbeat: another host's listing reads its age (``liveness.STALE_AFTER_S``).
        At most one write per ``HEARTBEAT_S`` per run: a step is written per scored row."""
        now = time.time()
        if now - self._touched.get(run_id, 0.0) >= HEARTBEAT_S:
            self._conn.execute("UPDATE runs SET updated = ? WHERE id = ?", (now, run_id))
            self._touched[run_id] = now

    def finish_run(self, run_id: str, status: str, result: Mapping[str, Any] | None) -> None:
        self._write(
            "UPDATE runs SET status = ?, result = ?, updated = ? WHERE id = ?",
            (status, _redacted_json(result) if result is not None else None, time.time(), run_id),
        )

    # -- candidates and steps ------------------------------------------------------------------
    def add_candidate(self, run_id: str, record: Mapping[str, Any]) -> None:
        """A candidate scored on validation: ``id``, ``round``, ``parent``, ``origin``, ``prompt``,
        ``score``, ``evaluation``; optionally ``parents``, ``proposal`` (the reasoning replies that
        proposed it) and ``spent`` (the run's spend so far)."""
        parent = record["parent"]
        self._write_and_touch(
            run_id,
            "INSERT OR REPLACE INTO candidates (run_id, id, created, round, parent, origin, prompt, score, "
            "evaluation, parents, proposal, spent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                record["id"],
                time.time(),
                record["round"],
                parent,
                record["origin"],
                dumps(record["prompt"]),
                record.get("score"),
                dumps(record.get("evaluation")),
                dumps(list(record.get("parents") or ([] if parent is None else [parent]))),
                redact(dumps(list(record.get("proposal") or []))),
                dumps(record.get("spent")),
            ),
        )

    def add_rejected(self, run_id: str, record: Mapping[str, Any]) -> None:
        """A proposal the search dropped before validation: ``id`` (its own sequence), ``round``,
        ``parents``, ``origin``, ``prompt``, ``reason``; ``evaluation`` on the rows it was scored on
        (a minibatch; None if never scored), ``proposal`` and ``spent`` as for a candidate."""
        self._write_and_touch(
            run_id,
            "INSERT OR REPLACE INTO rejected (run_id, id, created, round, parents, origin, prompt, reason, "
            "proposal, evaluation, spent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                record["id"],
                time.time(),
                record["round"],
                dumps(list(record["parents"])),
                record["origin"],
                dumps(record["prompt"]),
                redact(record["reason"]),
                redact(dumps(list(record.get("proposal") or []))),
                dumps(record.get("evaluation")),
                dumps(record.get("spent")),
            ),
        )

    def candidates(self, run_id: str) -> list[dict[str, Any]]:
        """The candidates scored on validation, by id, each with ``status: "accepted"``. A run stored
        before parents were kept gets them from ``parent`` and a merge's or crossover's origin."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, round, parent, origin, prompt, score, evaluation, parents, proposal, spent "
                "FROM candidates WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
        keys = ("id", "round", "parent", "origin", "prompt", "score", "evaluation", *_NEW_CANDIDATE_COLUMNS)
        out = []
        for r in rows:
            d: dict[str, Any] = {"status": "accepted", **_loaded(dict(zip(keys, r, strict=True)))}
            if d["parents"] is None:
                d["parents"] = _parents_of(d["parent"], d["origin"])
            out.append(d)
        return out

    def rejected(self, run_id: str) -> list[dict[str, Any]]:
        """The proposals dropped before validation, by id, each with ``status: "rejected"`` and the
        ``reason``; none in a run stored before they were kept."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, round, parents, origin, prompt, reason, proposal, evaluation, spent "
                "FROM rejected WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
        keys = ("id", "round", "parents", "origin", "prompt", "reason", "proposal", "evaluation", "spent")
        return [{"status": "rejected", **_loaded(dict(zip(keys, r, strict=True)))} for r in rows]

    def steps(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM steps WHERE run_id = ?", (run_id,)).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def put_step(self, run_id: str, key: str, value: Any) -> None:
        self._write_and_touch(
            run_id,
            "INSERT OR REPLACE INTO steps (run_id, key, created, value) VALUES (?, ?, ?, ?)",
            (run_id, key, time.time(), dumps(value)),
        )

    def delete_run(self, run_id: str) -> dict[str, int]:
        """Remove a run, its candidates and steps, and its pipeline stages (``<run>.<k>``)."""
        ids = [run_id] + [
            r
            for (r,) in self._conn.execute("SELECT id FROM runs WHERE id LIKE ?", (f"{run_id}.%",)).fetchall()
        ]
        counts = {"runs": 0, "candidates": 0, "rejected": 0, "steps": 0}
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # all of it or none of it
            try:
                for rid in ids:
                    for table, key in _RUN_TABLES:
                        cursor = self._conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (rid,))
                        counts[table] += cursor.rowcount
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return counts

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_NEW_CANDIDATE_COLUMNS = ("parents", "proposal", "spent")  # 003_candidate_lineage
_RUN_TABLES = (("candidates", "run_id"), ("rejected", "run_id"), ("steps", "run_id"), ("runs", "id"))
_JSON_COLUMNS = ("prompt", "evaluation", "parents", "proposal", "spent")


def _loaded(record: dict[str, Any]) -> dict[str, Any]:
    """A candidate row with its JSON columns parsed (NULL stays None)."""
    for key in _JSON_COLUMNS:
        if key in record:
            record[key] = json.loads(record[key]) if record[key] else None
    return record


def _parents_of(parent: int | None, origin: str) -> list[int]:
    """A stored candidate's parents when only ``parent`` was kept: both sides of a "merge A+B" or a
    "crossover AxB" (how those origins read), else the one parent."""
    pairs = re.findall(r"(?:merge|crossover) (\d+)\s*[+x]\s*(\d+)", origin or "")
    found = [int(side) for pair in pairs for side in pair]
    return list(dict.fromkeys(found)) or ([] if parent is None else [parent])
