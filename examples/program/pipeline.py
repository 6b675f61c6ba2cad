"""The program the example optimizes: two prompts in a row, each one short step for a small model.

``city`` reads the travel sentence and names the city in it; ``country`` names that city's country.
The metric scores only the final answer, so the optimizer has to improve both steps together.
"""

from __future__ import annotations

from typing import Any


def program(row: dict[str, Any], lm: Any) -> str:
    city = lm.call("city", sentence=row["sentence"]).strip()
    return lm.call("country", city=city).strip()
