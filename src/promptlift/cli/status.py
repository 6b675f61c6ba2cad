"""``promptlift status CALL_LOG``: provider health from the flight recorder, per model and endpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptlift.cli.validators import positive_float
from promptlift.jsonout import dumps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="provider health from a call log: per model and endpoint, errors, latency, cache, retries",
    )
    p.add_argument("call_log", metavar="CALL_LOG", help="the call log file (ClientConfig(call_log=...))")
    p.add_argument("--since", type=positive_float, metavar="MINUTES", help="only the last MINUTES")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when an endpoint is degraded")
    p.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    from promptlift.client.health import from_call_log, render

    rows = read_call_log(Path(args.call_log).expanduser())
    health = from_call_log(rows, since_s=args.since * 60 if args.since else None)
    print(dumps([h.to_dict() for h in health]) if args.json else render(health))
    return 1 if args.check and any(h.degraded for h in health) else 0


def read_call_log(path: Path) -> list[dict[str, object]]:
    """Every row of a call log, opened read-only: a viewer never writes (nor migrates) a file, and
    a file that is not a call log (a run store, a text file) is refused in one line."""
    import sqlite3

    from promptlift.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"no call log at {path}; a client writes one with ClientConfig(call_log=...)")
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise ConfigError(f"{path} is not a call log (not an SQLite file)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "calls" not in tables:
            raise ConfigError(f"{path} is not a call log (no calls table; a run store is `promptlift runs`)")
        cursor = conn.execute("SELECT * FROM calls ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} cannot be read as a call log ({exc})") from None
    finally:
        conn.close()
