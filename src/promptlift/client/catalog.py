"""What the optimization layer may know about a model before calling it: its price, whether it is
a base model, whether its name routes anywhere, and how many tokens a text takes.

The planner asks here rather than reaching into ``providers/``: the client layer is the optimization
layer's only way down. Nothing here imports litellm (prices are read from its map file, see
``promptlift.pricing``), so planning a run costs no 3 s import.
"""

from __future__ import annotations

from promptlift.pricing import ModelPrice, Prices, estimate_text_tokens, price_of
from promptlift.providers.local import is_base_model
from promptlift.providers.routes import route_problem

__all__ = ["ModelPrice", "Prices", "estimate_text_tokens", "is_base_model", "price_of", "route_problem"]
