"""Parameter counts: from a config at given backbone dims (method.md §12), and of an instantiated model.

Both return ``adapters_per_task`` (one task's pools over all sites), ``trainable`` (the latest task's adapters
and head: what its optimiser gets) and ``total`` (backbone + every task's adapters and heads; Task-Key Memory
keys are buffers, not parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

from delo.config import ModelConfig


def adapter_parameters_per_site(cfg: ModelConfig, d_in: int, d_out: int) -> int:
    """One task's adapter parameters at one adapted linear."""
    if cfg.variant == "delo_lora":
        return cfg.r * (d_in + d_out)  # A (r x d_in) + B (d_out x r)
    tables = 1 if cfg.variant == "unified_pool" else 2
    if cfg.entry_rank == "one":
        factors = tables * cfg.E * (d_in + d_out)  # A, B tables of rank-one entries
        routing = 2 * (2 * cfg.E * d_in + cfg.E * cfg.E)  # per modality: W_A, W_B, M (E x E)
    else:
        factors = tables * cfg.E * cfg.r * (d_in + d_out)  # A, B tables of rank-r entries
        # per modality: W_A, W_B with bias, M (r x d_in x E)
        routing = 2 * (2 * cfg.E * (d_in + 1) + cfg.r * d_in * cfg.E)
    return factors + routing


def count_parameters(
    cfg: ModelConfig,
    *,
    hidden: int,
    num_layers: int,
    num_tasks: int,
    classes_per_task: int | Sequence[int],
    backbone_params: int,
    sites_per_layer: int | None = None,
) -> dict[str, int]:
    """Counts for adapted linears of size hidden x hidden (q/k/v), ``sites_per_layer`` per layer.

    ``sites_per_layer`` defaults to the number of targets (q, k, v: 3); ``backbone_params`` is the frozen
    ViltModel's own count (111,595,008 for the default ViltConfig, i.e. ViLT-B/32 with 40 text positions).
    """
    sites = num_layers * (len(cfg.targets) if sites_per_layer is None else sites_per_layer)
    adapters = sites * adapter_parameters_per_site(cfg, hidden, hidden)
    classes = [classes_per_task] * num_tasks if isinstance(classes_per_task, int) else list(classes_per_task)
    if len(classes) != num_tasks:
        raise ValueError(f"{len(classes)} class counts for {num_tasks} tasks")
    heads = [hidden * c + c for c in classes]  # Linear(hidden, C_k) with bias
    return {
        "adapters_per_task": adapters,
        "trainable": adapters + heads[-1],
        "total": backbone_params + num_tasks * adapters + sum(heads),
    }


def count_model_parameters(model) -> dict[str, int]:
    """The same counts from an instantiated model's actual parameters (its latest task as the trainable one);
    every method implements ``parameter_counts`` (delo.methods.base)."""
    return model.parameter_counts()
