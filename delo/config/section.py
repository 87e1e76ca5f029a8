"""The base of every config section: unknown keys refused, frozen, field docstrings as descriptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Field docstrings become descriptions, so the README's config reference is generated from this file.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
