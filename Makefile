# One task runner; CI calls these targets verbatim (.ci/run).
# Every target sets itself up: uv (pinned) is installed if missing, then .venv from uv.lock.
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --locked --all-extras

.PHONY: setup demo test check lint typecheck fmt bench clean

$(UV):  # uv pinned by version and hash (tools/uv-bootstrap.txt)
	python3 -m pip install --quiet --user --require-hashes -r tools/uv-bootstrap.txt

# --compile-bytecode: once at install, not in every process (litellm is ~200 MB of source).
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --all-extras --compile-bytecode
	touch $@

setup: .venv/.synced

## The main job: optimize the bundled example prompt on the embedded model.
demo: setup
	$(RUN) promptlift optimize examples/sentiment/config.yaml --yes

## The whole test suite (warnings are errors), after the Debian packages it uses (redis-server, chromium).
test: setup
	bash tools/system-deps.sh
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

## The benchmarks behind BENCHMARKS.md (each writes bench/results/NAME.json); peers: make bench-peers.
bench: setup
	$(RUN) python -m bench.local_model
	$(RUN) python -m bench.local_agent
	$(RUN) python -m bench.client_overhead
	$(RUN) python -m bench.client_throughput
	$(RUN) python -m bench.seeds
	$(RUN) python -m bench.judge
	$(RUN) python -m bench.plan_start
	$(RUN) python -m bench.agent
	$(RUN) python -m bench.redis_cache

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

## Benchmarks against the peers (issue 7; BENCHMARKS.md). The peers live in their own
## environments under bench/, installed from hashed requirement files, never in uv.lock.
PEERS_PY := bench/.venv-peers/bin/python
OPIK_PY := bench/.venv-opik/bin/python
# The whole grid by default; BENCHMARKS.md gives the reduced arguments its tables were made with.
BENCH_PEERS_ARGS ?=

.PHONY: bench-peers bench-peers-smoke

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE=1 (set on these machines) nothing caches .pyc
# files, and every process then compiled litellm from source (`import litellm` took 17 s here).
# --no-config: uv would otherwise add pyproject.toml's unpinned constraint (litellm!=1.82.7,...) to
# these installs, which --require-hashes refuses; the hashed files pin litellm exactly already.
bench/.venv-peers/.installed: bench/peers/requirements.txt | $(UV)
	$(UV) venv -q --allow-existing -p 3.11 bench/.venv-peers
	$(UV) pip install -q --no-config --compile-bytecode -p $(PEERS_PY) --require-hashes -r bench/peers/requirements.txt
	$(UV) pip install -q -p $(PEERS_PY) --no-deps -e .
	touch $@

bench/.venv-opik/.installed: bench/opik/requirements.txt | $(UV)
	$(UV) venv -q --allow-existing -p 3.11 bench/.venv-opik
	$(UV) pip install -q --no-config --compile-bytecode -p $(OPIK_PY) --require-hashes -r bench/opik/requirements.txt
	touch $@

bench-peers: setup bench/.venv-peers/.installed bench/.venv-opik/.installed
	PYTHONPATH=. $(PEERS_PY) -m bench.optimizers $(BENCH_PEERS_ARGS)
	PYTHONPATH=. $(PEERS_PY) -m bench.clients
	PYTHONPATH=. $(OPIK_PY) -m bench.opik.probe

## The benchmarks' smoke versions (part of `make test` too): no peer installed, a few seconds.
bench-peers-smoke: setup
	$(RUN) pytest -q tests/test_bench_smoke.py
