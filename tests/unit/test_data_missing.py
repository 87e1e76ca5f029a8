"""Missing-modality tables: exact counts, both = half/half, stable seeding, atomic concurrent builds, verify."""

import json
import multiprocessing as mp

import pytest

from delo.data import DataError
from delo.data.missing import MissingSpec, build_table, ensure_table, load_table, num_missing, session_codes


def _uids(sizes):
    return [[f"s{s}_{i:06d}" for i in range(n)] for s, n in enumerate(sizes)]


@pytest.mark.parametrize("n", [0, 1, 7, 10, 100, 1003])
@pytest.mark.parametrize("eta", [0.0, 0.1, 0.29, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("kind", ["text", "image", "both"])
def test_exact_counts(n, eta, kind):
    codes = session_codes(MissingSpec("ds", "train", eta, kind, 0), 0, n)
    m = num_missing(n, eta)
    assert m == {0.29: (29 * n) // 100, 0.7: (7 * n) // 10, 0.1: n // 10}.get(eta, int(n * eta))
    assert len(codes) == n and sum(c != 0 for c in codes) == m
    if kind == "text":
        assert codes.count(1) == m
    elif kind == "image":
        assert codes.count(2) == m
    else:
        assert codes.count(2) == m // 2 and codes.count(1) == m - m // 2


def test_paper_example():
    codes = session_codes(MissingSpec("food101", "train", 0.7, "both", 0), 3, 1000)
    assert (codes.count(0), codes.count(1), codes.count(2)) == (300, 350, 350)


def test_seeding_is_stable_and_keyed():
    spec = MissingSpec("food101", "val", 0.7, "both", 0)
    assert session_codes(spec, 2, 500) == session_codes(MissingSpec("food101", "val", 0.7, "both", 0), 2, 500)
    assert build_table(spec, _uids([50, 60])) == build_table(spec, _uids([50, 60]))
    others = [
        session_codes(spec, 3, 500),
        session_codes(MissingSpec("food101", "test", 0.7, "both", 0), 2, 500),
        session_codes(MissingSpec("food101", "val", 0.7, "both", 1), 2, 500),
        session_codes(MissingSpec("mmimdb", "val", 0.7, "both", 0), 2, 500),
    ]
    assert all(o != session_codes(spec, 2, 500) for o in others)
    # a session's codes do not depend on which other sessions exist (construction order)
    assert build_table(spec, _uids([50, 60]))["codes"][1] == build_table(spec, _uids([10, 60, 5]))["codes"][1]


def test_ensure_and_load_verify(tmp_path):
    spec = MissingSpec("ds", "train", 0.5, "both", 0)
    uids = _uids([20, 30])
    path = ensure_table(spec, uids, tmp_path)
    assert path.name == "ds_train_both_eta0.5_seed0.json"
    header = json.loads(path.read_text())["header"]
    assert header["n_per_session"] == [20, 30] and header["both_ratio"] == 0.5 and header["mask_seed"] == 0
    codes = load_table(spec, uids, tmp_path)
    assert [c.count(0) for c in codes] == [10, 15]
    mtime = path.stat().st_mtime_ns
    ensure_table(spec, uids, tmp_path)  # idempotent: a valid table is left alone
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="n_per_session.*the launchers rebuild it"):
        load_table(spec, _uids([20, 31]), tmp_path)
    with pytest.raises(DataError, match="ids_hash"):
        load_table(spec, [uids[0], [u + "x" for u in uids[1]]], tmp_path)
    with pytest.raises(DataError, match="not found; run prepare_data"):
        load_table(MissingSpec("ds", "val", 0.5, "both", 0), uids, tmp_path)
    table = json.loads(path.read_text())
    table["codes"][0] = "1" * 20
    path.write_text(json.dumps(table))
    with pytest.raises(DataError, match="corrupt"):
        load_table(spec, uids, tmp_path)
    ensure_table(spec, uids, tmp_path)  # the driver repairs it
    assert load_table(spec, uids, tmp_path) == codes


def _build(root, barrier):
    barrier.wait()
    ensure_table(MissingSpec("big", "train", 0.7, "both", 0), _uids([60_000, 40_000]), root)


def test_two_processes_build_one_valid_table(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_build, args=(tmp_path, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    spec = MissingSpec("big", "train", 0.7, "both", 0)
    assert [len(c) for c in load_table(spec, _uids([60_000, 40_000]), tmp_path)] == [60_000, 40_000]
    assert sorted(p.name for p in (tmp_path / "missing").iterdir()) == [
        spec.filename,
        spec.filename + ".lock",
    ]
