"""Exceptions raised by fxprune. Every message names what was wrong (the budget, the node, the op)."""
from __future__ import annotations


class FxpruneError(Exception):
    """Base class of every error fxprune raises on purpose."""


class BudgetError(FxpruneError, ValueError):
    """The budget is malformed, or cannot be met; ``best`` holds the best achievable ratio."""

    def __init__(self, message: str, best: float | None = None):
        super().__init__(message)
        self.best = best


class TraceFailure(FxpruneError):
    """The model cannot be traced by torch.fx (the top-level ``forward`` itself is untraceable)."""


class AnalysisError(FxpruneError):
    """Shape propagation or channel analysis failed (e.g. an example input of the wrong shape)."""


class PlanError(FxpruneError, ValueError):
    """A plan does not fit the graph it is applied to."""


class OptionError(FxpruneError, ValueError):
    """An option (a keyword argument, a ``policy_config`` entry) is unknown, of the wrong type or
    out of range; the message names it."""


class SurgeryError(FxpruneError):
    """Surgery could not rewrite a node for a plan; the message names the rule and the node."""


class NothingToPrune(FxpruneError):
    """Every channel group of the model is pinned: pruning would be a silent no-op."""


class TrainingDiverged(FxpruneError):
    """A training loss became inf or NaN (the message gives the step and learning rate)."""


class ExportError(FxpruneError):
    """ONNX export failed, or ONNX Runtime disagrees with the torch model (errors are given)."""


class LatencyCheckError(FxpruneError):
    """A latency check failed: the measured speedup or latency misses the asked-for bound."""

    def __init__(self, message: str, check: object = None):
        super().__init__(message)
        self.check = check
