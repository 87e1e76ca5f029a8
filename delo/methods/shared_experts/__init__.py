"""The three methods whose LoRA experts are shared by every task: Rank-1 Expert Pool, MoE-LoRA, PASs-MoE
(docs/methods.md). ``base`` holds what they share; ``config`` their keys (light: no torch)."""
