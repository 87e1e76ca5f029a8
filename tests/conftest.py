"""Shared test setup: offline, quiet, and every cache in a temp folder that the session removes; the tiny
synthetic world every training test shares; the xdist group of the tests that run Ray trials."""

import os
import shutil
import tempfile
from pathlib import Path

import fakes as _fakes
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_PROFILE = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"

# Set before anything imports transformers or Ray, and inherited by every subprocess a test starts. Under xdist
# the controller loads this file first, so its workers inherit its DELO_CACHE and share one cache (builds of a
# synthetic world are file-locked, delo.data.synthetic.ensure_synthetic).
_CACHE = None
if "DELO_CACHE" not in os.environ:
    _CACHE = Path(tempfile.mkdtemp(prefix="delo-test-cache-"))
    os.environ["DELO_CACHE"] = str(_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS"] = "0"
os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as delo/__init__.py, for tests that import torch first

# Ray's log handler keeps the sys.stderr of `import ray`. Imported here, that is pytest's session-long capture
# stream; imported first by a test using capsys (an in-process launcher), it would be that test's stream, closed
# when the test ends, and every later Ray log line would print a "Logging error" traceback into later tests.
import ray  # noqa: E402, F401


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_configure(config):
    if config.getoption("dist", "no") == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"pytest {pytest.__version__} hides xdist_group marks from pytest-xdist (pytest-xdist#1386): the Ray "
                "tests run in several workers at once, and slowly. Reinstall the dev extra (pytest < 9.2): make venv."
            ),
            stacklevel=2,
        )


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """GPU tests skip without CUDA. Tests on the shared Ray cluster (tests/integration/conftest.py) form one xdist
    group: under ``--dist loadgroup`` (make test) they run one after another in one worker, as the slow tests
    that start clusters of their own mark themselves, since two Rays running trials at once thrash 2 cores (a
    module whose module-scoped fixture is costly marks itself a group too, so that one worker builds it once)."""
    import torch

    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["DELO_CACHE"])


@pytest.fixture(scope="session")
def tiny_world():
    """The run config of sweeps/profiles/tiny_test.yaml with its synthetic world built (a tenth of the embedded
    default's, about a second): built once per session into DELO_CACHE and shared by every test that trains on
    the tiny profile (``data.synthetic`` knobs as tiny_test's, whatever the other overrides)."""
    from delo.config import load_config
    from delo.data import prepare_data

    cfg = load_config(TINY_PROFILE)
    prepare_data(cfg)
    return cfg


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib Figure saved while the test runs, in the order saved: a spy on Figure.savefig (the file
    is written as before), so a test reads what a plot shows (image, bar, line and point data, labels) from the
    figure object rather than the PNG's bytes."""
    from matplotlib.figure import Figure

    saved = []
    save = Figure.savefig

    def spy(self, *args, **kwargs):
        saved.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return saved


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
