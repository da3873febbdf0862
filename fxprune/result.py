"""What ``fxprune.prune`` returns (its own module, so that ``export/`` needs nothing of ``api``)."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .ir import DepGraph
from .plan import Plan
from .report import Report


@dataclasses.dataclass
class PruneResult:
    model: torch.nn.Module  # the pruned model (a new object; the input model is untouched)
    plan: Plan
    report: Report
    graph: DepGraph | None = None  # the analysis of the original model
    search: dict[str, Any] | None = None  # search policies: run folder, evaluations, history, summary

    def __str__(self) -> str:
        return str(self.report)
