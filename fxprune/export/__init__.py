"""The export room: ONNX export with an ONNX Runtime parity check (``onnx_export``), latency
measurement and interleaved comparison (``latency``), latency checks with speedup and efficiency
(``check``), and latency budgets met by a measured search (``latency_budget``)."""
from .check import LatencyCheck, check_latency
from .latency import Comparison, Latency, compare_latency, measure_interleaved, measure_latency
from .onnx_export import DEFAULT_OPSET, EXPORTERS, ExportResult, check_parity, export_onnx, session

__all__ = ["export_onnx", "ExportResult", "check_parity", "session", "EXPORTERS", "DEFAULT_OPSET",
           "measure_latency", "measure_interleaved", "compare_latency", "Latency", "Comparison", "check_latency", "LatencyCheck"]
