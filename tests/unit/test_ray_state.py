"""--resume checks Tune's own state files first: a file cut short by a killed driver is replaced by Ray's intact
staging copy, or refused with exit 2 naming it (delo.sweep.ray_state)."""

import pickle

import pytest

from delo.config import DamagedFileError
from delo.sweep.ray_state import problem_of, repair_ray_state

NAME = "basic-variant-state-2026-11-29_07-00-00.json"


def _experiment(tmp_path):
    exp = tmp_path / "storage" / "rank_factor"
    exp.mkdir(parents=True)
    good = pickle.dumps({"_counter": 18, "_finished": True})
    (exp / "basic-variant-state-2026-11-28_07-00-00.json").write_bytes(good)  # an older session's, intact
    (exp / NAME).write_bytes(good[: len(good) // 2])  # the newest, cut short
    return exp, good


def _staging(tmp_path, exp, payload):
    folder = tmp_path / "ray" / "session_2026-11-29_06-59" / "artifacts" / "2026-11-29_07-00" / exp.name
    (folder / "driver_artifacts").mkdir(parents=True)
    (folder / "driver_artifacts" / NAME).write_bytes(payload)
    return tmp_path / "ray"


def test_a_truncated_state_file_is_replaced_by_the_staging_copy(tmp_path, capsys):
    exp, good = _experiment(tmp_path)
    assert problem_of(exp / NAME) is not None
    lines = repair_ray_state(exp, _staging(tmp_path, exp, good))
    assert (exp / NAME).read_bytes() == good
    assert len(lines) == 1 and lines[0].startswith(f"warning: {exp / NAME}: damaged")
    assert capsys.readouterr().err.strip() == lines[0]


def test_without_an_intact_copy_resume_is_refused_naming_the_file(tmp_path):
    exp, good = _experiment(tmp_path)
    ray_temp = _staging(tmp_path, exp, good[:3])  # the staging copy is damaged too
    before = (exp / NAME).read_bytes()
    with pytest.raises(DamagedFileError) as info:
        repair_ray_state(exp, ray_temp)
    assert info.value.path == exp / NAME
    assert "--resume cannot continue this sweep" in str(info.value)
    assert (exp / NAME).read_bytes() == before  # nothing touched


def test_intact_files_are_left_alone(tmp_path):
    exp, good = _experiment(tmp_path)
    (exp / NAME).write_bytes(good)
    assert repair_ray_state(exp, None) == []
    assert (exp / NAME).read_bytes() == good
