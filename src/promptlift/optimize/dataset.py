"""Datasets: rows of named fields, validated on load, split with a seed.

A dataset is immutable. Every row has the same fields; a row is addressed by its index in the
file (``Row.index``), which is how evaluations, run stores and reports refer to it.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.errors import DatasetError


@dataclass(frozen=True)
class Row:
    index: int
    fields: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True)
class Dataset:
    rows: tuple[Row, ...]
    fields: tuple[str, ...]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> Row:
        return self.rows[i]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str = "<memory>") -> Dataset:
        """Validate records: at least one, all objects, all with the same fields."""
        rows: list[Row] = []
        fields: tuple[str, ...] | None = None
        for i, record in enumerate(records):
            where = f"{source}, row {i + 1}"
            if not isinstance(record, Mapping):
                raise DatasetError(
                    f"{where}: expected an object of named fields, got {type(record).__name__}"
                )
            keys = tuple(str(k) for k in record)
            if fields is None:
                if not keys:
                    raise DatasetError(f"{where}: the first row has no fields")
                fields = keys
            missing = [f for f in fields if f not in record or record[f] is None]
            extra = [k for k in keys if k not in fields]
            if missing:
                raise DatasetError(
                    f"{where}: missing field {missing[0]!r} (every row needs {', '.join(fields)}); "
                    f"add it to the row or remove the row"
                )
            if extra:
                raise DatasetError(
                    f"{where}: unexpected field {extra[0]!r} that the first row does not have; "
                    f"every row must have the same fields ({', '.join(fields)})"
                )
            rows.append(Row(i, dict(record)))
        if not rows or fields is None:
            raise DatasetError(f"{source}: the dataset is empty; it needs at least one row")
        return cls(tuple(rows), fields, source)

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Load JSONL, JSON (a list of objects) or CSV (a header row), by the file's suffix: UTF-8
        text, with or without a byte-order mark (Excel writes one; it is not part of a field name)."""
        path = Path(path).expanduser()
        if path.is_dir():
            raise DatasetError(f"dataset {path} is a folder; name the JSONL, JSON or CSV file of rows in it")
        if not path.is_file():
            raise DatasetError(f"dataset file not found: {path}")
        try:
            return cls._load(path)
        except OSError as exc:  # no permission to read it, a device
            raise DatasetError(f"dataset {path} cannot be read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                f"save the file as UTF-8"
            ) from None

    @classmethod
    def _load(cls, path: Path) -> Dataset:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return cls.from_records(_read_jsonl(path), str(path))
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
            if not isinstance(data, list):
                raise DatasetError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
            return cls.from_records(data, str(path))
        if suffix == ".csv":
            return cls.from_records(_read_csv(path), str(path))
        raise DatasetError(f"{path}: unknown dataset format {suffix!r}; use .jsonl, .json or .csv")

    def subset(self, indices: Sequence[int]) -> Dataset:
        return Dataset(tuple(self.rows[i] for i in indices), self.fields, self.source)


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return
        for n, values in enumerate(reader, 2):
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DatasetError(
                    f"{path}, line {n}: {len(values)} values for {len(header)} columns "
                    f"({', '.join(header)}); quote values that contain commas"
                )
            yield dict(zip(header, values, strict=True))


@dataclass(frozen=True)
class Splits:
    """train: what optimizers learn from; validation: what they select on; test: never seen by them."""

    train: Dataset
    validation: Dataset
    test: Dataset


def split(
    dataset: Dataset,
    train: float,
    validation: float,
    test: float,
    seed: int = 0,
    inputs: Sequence[str] | None = None,
) -> Splits:
    """A seeded shuffle cut by fractions (normalised to sum to 1); each part gets at least one row.

    Rows with the same ``inputs`` (the fields the prompt reads; default: every field) are one unit:
    they land in the same split, so a test row is never an input the search saw in train or
    validation. Without duplicates the split is the same as a plain shuffle of the rows."""
    total = train + validation + test
    if not all(math.isfinite(x) and x > 0 for x in (train, validation, test)):
        # each part gets at least one row, so a fraction of 0 would be quietly overruled
        raise DatasetError(f"split fractions must each be more than 0, got {train}/{validation}/{test}")
    n = len(dataset)
    if n < 3:
        raise DatasetError(f"{dataset.source}: {n} rows cannot be split three ways; at least 3 are needed")
    groups = list(_groups(dataset, inputs).values())
    random.Random(seed).shuffle(groups)
    n_test = max(1, round(n * test / total))
    n_val = max(1, round(n * validation / total))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise DatasetError(f"{dataset.source}: {n} rows leave no training rows with these fractions")
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    start = 0
    for group in groups:  # a group goes where its first row would have gone in a plain shuffle
        parts[0 if start < n_train else 1 if start < n_train + n_val else 2].extend(group)
        start += len(group)
    if not all(parts):
        raise DatasetError(
            f"{dataset.source}: {len(groups)} distinct inputs among {n} rows cannot be split three ways "
            f"with these fractions; remove the duplicate rows or add rows"
        )
    return Splits(*(dataset.subset(part) for part in parts))


def _groups(dataset: Dataset, inputs: Sequence[str] | None) -> dict[str, list[int]]:
    """Row positions by their inputs' content, in file order."""
    names = [f for f in (inputs or dataset.fields) if f in dataset.fields] or list(dataset.fields)
    out: dict[str, list[int]] = {}
    for pos, row in enumerate(dataset.rows):
        key = json.dumps([row.fields[f] for f in names], sort_keys=True, default=str)
        out.setdefault(key, []).append(pos)
    return out


def duplicates(dataset: Dataset, inputs: Sequence[str] | None = None) -> list[tuple[int, ...]]:
    """The sets of rows (by ``Row.index``) whose ``inputs`` are identical, each with 2+ rows."""
    return [tuple(dataset.rows[p].index for p in g) for g in _groups(dataset, inputs).values() if len(g) > 1]
