"""The search substrate learned policies run on: fast masked plan evaluation (more to come:
search logs, checkpoints)."""
from .evaluate import Evaluator, Metrics

__all__ = ["Evaluator", "Metrics"]
