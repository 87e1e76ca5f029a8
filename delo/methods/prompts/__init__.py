"""Prompt-based comparators on the frozen ViLT (docs/methods.md): MAP, MSP, L2P, DualPrompt, RebQ.

:mod:`.hooks` is the prompt machinery (input tokens and attention prefixes through hooks), :mod:`.base` the
shared method scaffolding (per-task heads, task states, the prompt-free query pass), then one module per method.
"""
