"""Training-dynamics diagnostics of one task (``debug.diagnostics``): what the TensorBoard ``dynamics/`` tags hold.

- Per epoch, on a fixed probe batch of the task's train data (routed as in training, no key update, RNG forked
  so training is untouched): the normalised entropy of the A / B selection frequencies per modality (1 = every
  factor used equally, 0 = always the same r), averaged over sites, and the share of (sample, site) selections
  whose index set is unchanged since the previous probe.
- Every ``debug.diagnostics_every`` steps, averaged per epoch: gradient norms of the task's factors (A, B),
  routers (W_A, W_B, biases) and maps (M), and the share of pool entries gathered only by L_con's proxy pass
  (so trained by nothing else in that step), of all entries of the task.

Nothing here writes a parameter, a gradient or the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MODALITIES = ("vision", "text")


def selection_entropy(idx: Tensor, E: int) -> Tensor:
    """idx (B, G, 2, r) -> (2,) normalised entropy of the selection frequency over E, per modality, mean over G."""
    counts = torch.zeros(*idx.shape[1:-1], E, device=idx.device).scatter_add_(
        -1, idx.movedim(0, -2).flatten(-2), torch.ones_like(idx.movedim(0, -2).flatten(-2), dtype=torch.float)
    )  # (G, 2, E)
    freq = counts / counts.sum(-1, keepdim=True)
    entropy = -(freq * freq.clamp_min(1e-12).log()).sum(-1) / math.log(E)  # (G, 2)
    return entropy.mean(0)


def unchanged_share(now: Tensor, before: Tensor) -> Tensor:
    """(B, G, 2, r) selections -> (2,) share per modality of (sample, site) whose selected set is the same."""
    same = (now.sort(-1).values == before.sort(-1).values).all(-1)  # (B, G, 2)
    return same.float().mean((0, 1))


def proxy_only_share(main: dict[str, Tensor], proxy: dict[str, Tensor]) -> Tensor:
    """(2 [A, B],) share of the task's entries gathered by the proxy pass but not by the main pass."""
    only = sum((proxy[s] & ~main[s]).flatten(1).sum(1) for s in proxy)
    total = sum(main[s].flatten(1).shape[1] for s in proxy)
    return only.float() / total


def parameter_roles(model, task: int) -> dict[str, list[Tensor]]:
    """The task's adapter parameters by role: factors, routers, map."""
    roles: dict[str, list[Tensor]] = {"factors": [], "routers": [], "map": []}
    for site in model.sites:
        for name, p in site.pools[task].named_parameters():
            role = "map" if name == "M" else "routers" if name.startswith("W_") else "factors"
            roles[role].append(p)
    return roles


class Dynamics:
    """Accumulates one task's diagnostics; ``epoch_end`` returns the scalars of the epoch (tag -> value)."""

    def __init__(self, model, task: int, probe: dict | None, every: int) -> None:
        self.model, self.task, self.probe_batch, self.every = model, task, probe, every
        self.roles = parameter_roles(model, task)
        self.previous: dict[str, tuple[Tensor, Tensor]] | None = None
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._measuring = False

    def measures(self, step: int) -> bool:
        """Whether 0-based ``step`` of the task records rows and gradient norms (not step 0: B = 0 there, so
        routers and maps have no gradient yet)."""
        return step % self.every == self.every - 1

    def loss(self, batch: dict, task: int, step: int):
        """DeLo's loss of 0-based ``step``, with the pool entries each pass gathered when the step measures."""
        self._measuring = self.measures(step)
        return self.model.training_loss(batch, task, record_rows=self._measuring)

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.counts[key] = self.counts.get(key, 0) + 1

    def after_backward(self, loss_out) -> None:
        """Gradient norms (before the optimiser step) and the proxy-only entry share of a measuring step."""
        if not self._measuring:
            return
        for role, params in self.roles.items():
            grads = [p.grad.detach().float() for p in params if p.grad is not None]
            if params:
                self._add(
                    f"grad_norm/{role}",
                    float(torch.sqrt(sum((g * g).sum() for g in grads))) if grads else 0.0,
                )
        if loss_out.rows_main is not None and loss_out.rows_proxy:
            share = proxy_only_share(loss_out.rows_main, loss_out.rows_proxy)
            for i, factor in enumerate("AB"):
                self._add(f"proxy_only_rows/{factor}", float(share[i]))

    @torch.no_grad()
    def probe(self) -> dict[str, float]:
        """Routing entropy and churn on the probe batch (routes as training does, task-aware on task k)."""
        if self.probe_batch is None or self.model.cfg.variant == "delo_lora":
            return {}
        batch = dict(self.probe_batch, task=torch.full_like(self.probe_batch["missing"], self.task))
        devices = [batch["missing"].device] if batch["missing"].is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            out = self.model(batch, "task_aware", record_selections=True)
        now = out.selections
        E = self.model.cfg.E
        scalars: dict[str, float] = {}
        for j, factor in enumerate("AB"):
            entropy = torch.stack([selection_entropy(sel[j], E) for sel in now.values()]).mean(0)  # (2,)
            for m, name in enumerate(MODALITIES):
                scalars[f"selection_entropy/{factor}_{name}"] = float(entropy[m])
            if self.previous is not None:
                same = torch.stack([unchanged_share(now[s][j], self.previous[s][j]) for s in now]).mean(0)
                for m, name in enumerate(MODALITIES):
                    scalars[f"selection_unchanged/{factor}_{name}"] = float(same[m])
        self.previous = now
        return scalars

    def epoch_end(self) -> dict[str, float]:
        scalars = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return {**scalars, **self.probe()}
