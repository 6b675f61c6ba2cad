"""Test doubles and conformance suites, shipped as part of promptlift."""

from promptlift.testing.doubles import FunctionProvider, GatedProvider, ScriptedProvider

__all__ = ["FunctionProvider", "GatedProvider", "ScriptedProvider"]
