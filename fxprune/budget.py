"""Budget: what the user asks for. A float means "keep this fraction of the FLOPs"."""
from __future__ import annotations

import dataclasses
import math
import numbers

from .errors import BudgetError

METRICS = ("flops", "params", "channels")


def _check(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BudgetError(f"budget {name}={value!r} must be a number in (0, 1], got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise BudgetError(f"budget {name}={value!r} is not a finite number")
    if not 0.0 < v <= 1.0:
        raise BudgetError(f"budget {name}={v} is outside (0, 1]: it is the fraction of the "
                          f"original {name} to keep (0.5 keeps half)")
    return v


@dataclasses.dataclass(frozen=True)
class Budget:
    """Exactly one of: ``flops`` / ``params`` (fraction of the original to keep, whole model) or
    ``channels`` (fraction of channels kept in every prunable group)."""

    flops: float | None = None
    params: float | None = None
    channels: float | None = None

    def __post_init__(self) -> None:
        given = [(k, getattr(self, k)) for k in METRICS if getattr(self, k) is not None]
        if len(given) != 1:
            raise BudgetError("a Budget takes exactly one of flops=, params=, channels= "
                              f"(got {', '.join(k for k, _ in given) or 'none'})")
        object.__setattr__(self, given[0][0], _check(*given[0]))

    @property
    def metric(self) -> str:
        return next(k for k in METRICS if getattr(self, k) is not None)

    @property
    def value(self) -> float:
        return float(getattr(self, self.metric))

    @classmethod
    def coerce(cls, budget: object) -> "Budget":
        if isinstance(budget, Budget):
            return budget
        if isinstance(budget, dict):
            try:
                return cls(**budget)
            except TypeError as exc:
                raise BudgetError(f"unknown budget field in {budget!r}; use one of {METRICS}") from exc
        return cls(flops=_check("flops", budget))

    def to_dict(self) -> dict[str, float]:
        return {self.metric: self.value}

    def __str__(self) -> str:
        return f"{self.value:g} of {self.metric}"
