"""``promptlift report RUN --html OUT.html``: one self-contained HTML file for a stored run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a run's report: one HTML file that works offline")
    p.add_argument("run_id", metavar="RUN", help="the run's id (promptlift runs lists them)")
    p.add_argument("--html", required=True, metavar="OUT.html", help="the file to write")
    p.add_argument("--store", help="the store folder or file, or a run's CONFIG.yaml (its store:)")
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from promptlift.cli.optimize import _default_store, _store_path
    from promptlift.optimize.store import RunStore
    from promptlift.report.html import write

    store = RunStore(_store_path(args.store) if args.store else _default_store(), create=False)
    try:
        path = write(store, args.run_id, args.html)
    finally:
        store.close()
    print(f"wrote {path}")
    return 0
