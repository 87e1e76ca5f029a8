"""Cluster files: the Ray cluster-launcher config passes Ray's own schema; the KubeRay manifests are well formed
and run the sweep launcher with shared storage; sweep storage must be a shared filesystem path."""

from pathlib import Path

import pytest
import ray
import yaml

from delo.config import ConfigError
from delo.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_launcher_config_validates():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(yaml.safe_load((ROOT / "launch" / "cluster.yaml").read_text()))
    validate_config(cfg)
    assert cfg["provider"]["type"] == "local"
    assert any("pip install" in c and "-e" in c for c in cfg["setup_commands"])
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


@pytest.mark.parametrize(
    "name,kinds", [("raycluster.yaml", ["RayCluster", "PersistentVolumeClaim"]), ("rayjob.yaml", ["RayJob"])]
)
def test_kuberay_manifests(name, kinds):
    docs = list(yaml.safe_load_all((ROOT / "launch" / "k8s" / name).read_text()))
    assert [d["kind"] for d in docs] == kinds
    spec = docs[0]["spec"]
    cluster = spec.get("rayClusterSpec", spec)
    # KubeRay starts the cluster at rayVersion; a driver of another Ray version cannot join it
    assert cluster["rayVersion"] == ray.__version__ and cluster["authOptions"]["mode"] == "token"
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "shared", "mountPath": "/shared"} in worker["volumeMounts"]
    if name == "rayjob.yaml":
        assert "launch/sweep.py" in spec["entrypoint"] and "--storage /shared/" in spec["entrypoint"]
        assert spec["shutdownAfterJobFinishes"] is True


def test_storage_must_be_a_filesystem_path():
    with pytest.raises(ConfigError, match="filesystem path that every node shares"):
        load_sweep(ROOT / "sweeps/smoke.yaml", storage="s3://bucket/sweeps")
