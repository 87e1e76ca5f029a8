"""Task-Key Memory: keys per learned task, task inference by cosine argmax (method.md §6).

Two forms (``model.tkm_keys``):

- ``shared`` (the paper): one key per task, keys (T, d), query u = ½(q̂_v + q̂_t) (B, d).
- ``per_modality``: a vision and a text key per task, keys (T, 2, d), query the raw [q_v, q_t] (B, 2, d). The
  guided u of an image-missing sample is its q_t, of a text-missing one its q_v, of a complete one their mean:
  three kinds of vector that differ mostly by modality, so one shared key per task averages them away and
  image-missing samples fall to chance. Here a key only ever sees the modality it stands for, taken from
  samples where that modality is real, and a sample is scored only with the modalities it has.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

TKM_FORMS = ("shared", "per_modality")


def present_modalities(missing: Tensor) -> Tensor:
    """(B,) missing codes -> (B, 2) bool [image real, text real] (code 1: text missing, code 2: image missing)."""
    return torch.stack([missing != 2, missing != 1], dim=1)


class TaskKeyMemory(nn.Module):
    """Keys: a zero-initialised buffer, never trained by the optimiser, saved with each task's state."""

    def __init__(self, dim: int, form: str = "shared") -> None:
        super().__init__()
        if form not in TKM_FORMS:
            raise ValueError(f"unknown task-key form {form!r}; expected one of {TKM_FORMS}")
        self.form = form
        shape = (0, dim) if form == "shared" else (0, 2, dim)
        self.register_buffer("keys", torch.zeros(shape))

    def __len__(self) -> int:
        return self.keys.shape[0]

    def add_task(self) -> None:
        self.keys = torch.cat([self.keys, self.keys.new_zeros(1, *self.keys.shape[1:])])

    def query(self, raw: Tensor, guided: Tensor) -> Tensor:
        """The query of this form from the site's raw [q_v, q_t] and guided [q̂_v, q̂_t], both (B, 2, d)."""
        if self.form == "shared":
            return guided.mean(dim=1)  # (B, d): u = (q̂_v + q̂_t) / 2
        return raw  # (B, 2, d): [q_v, q_t]

    @torch.no_grad()
    def update(self, task: int, query: Tensor, missing: Tensor, beta: float) -> None:
        """key_k <- beta * key_k + (1 - beta) * batch mean; no bias correction, cosine ignores scale.

        ``shared``: the mean of u over the batch. ``per_modality``: key^v from the mean q_v over samples whose
        image is real, key^t from the mean q_t over samples whose text is real; a key no sample of the batch
        speaks for stays as it is.
        """
        query = query.to(self.keys.dtype)
        if self.form == "shared":
            self.keys[task] = beta * self.keys[task] + (1.0 - beta) * query.mean(dim=0)  # (B, d) -> (d,)
            return
        real = present_modalities(missing).to(query.dtype)  # (B, 2)
        count = real.sum(dim=0)  # (2,)
        mean = torch.einsum("bm,bmd->md", real, query) / count.clamp(min=1)[:, None]  # (2, d)
        moved = beta * self.keys[task] + (1.0 - beta) * mean  # (2, d)
        self.keys[task] = torch.where(count[:, None] > 0, moved, self.keys[task])

    @torch.no_grad()
    def scores(self, query: Tensor, missing: Tensor) -> Tensor:
        """(B, T) score of each sample against each learned task's key; a key still at zero scores 0.

        ``shared``: cos(u, key_j). ``per_modality``: the mean of cos(q_m, key^m_j) over the modalities m the
        sample has (both for complete, q_v for text missing, q_t for image missing).
        """
        keys = F.normalize(self.keys, dim=-1)
        query = F.normalize(query.to(self.keys.dtype), dim=-1)
        if self.form == "shared":
            return query @ keys.T  # (B, d) @ (d, T)
        cos = torch.einsum("bmd,tmd->bmt", query, keys)  # (B, 2, d) x (T, 2, d) -> (B, 2, T)
        real = present_modalities(missing).to(cos.dtype)  # (B, 2)
        weight = real / real.sum(
            dim=1, keepdim=True
        )  # (B, 2): ½ ½ complete, 1 0 text missing, 0 1 image missing
        return torch.einsum("bm,bmt->bt", weight, cos)  # (B, T)

    @torch.no_grad()
    def infer(self, query: Tensor, missing: Tensor) -> Tensor:
        """(B,) long: per-sample argmax of :meth:`scores` over the learned tasks (no batch vote)."""
        return self.scores(query, missing).argmax(dim=-1)
