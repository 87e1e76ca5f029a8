"""launch/check_views.py without a browser: the swept keys come from the trials' own configs, bad input exits 2."""

import json

import pytest

from delo.tools.viewcheck import ViewCheckError, main, swept_keys


def _trial(exp, name, config):
    (exp / name / name).mkdir(parents=True)
    (exp / name / name / "result.json").write_text(json.dumps({"config": config}))


def test_swept_keys_are_the_config_values_that_differ_between_trials(tmp_path):
    base = {"seed": 0, "model": {"E": 16, "r": 4, "method": "delo"}, "data": {"name": "synthetic"}}
    _trial(tmp_path, "a", base)
    _trial(tmp_path, "b", {**base, "seed": 1, "model": {**base["model"], "r": 2}})
    _trial(tmp_path, "c", {**base, "model": {**base["model"], "E": 32}})
    assert swept_keys(tmp_path) == ["model.E", "model.r", "seed"]


def test_one_finished_trial_is_not_enough_to_check(tmp_path):
    _trial(tmp_path, "a", {"seed": 0})
    with pytest.raises(ViewCheckError, match="fewer than two finished trials"):
        swept_keys(tmp_path)


def test_a_folder_that_is_not_a_sweep_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), "--chromium", "/bin/true"]) == 2
    assert f"{tmp_path}: not a sweep folder (no sweep_spec.yaml)" in capsys.readouterr().err
