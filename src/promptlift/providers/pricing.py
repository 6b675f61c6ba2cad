"""Moved to ``promptlift.pricing`` (one pricing module for every layer); kept so existing imports
work. ``Price`` is ``ModelPrice``: one price type, in USD per million tokens."""

from __future__ import annotations

from promptlift.pricing import (
    FREE,
    FREE_PROVIDERS,
    ModelPrice,
    Prices,
    cost_usd,
    estimate_cost_usd,
    estimate_input_tokens,
    price_of,
)

Price = ModelPrice

__all__ = [
    "FREE",
    "FREE_PROVIDERS",
    "ModelPrice",
    "Price",
    "Prices",
    "cost_usd",
    "estimate_cost_usd",
    "estimate_input_tokens",
    "price_of",
]
