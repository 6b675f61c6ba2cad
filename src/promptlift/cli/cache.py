"""``promptlift cache stats|clear``: look at or empty the response cache file (or its Redis)."""

from __future__ import annotations

import argparse
import os

from promptlift.jsonout import dumps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cache", help="show or clear the response cache")
    p.add_argument("action", choices=("stats", "clear"))
    p.add_argument(
        "--cache",
        metavar="PATH",
        help="cache file or redis:// URL (default: $PROMPTLIFT_CACHE or ~/.cache/...)",
    )
    p.add_argument("--namespace", help="clear only this namespace (default: every namespace)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptlift.client.cache import SQLiteStore, Store, default_cache_path
    from promptlift.client.shared import RedisStore, is_redis_url
    from promptlift.errors import ConfigError

    path = args.cache or default_cache_path()
    if not is_redis_url(path) and not os.path.exists(path):
        if args.action == "clear":
            print(f"no cache at {path}: nothing to clear")
            return 0
        raise ConfigError(f"no cache file at {path}")
    store: Store = RedisStore(path) if is_redis_url(path) else SQLiteStore(path)
    path = store.path  # a Redis URL's password is not printed
    try:
        if args.action == "stats":
            # Only counts and sizes from SQLite, so no NaN can arise; dumps keeps it so if a rate joins.
            print(dumps(store.summary(), indent=2, sort_keys=True))
        else:
            removed = store.clear(args.namespace)
            where = f"namespace {args.namespace!r}" if args.namespace else "every namespace"
            print(f"removed {removed} entries from {where} in {path}")
    finally:
        store.close()
    return 0
