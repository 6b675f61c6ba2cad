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
    from promptlift.client.calllog import CallLog
    from promptlift.client.health import from_call_log, render
    from promptlift.errors import ConfigError

    path = Path(args.call_log).expanduser()
    if not path.is_file():
        raise ConfigError(f"no call log at {path}; a client writes one with ClientConfig(call_log=...)")
    log = CallLog(str(path))
    try:
        health = from_call_log(log.rows(), since_s=args.since * 60 if args.since else None)
    finally:
        log.close()
    print(dumps([h.to_dict() for h in health]) if args.json else render(health))
    return 1 if args.check and any(h.degraded for h in health) else 0
