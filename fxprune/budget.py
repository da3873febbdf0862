"""Budget: what the user asks for. A float means "keep this fraction of the FLOPs"."""
from __future__ import annotations

import dataclasses
import math
import numbers

from .errors import BudgetError

METRICS = ("flops", "params", "channels", "latency", "latency_ms")
LATENCY_METRICS = ("latency", "latency_ms")


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


def _check_ms(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BudgetError(f"budget latency_ms={value!r} must be a number of milliseconds, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or v <= 0:
        raise BudgetError(f"budget latency_ms={value!r} must be a positive, finite number of milliseconds")
    return v


def parse(text: str) -> "Budget":
    """Parse a command-line budget: ``0.5`` (FLOPs fraction) or ``METRIC=VALUE``, e.g.
    ``params=0.4``, ``latency=0.5``, ``latency_ms=12``."""
    text = str(text).strip()
    key, sep, val = text.partition("=")
    if not sep:
        key, val = "flops", text
    key = key.strip()
    if key not in METRICS:
        raise BudgetError(f"budget '{text}': unknown metric '{key}'; use one of {', '.join(METRICS)}")
    try:
        num = float(val)
    except ValueError:
        raise BudgetError(f"budget '{text}' is not a number (e.g. 0.5) or METRIC=VALUE (e.g. latency=0.5)") from None
    return Budget(**{key: num})


@dataclasses.dataclass(frozen=True)
class Budget:
    """Exactly one of: ``flops`` / ``params`` (fraction of the original to keep, whole model),
    ``channels`` (fraction of channels kept in every prunable group), ``latency`` (fraction of the
    original model's ONNX Runtime latency) or ``latency_ms`` (milliseconds in ONNX Runtime, on the
    machine that runs the pruning). Latency budgets are met by a measured search; see
    :mod:`fxprune.export.latency_budget`."""

    flops: float | None = None
    params: float | None = None
    channels: float | None = None
    latency: float | None = None
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        given = [(k, getattr(self, k)) for k in METRICS if getattr(self, k) is not None]
        if len(given) != 1:
            raise BudgetError("a Budget takes exactly one of flops=, params=, channels=, latency=, "
                              f"latency_ms= (got {', '.join(k for k, _ in given) or 'none'})")
        name, value = given[0]
        object.__setattr__(self, name, _check_ms(value) if name == "latency_ms" else _check(name, value))

    @property
    def is_latency(self) -> bool:
        return self.metric in LATENCY_METRICS

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
        if self.metric == "latency_ms":
            return f"{self.value:g} ms of ONNX Runtime latency"
        return f"{self.value:g} of {self.metric}"
