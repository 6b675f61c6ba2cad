# One task runner; CI calls these targets verbatim (.ci/run).
# Every target sets itself up: uv (pinned) is installed if missing, then .venv from uv.lock.
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --locked --all-extras

.PHONY: setup demo test check lint typecheck fmt bench clean

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --all-extras
	touch $@

setup: .venv/.synced

## The main job: optimize the bundled example prompt on the embedded model.
demo: setup
	$(RUN) promptlift optimize examples/sentiment/config.yaml --yes

## The whole test suite (warnings are errors).
test: setup
	$(RUN) pytest -q

lint: setup
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench

typecheck: setup
	$(RUN) mypy

check: lint typecheck

fmt: setup
	$(RUN) ruff format src tests bench
	$(RUN) ruff check --fix src tests bench

bench: setup
	$(RUN) python -m bench.run

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
