"""DeLo (docs/method.md): routed rank-one factor pools per task and modality, cross-modal guidance, the
Task-Key Memory, the alignment and consistency losses. Submodules import torch; this package does not, so the
config schema can read ``delo.methods.delo.config`` cheaply."""
