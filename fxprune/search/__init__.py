"""The search substrate learned policies run on: fast masked plan evaluation, data splits and
the KD trainer, the GAT graph encoder, and the run folder (JSONL log, checkpoints, reward curve)."""
from .encoder import Encoding, GraphEncoder, encode, pretrain_gae
from .evaluate import Evaluator, Metrics
from .features import FEATURES, GraphFeatures, graph_features
from .runlog import SearchRun
from .splits import DataSplits, Trainer, as_splits

__all__ = ["Evaluator", "Metrics", "DataSplits", "Trainer", "as_splits", "SearchRun", "GraphEncoder",
           "Encoding", "encode", "pretrain_gae", "graph_features", "GraphFeatures", "FEATURES"]
