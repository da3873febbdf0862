"""Declaring options: a dataclass field with its provenance and its allowed values, read by
:func:`fxprune.search.config.config_from_dict` (validation) and ``described`` (reports)."""
from __future__ import annotations

import dataclasses
from typing import Any

FXPRUNE_DEFAULT = "fxprune default"


def option(default: Any = dataclasses.MISSING, source: str = "", *, choices: tuple | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           factory: Any = None) -> Any:
    """A dataclass field with its provenance (``source``: the paper, the authors' code, or an
    *fxprune default* where the sources are silent) and its allowed values."""
    meta = {"source": source, "choices": choices, "range": (low, high, low_open, high_open)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
