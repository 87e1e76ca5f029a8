"""One Ray for all integration tests (ray-tune.md §11): a one-node cluster of its own processes (2 CPUs, no
dashboard, small object store, auth off), so that a test may disconnect from it and let the sweep launcher join
it in-process (``delo.cli.sweep([..., "--address", ...])``), as a user's driver joins a running cluster.

The fake runner (tests/fakes.py, the ``fakes`` fixture) is pickled by value, so Ray workers need not import it.
Every test using these fixtures is in the xdist group "ray" (tests/conftest.py): one Ray per test run.
"""

from __future__ import annotations

import shutil
import tempfile

import fakes
import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """The shared head node (ray.cluster_utils.Cluster); ``.address`` is its GCS address."""
    import ray
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": 150 * 1024**2,
            "temp_dir": temp,
        },
    )
    ray.cloudpickle.register_pickle_by_value(fakes)  # for drivers in this process (ray_session or a launcher)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def ray_session(ray_cluster) -> str:
    """This process connected to the shared cluster as a driver (again after a test disconnected it, or after a
    slow multi-node test used a cluster of its own); returns the GCS address."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().gcs_address != ray_cluster.address:
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address=ray_cluster.address, log_to_driver=False)
    return ray_cluster.address
