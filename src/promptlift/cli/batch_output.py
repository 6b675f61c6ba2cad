"""``promptlift batch``'s output file: what an earlier run left in it, and writing it safely.

Each output line names its input line (``line``, 1-based) and a hash of the request as sent
(``request_hash``: the cache key, which leaves credentials out), so a re-run keeps an answer only
for the same request at the same line. An earlier output is never truncated before its answers
are safe: a resumed run appends what it gets, then rewrites the file in input order through a
temporary file and one atomic rename. Killed at any moment, the file holds every answer received.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from promptlift.errors import ConfigError
from promptlift.jsonout import dumps


@dataclass
class EarlierOutput:
    """The answered lines of an earlier run (line number -> its last ``ok`` record)."""

    answered: dict[int, dict[str, Any]] = field(default_factory=dict)
    has_content: bool = False
    keep_bytes: int = 0  # the file's clean prefix: everything but a partial last line


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("ok"), bool) and "id" in value


def read_earlier(path: str) -> EarlierOutput:
    """What ``path`` holds from an earlier run; ``ConfigError`` if it holds something else."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return EarlierOutput()
    earlier = EarlierOutput(has_content=bool(data.strip()), keep_bytes=len(data))
    offset = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        end = offset + len(raw)
        last = end >= len(data)
        try:
            record = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except ValueError:
            record = None
            if not last:
                raise ConfigError(
                    f"--output {path} holds something other than promptlift batch output (its line "
                    f"{number} is not a JSON record); choose another --output, or move that file away"
                ) from None
        if record is not None and not _is_record(record):
            raise ConfigError(
                f"--output {path} holds something other than promptlift batch output (line {number}); "
                "choose another --output, or move that file away"
            )
        if last and raw and record is None:  # a line cut short by a kill: not an answer
            earlier.keep_bytes = offset
        if record is not None and record["ok"] and isinstance(record.get("line"), int):
            earlier.answered[record["line"]] = record
        offset = end + 1
    return earlier


def same_id(a: Any, b: Any) -> bool:
    """Equal as JSON (``1`` and ``true`` are different ids, as they are different JSON)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def dump(record: dict[str, Any]) -> str:
    """One output line; a NaN (a cost or score a provider got wrong) is written as null, not as a
    ValueError that would lose the line."""
    return dumps(record, ensure_ascii=False) + "\n"


class OrderedWriter:
    """Writes the records of ``order`` (line numbers) in that order, each as soon as the ones before
    it are written, and flushes, so a killed run leaves a clean prefix."""

    def __init__(self, out: IO[str], order: Sequence[int]):
        self.out = out
        self.order = order
        self.pending: dict[int, dict[str, Any]] = {}
        self.next = 0

    def put(self, number: int, record: dict[str, Any]) -> None:
        self.pending[number] = record
        while self.next < len(self.order) and self.order[self.next] in self.pending:
            self.out.write(dump(self.pending.pop(self.order[self.next])))
            self.next += 1
        self.out.flush()


def open_for_run(path: str, earlier: EarlierOutput) -> IO[str]:
    """A fresh file, or (resuming) the earlier one to append to, without its partial last line."""
    try:
        if not earlier.has_content:
            return open(path, "w", encoding="utf-8")
        with open(path, "r+b") as f:
            f.truncate(earlier.keep_bytes)
            if earlier.keep_bytes:
                f.seek(earlier.keep_bytes - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot be written ({exc.strerror or exc})") from None


def rewrite(path: str, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with ``records``, atomically: a kill leaves the old file or the new one."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            for record in records:
                f.write(dump(record))
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
