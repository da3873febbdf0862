"""The search substrate learned policies run on: plan evaluation (masked or compact, adaptive-BN
recalibration, ``evaluate_many``), data splits, the trainer, typed options, the GAT graph encoder,
and the run folder (JSONL log, checkpoints, reward curve). Nothing here imports a policy."""
from .config import SearchConfig, config_from_dict
from .encoder import Encoding, GraphEncoder, encode, pretrain_gae
from .evaluate import Evaluator, Metrics
from .features import FEATURES, GraphFeatures, graph_features
from .runlog import RowKind, SearchRun
from .splits import DataSplits, as_splits
from .trainer import Trainer

__all__ = ["Evaluator", "Metrics", "DataSplits", "Trainer", "as_splits", "SearchRun", "RowKind", "GraphEncoder",
           "Encoding", "encode", "pretrain_gae", "graph_features", "GraphFeatures", "FEATURES", "SearchConfig",
           "config_from_dict"]
