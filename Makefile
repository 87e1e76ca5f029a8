# The two commands of README.md (and make test-fast, its quick tier for development). All create .venv on first use.
PY := .venv/bin/python
TORCH := torch==2.13.0
# Parallel workers (pytest-xdist). The tests that run Ray trials share one worker, one after another (xdist group
# "ray", tests/conftest.py): two Rays running trials at once thrash 2 cores.
PYTEST := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 \
	RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS=0 $(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadgroup

.PHONY: sweep test test-fast venv lint bench

venv: .venv/.installed

.venv/.installed: pyproject.toml
	test -d .venv || python3 -m venv .venv
	# torch on the same command line as the project, so pip never resolves a CUDA build here.
	$(PY) -m pip install -q "$(TORCH)" -e ".[dev]"
	touch .venv/.installed

sweep: venv
	$(PY) launch/sweep.py sweeps/rank_factor.yaml

# The whole suite (CI): about 5-7 minutes on 2 quiet cores.
test: venv
	$(PYTEST) tests

# Unit and fast integration tests, without those marked slow: about 2 minutes on 2 quiet cores.
test-fast: venv
	$(PYTEST) -m "not slow" tests

lint: venv
	$(PY) -m ruff check delo launch tests
	$(PY) -m ruff format --check delo launch tests

bench: venv
	$(PY) launch/bench.py --out bench.json
