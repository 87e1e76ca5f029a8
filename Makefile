# The two commands of README.md. Both create .venv on first use.
PY := .venv/bin/python
TORCH := torch==2.13.0

.PHONY: sweep test venv lint bench

venv: .venv/.installed

.venv/.installed: pyproject.toml
	test -d .venv || python3 -m venv .venv
	# torch on the same command line as the project, so pip never resolves a CUDA build here.
	$(PY) -m pip install -q "$(TORCH)" -e ".[dev]"
	touch .venv/.installed

sweep: venv
	$(PY) launch/sweep.py sweeps/rank_factor.yaml

test: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 \
	RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS=0 $(PY) -m pytest -q tests

lint: venv
	$(PY) -m ruff check delo launch tests
	$(PY) -m ruff format --check delo launch tests

bench: venv
	$(PY) launch/bench.py --out bench.json
