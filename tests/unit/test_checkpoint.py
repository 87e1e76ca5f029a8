"""Checkpoint files: plain data, atomic writes, refusal of foreign checkpoints, RNG round trip."""

import pickle
import random

import numpy as np
import pytest
import torch

from delo import checkpoint as ck
from delo import runtime
from delo.config import ConfigError, DamagedFileError, load_config


def test_task_and_state_round_trip_weights_only(tmp_path):
    d = ck.checkpoint_dir(tmp_path)
    tensors = {"pool.A": torch.randn(4, 8), "head.weight": torch.randn(3, 8, requires_grad=True)}
    path = ck.save_task(d, 1, tensors)
    assert path == tmp_path / "checkpoints" / "task_2.pt"
    back = ck.load_task(d, 1)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], tensors[k].detach()) for k in tensors)
    assert not back["head.weight"].requires_grad

    assert ck.load_state(d) is None
    state = {
        **dict.fromkeys(ck.STATE_KEYS, 0),
        "next_task": 2,
        "matrix": [[1.0, None], [float("nan"), 2.0]],
        "keys": torch.zeros(2, 8),
    }
    ck.save_state(d, state)
    loaded = ck.load_state(d)
    assert loaded["next_task"] == 2 and loaded["matrix"][0] == [1.0, None]
    assert sorted(p.name for p in d.iterdir()) == ["state.pt", "task_2.pt"]  # no temp files left


def test_failed_save_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.pt"
    ck.atomic_save({"a": 1}, target)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        ck.atomic_save({"bad": lambda: None}, target)
    assert torch.load(target, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_task_file_must_hold_its_task(tmp_path):
    ck.save_task(tmp_path, 0, {"x": torch.ones(1)})
    (tmp_path / "task_1.pt").rename(tmp_path / "task_2.pt")
    with pytest.raises(DamagedFileError, match="expected 1"):
        ck.load_task(tmp_path, 1)
    with pytest.raises(
        DamagedFileError, match=r"task_6.pt: damaged file \(missing although .*state.pt lists it"
    ):
        ck.load_task(tmp_path, 5)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b[: len(b) // 2], "PytorchStreamReader failed reading zip archive"),
        (lambda b: b"garbage", "UnpicklingError: WeightsUnpickler error: Unsupported operand 103"),
        (lambda b: b"", "(empty file)"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_damaged_files_name_the_file_problem_and_remedy(tmp_path, damage, problem):
    ck.save_task(tmp_path, 0, {"x": torch.ones(1)})
    ck.save_state(tmp_path, dict.fromkeys(ck.STATE_KEYS, 0))
    for name, call in (
        ("task_1.pt", lambda: ck.load_task(tmp_path, 0)),
        ("state.pt", lambda: ck.load_state(tmp_path)),
    ):
        path = tmp_path / name
        path.write_bytes(damage(path.read_bytes()))
        with pytest.raises(DamagedFileError) as err:
            call()
        text = str(err.value)
        assert text.startswith(f"{path}: damaged file (") and problem in text and "\n" not in text
        assert f"remove {tmp_path} (or use another output folder)" in text.lower()
        assert err.value.path == path


def test_state_of_another_shape_is_damaged(tmp_path):
    ck.atomic_save([1, 2], tmp_path / "state.pt")
    with pytest.raises(DamagedFileError, match="holds a list, not a checkpoint"):
        ck.load_state(tmp_path)
    ck.atomic_save({"format": ck.FORMAT_VERSION, "next_task": 1}, tmp_path / "state.pt")
    with pytest.raises(DamagedFileError, match="lacks num_tasks, rng"):
        ck.load_state(tmp_path)


def test_foreign_config_or_data_is_refused_with_the_differing_keys(tmp_path):
    a = load_config(overrides=["model.E=8", "model.r=2"])
    b = load_config(overrides=["model.E=4", "model.r=2", "train.lr=0.01", "debug.fail_at_task=1"])
    state = {"config": a.to_dict(), "config_hash": a.hash(), "fingerprint": "f1"}
    ck.check_compatible(state, a.to_dict(), a.hash(), "f1", tmp_path)  # same run: fine
    # debug knobs do not count
    a_debug = load_config(overrides=["model.E=8", "model.r=2", "debug.nan_at_step=3"])
    ck.check_compatible(state, a_debug.to_dict(), a_debug.hash(), "f1", tmp_path)

    with pytest.raises(ck.CheckpointMismatchError) as err:
        ck.check_compatible(state, b.to_dict(), b.hash(), "f1", tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert str(tmp_path) in msg and "model.E: 8 -> 4" in msg and "train.lr" in msg and "debug" not in msg

    with pytest.raises(ck.CheckpointMismatchError, match="data fingerprint differs"):
        ck.check_compatible(state, a.to_dict(), a.hash(), "f2", tmp_path)


def test_diff_keys_nested():
    assert ck.diff_keys({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "e": 3}) == ["a.c", "d", "e"]


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    runtime.seed_everything(7)
    gen = torch.Generator().manual_seed(11)
    ck.atomic_save({"rng": runtime.capture_rng(gen)}, tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), torch.rand(2), torch.randperm(9, generator=gen))
    runtime.seed_everything(99)
    gen.manual_seed(0)
    runtime.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], gen)
    again = (random.random(), float(np.random.rand()), torch.rand(2), torch.randperm(9, generator=gen))
    assert first[:2] == again[:2]
    assert torch.equal(first[2], again[2]) and torch.equal(first[3], again[3])


def test_derive_seed_is_stable_and_distinct():
    assert runtime.derive_seed(0, "train", 1) == runtime.derive_seed(0, "train", 1)
    assert runtime.derive_seed(0, "train", 1) != runtime.derive_seed(0, "train", 2)
    assert 0 <= runtime.derive_seed(5, "x") < 2**63
