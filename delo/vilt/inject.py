"""Replace target linears of a backbone with wrapped ones (method.md §1).

A target is a dotted-name suffix matched at a dot boundary (``attention.attention.query`` matches
``encoder.layer.3.attention.attention.query``, never ``...attention.attention.myquery``). A target whose matches
play several roles (``dense``: attention output, MLP in and out, pooler) is refused, nothing matching raises with
the candidate names, and wrapping an already wrapped linear raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from torch import nn


class WrappedLinear(nn.Module):
    """Base of every module :func:`inject` puts in a linear's place; the frozen original is ``base_layer``.

    ``inject`` refuses to wrap one twice and never looks inside one for candidates."""

    base_layer: nn.Linear


def _role(name: str) -> str:
    """A module's role: its name with layer numbers replaced, e.g. ``encoder.layer.*.attention.attention.query``."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "*", name)


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _candidates(root: nn.Module) -> dict[str, nn.Module]:
    """Linears (wrapped or not) by dotted name; the insides of wrapped linears are not candidates."""
    found: dict[str, nn.Module] = {}
    for name, module in root.named_modules():
        if any(name.startswith(w + ".") for w in found if isinstance(found[w], WrappedLinear)):
            continue
        if isinstance(module, (nn.Linear, WrappedLinear)):
            found[name] = module
    return found


def inject(root: nn.Module, targets: Sequence[str], wrap: Callable[[str, nn.Linear], nn.Module]) -> list[str]:
    """Replace every linear of ``root`` matching one of ``targets`` by ``wrap(name, linear)``.

    Returns the sorted dotted names replaced. Raises ValueError on an empty target list, a target matching
    several roles, no match at all, or a match that is already wrapped.
    """
    if not targets:
        raise ValueError("no target modules given")
    candidates = _candidates(root)
    matched: dict[str, nn.Module] = {}
    for target in targets:
        hits = [n for n in candidates if _matches(n, target)]
        roles = sorted({_role(n) for n in hits})
        if len(roles) > 1:
            raise ValueError(
                f"target {target!r} is ambiguous: it matches {len(roles)} roles ({', '.join(roles)}); "
                "give a longer dotted suffix"
            )
        matched.update((n, candidates[n]) for n in hits)
    if not matched:
        roles = sorted({_role(n) for n in candidates})
        raise ValueError(
            f"no linear layer matches targets {list(targets)}; candidate names: {', '.join(roles)}"
        )
    wrapped = sorted(n for n, m in matched.items() if isinstance(m, WrappedLinear))
    if wrapped:
        raise ValueError(f"already wrapped (double injection): {', '.join(wrapped)}")
    for name in sorted(matched):
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, wrap(name, matched[name]))
    return sorted(matched)
