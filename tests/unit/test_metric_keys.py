"""Task-aware read-outs have one name (``*_task_aware``); files written with the old ``*_oracle`` keys read as
today's keys."""

from delo import metrics
from delo.evaluate import MATRICES, ResultBook
from delo.metric_keys import AP_SEEN_TASK_AWARE, FINAL_AP_TASK_AWARE, FINAL_KEYS, current_key, current_keys
from delo.tblog import metric_tag, metric_tags


def test_task_aware_names():
    assert (AP_SEEN_TASK_AWARE, FINAL_AP_TASK_AWARE) == ("ap_seen_task_aware", "final_ap_task_aware")
    assert FINAL_AP_TASK_AWARE in FINAL_KEYS
    assert "matrix_task_aware" in MATRICES and "complete_task_aware" in MATRICES
    assert not any("oracle" in name for name in (*MATRICES, *FINAL_KEYS, *metric_tags(test=True)))
    assert metric_tag(FINAL_AP_TASK_AWARE) == "task_aware/final_ap"
    assert metric_tag("test_ap_seen_task_aware") == "test/ap_seen_task_aware"


def test_legacy_keys_read_as_todays():
    assert current_key("ap_seen_oracle") == "ap_seen_task_aware"
    assert current_key("test_final_ap_oracle") == "test_final_ap_task_aware"
    assert current_key("matrix_oracle") == "matrix_task_aware"
    assert current_key("image_missing_oracle") == "image_missing_task_aware"
    assert current_key("ap_seen") == "ap_seen" and current_key("final_ap_task_aware") == "final_ap_task_aware"
    row = {"task": 3, "ap_seen": 50.0, "ap_seen_oracle": 51.0, "final_ap_oracle": 52.0}
    assert current_keys(row) == {
        "task": 3,
        "ap_seen": 50.0,
        "ap_seen_task_aware": 51.0,
        "final_ap_task_aware": 52.0,
    }


def test_a_result_book_checkpointed_with_the_old_matrix_names_resumes():
    """A runner checkpoint (state.pt) written before the rename holds matrix_oracle etc."""
    legacy = {name.replace("_task_aware", "_oracle"): metrics.empty_matrix(2) for name in MATRICES}
    legacy["matrix"][0][0], legacy["matrix_oracle"][0][0] = 60.0, 70.0
    book = ResultBook(2, legacy)
    assert set(book.data) == set(MATRICES)
    assert book.task_metrics(0)["ap_seen_task_aware"] == 70.0
    assert book.task_metrics(0)["ap_seen"] == 60.0 and book.data["matrix_task_aware"][1][1] is None
