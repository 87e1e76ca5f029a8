"""Shared test setup: offline, quiet, and every cache in a temp folder that the session removes."""

import os
import shutil
import tempfile
from pathlib import Path

import fakes as _fakes
import pytest

# Set before anything imports transformers or Ray, and inherited by every subprocess a test starts.
_CACHE = Path(tempfile.mkdtemp(prefix="delo-test-cache-"))
os.environ.setdefault("DELO_CACHE", str(_CACHE))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS"] = "0"
os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as delo/__init__.py, for tests that import torch first


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["DELO_CACHE"])


@pytest.fixture
def fakes():
    """tests/fakes.py: the fake runner and the spec writer (test modules cannot import a conftest by name)."""
    import types

    return types.SimpleNamespace(
        fake_run=_fakes.fake_run,
        slow_fake_run=_fakes.slow_fake_run,
        write_spec=_fakes.write_spec,
        fake_score=_fakes.fake_score,
        path=Path(_fakes.__file__),
    )
