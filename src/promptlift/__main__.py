from promptlift.cli import entrypoint

entrypoint()
