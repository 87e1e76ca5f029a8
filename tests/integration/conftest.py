"""One Ray for all integration tests (ray-tune.md §11): 2 CPUs, no dashboard, small object store, auth off.

The fake runner (tests/fakes.py, the ``fakes`` fixture) is pickled by value, so Ray workers need not import it.
"""

from __future__ import annotations

import shutil
import tempfile

import fakes
import pytest


def _start_ray(temp: str) -> str:
    import ray

    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=150 * 1024**2,
        log_to_driver=False,
        _temp_dir=temp,
    )
    ray.cloudpickle.register_pickle_by_value(fakes)
    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def _ray_temp():
    import ray

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    yield temp
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_session(_ray_temp) -> str:
    """The GCS address of the shared Ray; started on first use (again if a slow multi-node test stopped it)."""
    import ray

    if not ray.is_initialized():
        _start_ray(_ray_temp)
    return ray.get_runtime_context().gcs_address
