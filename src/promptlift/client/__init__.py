"""The client layer: one API over every provider, with the cross-cutting concerns as wrappers."""

from promptlift.client.client import DEFAULT_MODEL, Client
from promptlift.client.config import ClientConfig

__all__ = ["DEFAULT_MODEL", "Client", "ClientConfig"]
