"""Multi-node placement with ray.cluster_utils.Cluster: a head and 2 worker nodes with one logical GPU each
(no CUDA). Trials asking {"cpu": 1, "gpu": 0.5} run two per node, across both nodes, at the same time (each
waits at a barrier until all four have arrived); the trainable falls back to CPU. Storage is a local folder every
node of this one-machine cluster shares."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

SPEC = """name: multinode
grid:
  variants: {a: {}, b: {model.E: 8}}
  seeds: [0, 1]
resources: {cpu: 1, gpu: 0.5}
max_concurrent: 4
"""


def placed_run(cfg, out_dir, on_task_end):
    """Records where the trial ran. Two tasks; before the first, the trial waits at a barrier in the experiment
    folder until all four trials have arrived, which they only can if all four run at the same time."""
    import ray
    import torch

    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    barrier = out_dir.parents[1] / "barrier"  # <experiment>/<trial>/<trial> is out_dir
    barrier.mkdir(exist_ok=True)
    (barrier / out_dir.name).touch()
    give_up = time.time() + 300  # a guard against hanging, not a measurement
    while len(list(barrier.iterdir())) < 4:
        if time.time() > give_up:
            raise RuntimeError(f"only {sorted(p.name for p in barrier.iterdir())} ran at once")
        time.sleep(0.1)
    for k in range(2):
        metrics = {"task": k + 1, "ap_seen": 50.0}
        if k == 1:
            metrics["final_ap"] = 50.0
            where = {
                "node": ray.get_runtime_context().get_node_id(),
                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cuda": torch.cuda.is_available(),
                "gpu_ids": ray.get_gpu_ids(),
            }
            (out_dir / "where.json").write_text(json.dumps(where))
        on_task_end(metrics, out_dir / "checkpoints")
    return {}


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # a Ray of its own: not beside the shared one
def test_half_gpu_trials_run_two_per_node(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from delo.sweep.driver import build_tuner
    from delo.sweep.spec import load_sweep

    if ray.is_initialized():  # the integration tests' shared Ray; their fixture restarts it when needed
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": 100 * 1024**2,
        },
    )
    workers = [cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=100 * 1024**2) for _ in range(2)]
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        spec = tmp_path / "spec.yaml"
        profile = Path(__file__).resolve().parents[2] / "sweeps" / "profiles" / "tiny_test.yaml"
        spec.write_text(f"base: {{file: {profile}}}\n" + SPEC)
        sweep = load_sweep(spec, storage=tmp_path / "shared")
        grid = build_tuner(sweep, run_fn=placed_run, progress_interval_s=1e9).fit()
        assert len(grid) == 4 and not grid.errors
        where = [
            json.loads(p.read_text()) for p in (tmp_path / "shared" / "multinode").glob("*/*/where.json")
        ]
        assert len(where) == 4
        nodes = [w["node"] for w in where]
        assert sorted(nodes.count(n) for n in set(nodes)) == [2, 2]
        assert set(nodes) == {w.node_id for w in workers}
        assert all(w["gpu_ids"] and not w["cuda"] for w in where)  # a GPU share, no CUDA: ran on CPU
        # all four ran at once: each passed the barrier, which needs all four
        assert len(list((tmp_path / "shared" / "multinode" / "barrier").iterdir())) == 4
    finally:
        ray.shutdown()
        cluster.shutdown()
