"""The names of the runner's report keys, spelled once: the runner writes them, Tune, ASHA, the searcher, the
progress view, TensorBoard and the reports read them (protocol.md §7 defines the quantities)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

TASK = "task"
"""1-based index of the task just finished: ASHA's time attribute, the TensorBoard step."""
AP_SEEN = "ap_seen"
"""Val AP over the tasks seen so far, in every report: what Tune, ASHA and the searcher's per-report hook read."""
FINAL_AP = "final_ap"
FINAL_FG = "final_fg"
TASK_AWARE = "task_aware"
"""The one word for a task-aware read-out (the model told each sample's true task): keys end in ``_task_aware``
(``ap_seen_task_aware``, the ``matrix_task_aware`` result matrix), TensorBoard tags start ``task_aware/``."""
AP_SEEN_TASK_AWARE = f"{AP_SEEN}_{TASK_AWARE}"
FINAL_AP_TASK_AWARE = f"{FINAL_AP}_{TASK_AWARE}"
FINAL_FG_TASK_AWARE = f"{FINAL_FG}_{TASK_AWARE}"
"""Forgetting of the task-aware read-out. Not a report key: the sweep records read it from the runner's
result.json (``task_aware.fg``, ``test_task_aware.fg``) of a completed trial, so tables put it beside FG."""
FINAL_KEYS = (FINAL_AP, FINAL_FG, "final_last", "final_bwt", FINAL_AP_TASK_AWARE)
"""Only in a run's last report (so their presence marks a trial that reached task T)."""
TASK_ROUTING = "task_routing"
"""The runner's result.json field (``test_task_routing`` for the test split) of the final row's routing counts:
``task_routing[i][k]`` = samples of true task i whose task-agnostic read-out inferred task k (T × T ints)."""
SELECTION_KEYS = (AP_SEEN, "acc_new", "fg_seen", "bwt_seen", "key_acc")
KEY_ACC_BY_MISSING = ("key_acc_complete", "key_acc_text_missing", "key_acc_image_missing")
"""Task-key accuracy on one missing type, reported per task next to ``key_acc``."""
PARAMS_TRAINABLE = "params_trainable"
"""Trainable parameters of the latest task (its adapters and head), added to a trial's last report from the
runner's result.json: the size objective of a multi-objective (Pareto) search."""
PARAMS_TOTAL = "params_total"
"""Backbone + every task's adapters and heads, beside PARAMS_TRAINABLE."""
TEST_PREFIX = "test_"
"""The test-split mirror of a key (``test_final_ap``): stored, never used for selection."""
SEARCH_METRICS = (AP_SEEN, FINAL_AP)
"""Allowed search objectives: val AP over seen tasks after each task, or the final val AP (ap_seen after task T)."""
OBJECTIVE_METRICS = (FINAL_AP, PARAMS_TRAINABLE, PARAMS_TOTAL)
"""Allowed objectives of a multi-objective search (each in a finished trial's last report)."""


def test_key(key: str) -> str:
    """``final_ap`` -> ``test_final_ap``."""
    return TEST_PREFIX + key


def is_final(key: str) -> bool:
    """A last-report-only key, val or test (``final_ap``, ``test_final_fg``)."""
    return key.removeprefix(TEST_PREFIX).startswith("final_")


LEGACY_KEYS = {"_oracle": f"_{TASK_AWARE}"}
"""Old key ending -> today's. Files written before the task-aware keys had one name (Tune's result rows, a run's
history and checkpointed result matrices) say ``ap_seen_oracle``, ``final_ap_oracle``, ``matrix_oracle``;
:func:`current_keys` renames them wherever such a file is read."""

V = TypeVar("V")


def current_key(key: str) -> str:
    """``ap_seen_oracle`` -> ``ap_seen_task_aware`` (:data:`LEGACY_KEYS`); any other key as it is."""
    for old, new in LEGACY_KEYS.items():
        if key.endswith(old):
            return key.removesuffix(old) + new
    return key


def current_keys(row: Mapping[str, V]) -> dict[str, V]:
    """A row (or a dict of result matrices) read from a file, with today's key names."""
    return {current_key(key): value for key, value in row.items()}
