"""The evaluator's task routing (true task × inferred task counts) on a fake model whose inferred tasks are given:
exact counts after the last row, the same counts through the reuse fast path as through a full pass, and no
forward beyond the ones evaluation already makes."""

import math

import torch

from delo.evaluate import MATRICES, ResultBook, evaluate_task, format_summary
from delo.methods.heads import Prediction
from delo.metric_keys import TASK_ROUTING
from delo.metrics import row_shares

T, C = 3, 2  # tasks, classes per task (global ids 2t, 2t + 1)
# ROUTES[i][j]: the task inferred for each of task i's 5 samples in row j (after task j); rows before i unused
ROUTES = {
    0: [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 2, 0]],
    1: [[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [1, 0, 1, 1, 2]],
    2: [[2, 2, 2, 2, 2], [2, 2, 2, 2, 2], [2, 2, 1, 2, 0]],
}
FINAL_ROUTING = [[3, 1, 1], [1, 3, 1], [1, 1, 3]]  # counts of the last row's ROUTES by inferred task
CPU = torch.device("cpu")


class RoutedModel:
    """predict / infer_task of a frozen_after_task method whose task-agnostic read-out routes each sample as its
    ``route`` column of the current row says; it predicts the right label exactly when routed to the true task."""

    frozen_after_task = True

    def __init__(self):
        self.row = 0
        self.calls: list[tuple[bool, list[int]]] = []  # (task_aware, the task each forwarded sample used)

    def infer_task(self, batch):
        return batch["route"][:, self.row].clone()  # (B,)

    def predict(self, batch, task_aware=False):
        task = batch["task"] if task_aware else self.infer_task(batch)
        self.calls.append((task_aware, task.tolist()))
        own = batch["labels"] % C  # (B,) the label's column within its task
        scores = torch.full((task.shape[0], T * C), -math.inf)
        for b, (k, c) in enumerate(zip(task.tolist(), own.tolist(), strict=True)):
            scores[b, C * k : C * (k + 1)] = 0.0
            scores[b, C * k + c] = 1.0  # right iff k is the true task
        return Prediction(task=task, scores=scores)


def _loader(i: int, batch_size: int = 2) -> list[dict]:
    """Task i's 5 samples in batches of 2 (so the reuse path's spans cross batches)."""
    n = 5
    route = torch.tensor(ROUTES[i]).T  # (5, rows)
    labels = torch.tensor([C * i + s % C for s in range(n)])
    missing = torch.tensor([s % 3 for s in range(n)])
    return [
        {
            "route": route[s : s + batch_size],
            "labels": labels[s : s + batch_size],
            "missing": missing[s : s + batch_size],
            "task": torch.full((min(batch_size, n - s),), i),
        }
        for s in range(0, n, batch_size)
    ]


def _evaluate_all_rows(reuse_frozen: bool) -> tuple[ResultBook, RoutedModel, list]:
    model, book, reuse, calls_last_row = RoutedModel(), ResultBook(T), {}, []
    for j in range(T):
        model.row = j
        for i in range(j + 1):
            model.calls = []
            previous = reuse.get(i) if reuse_frozen and i < j else None
            outcomes, reuse[i] = evaluate_task(model, _loader(i), [C * i, C * i + 1], False, CPU, previous)
            book.fill(j, i, outcomes)
            if j == T - 1:
                calls_last_row.append(model.calls)
    return book, model, calls_last_row


def test_routing_counts_of_the_last_row_are_exact():
    book, _, calls = _evaluate_all_rows(reuse_frozen=False)
    assert book.summary()[TASK_ROUTING] == FINAL_ROUTING
    # the counts' diagonal is the last row of task-key accuracy
    assert book.data["key_accuracy"][-1] == [60.0, 60.0, 60.0]
    # one task-agnostic forward per sample, and the task-aware one only for the 2 misrouted samples of each task
    for i, task_calls in enumerate(calls):
        agnostic = [t for aware, ts in task_calls if not aware for t in ts]
        aware = [t for aware, ts in task_calls if aware for t in ts]
        assert agnostic == ROUTES[i][-1] and aware == [i, i]


def test_the_reuse_path_gives_the_same_counts_and_forwards_only_rerouted_samples():
    full, _, _ = _evaluate_all_rows(reuse_frozen=False)
    reused, _, calls = _evaluate_all_rows(reuse_frozen=True)
    assert reused.summary()[TASK_ROUTING] == FINAL_ROUTING
    assert reused.data == full.data  # every matrix, the routing counts included
    # last row: task 0 moves sample 1 to its own task (no forward) and sample 3 to task 2 (one forward as routed);
    # task 1 moves sample 4 to task 2; task 2 is new and forwarded in full (5 agnostic, 2 misrouted re-run)
    assert calls[0] == [(True, [2])] and calls[1] == [(True, [2])]
    assert calls[2] == [(False, [2, 2]), (False, [1, 2]), (True, [2]), (False, [0]), (True, [2])]


def test_routing_rows_follow_the_latest_row_and_an_old_checkpoint_resumes():
    model, book = RoutedModel(), ResultBook(T)
    model.row = 1
    for i in range(2):
        outcomes, _ = evaluate_task(model, _loader(i), [C * i, C * i + 1], False, CPU)
        book.fill(1, i, outcomes)
    assert book.data[TASK_ROUTING] == [[2, 3, 0], [1, 4, 0], [None] * T]
    assert TASK_ROUTING not in book.summary()  # task 3 not evaluated yet: no partial routing in result.json
    # a checkpoint written before task_routing existed: the book adds it, empty
    old = {name: data for name, data in book.data.items() if name != TASK_ROUTING}
    resumed = ResultBook(T, old)
    assert set(resumed.data) == set(MATRICES) and resumed.data[TASK_ROUTING] == [[None] * T] * T


def test_an_empty_split_routes_nothing():
    book = ResultBook(1)
    outcomes, reuse = evaluate_task(RoutedModel(), [], [0, 1], False, CPU)
    assert outcomes["agnostic"].task.shape == (0,) and reuse.inferred.shape == (0,)
    book.fill(0, 0, outcomes)
    assert book.summary()[TASK_ROUTING] == [[0]]


def test_row_shares_and_the_printed_summary():
    assert row_shares([[3, 1], [0, 0], [1, 3]]) == [[75.0, 25.0], [None, None], [25.0, 75.0]]
    book, _, _ = _evaluate_all_rows(reuse_frozen=True)
    text = format_summary({"split": "val", **book.summary()})
    title = "task routing (val): % of each true task's samples (rows) by inferred task (columns)"
    lines = text.splitlines()
    at = lines.index(title)
    assert lines[at + 1 : at + 5] == [
        "true\\inf      T1     T2     T3",
        "      T1   60.00  20.00  20.00",
        "      T2   20.00  60.00  20.00",
        "      T3   20.00  20.00  60.00",
    ]
