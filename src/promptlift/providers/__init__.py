"""Backends: LiteLLM routes and the embedded local model. The only layer that imports litellm."""
