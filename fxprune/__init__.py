"""fxprune: compiler-style structured pruning for PyTorch CNNs.

    result = fxprune.prune(model, 0.5)      # keep 50% of the FLOPs
    result.model, result.plan, result.report
"""
from .api import apply_plan, load, prune, save
from .result import PruneResult
from . import data, testing
from .budget import Budget
from .errors import (AnalysisError, BudgetError, ExportError, FxpruneError, LatencyCheckError,
                     NothingToPrune, OptionError, PlanError, SurgeryError, TraceFailure, TrainingDiverged)
from .export import (Comparison, ExportResult, Latency, LatencyCheck, check_latency, compare_latency,
                     export_onnx, measure_latency)
from .finetune import FinetuneConfig, FinetuneResult, finetune
from .ir import DepGraph, analyze
from .passes import prune_channels
from .plan import Plan
from .policies import available_policies, register_policy
from .search import Evaluator, Metrics

__all__ = ["prune", "analyze", "save", "load", "apply_plan", "prune_channels", "Budget", "Plan",
           "DepGraph", "PruneResult", "available_policies", "register_policy", "export_onnx",
           "ExportResult", "measure_latency", "compare_latency", "check_latency", "Latency",
           "Comparison", "LatencyCheck", "FxpruneError", "BudgetError", "TraceFailure",
           "AnalysisError", "PlanError", "NothingToPrune", "ExportError", "LatencyCheckError", "OptionError",
           "SurgeryError", "TrainingDiverged",
           "finetune", "FinetuneConfig", "FinetuneResult", "Evaluator", "Metrics", "data"]
__version__ = "0.1.0"
