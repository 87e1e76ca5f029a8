"""Task-Key Memory on hand-built queries: the EMA rule and the scoring rule of both key forms (method.md §6)."""

import math

import pytest
import torch

from delo.vilt.task_keys import TaskKeyMemory

COMPLETE, TEXT_MISSING, IMAGE_MISSING = 0, 1, 2


def _memory(form: str, tasks: int, dim: int = 2) -> TaskKeyMemory:
    tkm = TaskKeyMemory(dim, form)
    for _ in range(tasks):
        tkm.add_task()
    return tkm


def test_per_modality_ema_uses_only_real_modalities():
    tkm = _memory("per_modality", 1)
    assert tkm.keys.shape == (1, 2, 2)
    missing = torch.tensor([COMPLETE, TEXT_MISSING, IMAGE_MISSING, TEXT_MISSING])
    query = torch.tensor([  # (B, 2 [q_v, q_t], d)
        [[2.0, 0.0], [0.0, 2.0]],
        [[4.0, 2.0], [80.0, 80.0]],  # text missing: its q_t (a dummy's) never reaches key^t
        [[100.0, 100.0], [2.0, 4.0]],  # image missing: its q_v never reaches key^v
        [[0.0, 4.0], [60.0, 60.0]],
    ])  # fmt: skip
    tkm.update(0, query, missing, beta=0.5)
    # key^v = 0.5 * mean(q_v of 0, 1, 3) = 0.5 * (2, 2); key^t = 0.5 * mean(q_t of 0, 2) = 0.5 * (1, 3)
    assert torch.equal(tkm.keys[0], torch.tensor([[1.0, 1.0], [0.5, 1.5]]))
    only_image_missing = torch.tensor([[[100.0, 100.0], [4.0, 2.0]]])
    tkm.update(0, only_image_missing, torch.tensor([IMAGE_MISSING]), beta=0.5)
    assert torch.equal(tkm.keys[0], torch.tensor([[1.0, 1.0], [2.25, 1.75]]))  # key^v unchanged
    only_text_missing = torch.tensor([[[3.0, 1.0], [100.0, 100.0]]])
    tkm.update(0, only_text_missing, torch.tensor([TEXT_MISSING]), beta=0.5)
    assert torch.equal(tkm.keys[0], torch.tensor([[2.0, 1.0], [2.25, 1.75]]))  # key^t unchanged


def test_per_modality_update_touches_only_the_trained_task():
    tkm = _memory("per_modality", 2)
    tkm.update(1, torch.ones(1, 2, 2), torch.tensor([COMPLETE]), beta=0.0)
    assert torch.equal(tkm.keys[0], torch.zeros(2, 2)) and torch.equal(tkm.keys[1], torch.ones(2, 2))


def test_per_modality_scores_use_the_modalities_a_sample_has():
    tkm = _memory("per_modality", 3)
    # task 0: key^v (1, 0), key^t (0, 1); task 1: key^v (0, 1), key^t (1, 0); task 2 never trained (zero keys)
    tkm.keys[0] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tkm.keys[1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    query = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]).expand(
        3, 2, 2
    )  # q_v (1, 0), q_t (1, 1) for every sample
    scores = tkm.scores(query, torch.tensor([COMPLETE, TEXT_MISSING, IMAGE_MISSING]))
    h = 1 / math.sqrt(2)  # cos((1, 1), (0, 1)) = cos((1, 1), (1, 0))
    expected = torch.tensor([
        [(1 + h) / 2, (0 + h) / 2, 0.0],  # complete: mean of the vision and the text cosine
        [1.0, 0.0, 0.0],  # text missing: cos(q_v, key^v) only
        [h, h, 0.0],  # image missing: cos(q_t, key^t) only
    ])  # fmt: skip
    torch.testing.assert_close(scores, expected)
    assert tkm.infer(query[:2], torch.tensor([COMPLETE, TEXT_MISSING])).tolist() == [0, 0]
    # per sample, no batch vote: a text q_t closer to key^t_1 sends that image-missing sample to task 1
    mixed = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.1]]])
    assert tkm.infer(mixed, torch.tensor([COMPLETE, IMAGE_MISSING])).tolist() == [0, 1]


def test_shared_form_is_the_papers_rule():
    tkm = _memory("shared", 2)
    assert tkm.keys.shape == (2, 2)
    u = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    raw = torch.zeros(2, 2, 2)
    guided = torch.stack([u + 1.0, u - 1.0], dim=1)  # (B, 2, d): u is the mean of the two guided queries
    assert torch.equal(tkm.query(raw, guided), u)
    # every sample counts, whatever its missing code
    tkm.update(1, u, torch.tensor([TEXT_MISSING, IMAGE_MISSING]), beta=0.5)
    assert torch.equal(tkm.keys, torch.tensor([[0.0, 0.0], [0.5, 1.0]]))
    scores = tkm.scores(torch.tensor([[1.0, 2.0], [1.0, 0.0]]), torch.tensor([IMAGE_MISSING, COMPLETE]))
    torch.testing.assert_close(scores, torch.tensor([[0.0, 1.0], [0.0, 1 / math.sqrt(5)]]))


def test_per_modality_query_is_the_raw_pair():
    tkm = _memory("per_modality", 1)
    raw, guided = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    assert tkm.query(raw, guided) is raw


def _train_on(
    tkm: TaskKeyMemory, task: int, q_v: torch.Tensor, q_t: torch.Tensor, missing: list[int]
) -> None:
    """One batch of task ``task`` in the form's own query (u is the guided mean)."""
    missing = torch.tensor(missing)
    raw = torch.stack([q_v, q_t]).expand(len(missing), 2, -1)  # (B, 2, d)
    guide = torch.stack([(missing == 2).long(), (missing != 1).long()], dim=1)  # as delo.vilt.context
    guided = raw.gather(1, guide[:, :, None].expand(-1, -1, raw.shape[-1]))
    tkm.update(task, tkm.query(raw, guided), missing, beta=0.0)


@pytest.mark.parametrize("form, expected", [("shared", 1), ("per_modality", 0)])
def test_image_missing_sample_goes_to_its_task_only_with_per_modality_keys(form, expected):
    """Queries = a large modality offset + a small task signal. Task 0 trained on mostly text-missing samples,
    task 1 on mostly image-missing ones: a shared key then mostly encodes the modality mix, and task 0's
    image-missing sample (u = q_t) lands on task 1; per-modality keys compare q_t with text keys only."""
    v_off, t_off = torch.tensor([4.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    q = {k: (v_off + torch.tensor([0.0, 0.0, 0.0, s]), t_off + torch.tensor([0.0, 0.0, s, 0.0]))
         for k, s in ((0, 1.0), (1, -1.0))}  # fmt: skip
    tkm = _memory(form, 2, dim=4)
    _train_on(tkm, 0, *q[0], [COMPLETE, TEXT_MISSING, TEXT_MISSING, TEXT_MISSING])
    _train_on(tkm, 1, *q[1], [COMPLETE, IMAGE_MISSING, IMAGE_MISSING, IMAGE_MISSING])
    q_v, q_t = q[0]
    raw = torch.stack([q_v, q_t])[None]  # (1, 2, d)
    guided = torch.stack([q_t, q_t])[None]  # image missing: both pools guided by q_t
    assert tkm.infer(tkm.query(raw, guided), torch.tensor([IMAGE_MISSING])).tolist() == [expected]


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="per_modality"):
        TaskKeyMemory(4, "both")
