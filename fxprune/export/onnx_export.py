"""ONNX export with a numerical parity check in ONNX Runtime.

``export_onnx`` writes the file, validates it with ``onnx.checker``, runs it in ONNX Runtime on
several random inputs next to the torch model, and raises :class:`ExportError` (with the largest
absolute and relative errors) when they disagree. Two exporters are tried in turn: the
TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``: fast, and it folds
constants, which is what CPU inference wants) and the ``torch.export``-based one (``dynamo=True``,
which needs the ``onnxscript`` package). The result records which one produced the file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ExportError, FxpruneError
from ..ir.trace import eval_mode, inputs_from_spec, make_inputs, structural_copy

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 9, 23  # what the exporters write and ONNX Runtime runs


@dataclasses.dataclass
class ExportResult:
    path: Path
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    input_shapes: list[tuple[int, ...]]
    dynamic_batch: bool
    checks: int  # random inputs compared in ONNX Runtime
    max_abs_err: float
    max_rel_err: float
    fallback_reason: str | None = None  # why the first exporter was not used, if it was not

    def __str__(self) -> str:
        return (f"{self.path} ({self.exporter} exporter, opset {self.opset}); ONNX Runtime parity on "
                f"{self.checks} inputs: max abs err {self.max_abs_err:.2e}, max rel err {self.max_rel_err:.2e}")


def _unwrap(model_or_result: Any) -> tuple[torch.nn.Module, list | None]:
    from ..result import PruneResult

    if isinstance(model_or_result, PruneResult):
        return model_or_result.model, model_or_result.plan.input_shapes
    if isinstance(model_or_result, torch.nn.Module):
        return model_or_result, None
    raise FxpruneError(f"export_onnx() takes an nn.Module or a PruneResult, got {type(model_or_result).__name__}")


def _names(n: int, prefix: str) -> list[str]:
    return [prefix] if n == 1 else [f"{prefix}{i}" for i in range(n)]


def _export_torchscript(model, inputs, path, opset, dynamic_batch, n_out) -> None:
    in_names, out_names = _names(len(inputs), "input"), _names(n_out, "output")
    axes = {n: {0: "batch"} for n in in_names + out_names} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(inputs), str(path), dynamo=False, opset_version=opset,
                          input_names=in_names, output_names=out_names, dynamic_axes=axes)


def _export_dynamo(model, inputs, path, opset, dynamic_batch, n_out) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise FxpruneError("the dynamo exporter needs the 'onnxscript' package") from exc
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        shapes = tuple({0: batch} for _ in inputs)
        # torch.export specializes dims of size 1: trace with a batch of 2 to keep it symbolic
        inputs = [t.expand(2, *t.shape[1:]).contiguous() if t.dim() and t.shape[0] == 1 else t for t in inputs]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, tuple(inputs), dynamo=True, opset_version=opset,
                                 input_names=_names(len(inputs), "input"),
                                 output_names=_names(n_out, "output"), dynamic_shapes=shapes,
                                 optimize=True, verbose=False)
        prog.save(str(path))


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    raise ExportError(f"the model returns {type(out).__name__}; only tensors (or tuples/lists/dicts of "
                      "tensors) can be exported")


def session(path: str | Path, threads: int = 1, optimization: str = "all", spinning: bool = True):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and sequential execution.

    ``spinning`` keeps ONNX Runtime's default: idle pool threads spin briefly before they sleep, so
    consecutive ops do not pay a thread wake-up each (``benchmarks/results/ort_threading.md``
    compares both settings). Comparisons therefore alternate models in blocks (see
    :func:`fxprune.export.measure_interleaved`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_parity(model: torch.nn.Module, path: str | Path, inputs: Sequence[torch.Tensor], checks: int = 3,
                 rtol: float = 1e-3, atol: float = 1e-4, seed: int = 0) -> tuple[float, float]:
    """Compare ``model`` and the ONNX file on ``checks`` random inputs shaped like ``inputs``
    (the first is ``inputs`` itself); return (max abs err, max rel err) or raise ExportError."""
    sess = session(path, threads=1)
    names = [i.name for i in sess.get_inputs()]
    gen = torch.Generator().manual_seed(seed)
    worst_abs = worst_rel = 0.0
    for k in range(checks):
        xs = list(inputs) if k == 0 else [
            torch.randn(t.shape, generator=gen, dtype=t.dtype) if t.dtype.is_floating_point else t
            for t in inputs]
        with eval_mode(model), torch.no_grad():
            ref = [t.detach().cpu().numpy() for t in _flat(model(*xs))]
        got = sess.run(None, {n: x.detach().cpu().numpy() for n, x in zip(names, xs)})
        if len(got) != len(ref):
            raise ExportError(f"ONNX model has {len(got)} outputs, the torch model {len(ref)}")
        for r, g in zip(ref, got):
            if r.shape != g.shape:
                raise ExportError(f"ONNX output shape {g.shape} differs from the torch output {r.shape}")
            err = np.abs(r.astype(np.float64) - g)
            scale = float(np.abs(r).max()) or 1.0
            worst_abs = max(worst_abs, float(err.max(initial=0.0)))
            worst_rel = max(worst_rel, float(err.max(initial=0.0)) / scale)
    if worst_abs > atol and worst_rel > rtol:
        raise ExportError(f"ONNX Runtime output differs from the torch model: max abs err {worst_abs:.3e}, "
                          f"max rel err {worst_rel:.3e} (tolerance rtol={rtol}, atol={atol}) for '{path}'")
    return worst_abs, worst_rel


def export_onnx(model_or_result: Any, path: str | Path, example_inputs: Any = None, opset: int | None = None,
                dynamic_batch: bool = True, *, exporter: str = "auto", checks: int = 3,
                rtol: float = 1e-3, atol: float = 1e-4, seed: int = 0) -> ExportResult:
    """Export a model (or a ``PruneResult``'s pruned model) to ONNX and verify it in ONNX Runtime.

    ``example_inputs``: tensor(s) or a shape; default: the shapes the model was pruned with, else
    ``1x3x224x224``. ``exporter``: ``"auto"`` (TorchScript, then dynamo if it fails),
    ``"torchscript"`` or ``"dynamo"``. The file must pass ``onnx.checker`` and agree with the torch
    model on ``checks`` random inputs (max relative error ``rtol`` of the output's magnitude).
    The model is exported in eval mode and left exactly as it was.
    """
    import onnx

    model, shapes = _unwrap(model_or_result)
    if example_inputs is None and shapes:
        example_inputs = inputs_from_spec(shapes)
    inputs = make_inputs(model, example_inputs)
    # export and the parity runs call forward: on a copy whose buffers are its own, so that a
    # forward that updates buffers in place leaves the caller's model as it was
    model = structural_copy(model)
    if exporter not in ("auto", *EXPORTERS):
        raise FxpruneError(f"exporter='{exporter}' is not one of auto, {', '.join(EXPORTERS)}")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET):
        raise FxpruneError(f"opset={opset!r} must be an integer in [{MIN_OPSET}, {MAX_OPSET}] (default {DEFAULT_OPSET})")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    for name, val in (("checks", checks),):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise FxpruneError(f"{name}={val!r} must be a positive integer")
    path = Path(path)
    if path.is_dir():
        raise FxpruneError(f"cannot write '{path}': it is a folder; give a file name such as '{path / 'model.onnx'}'")
    if path.parent and not path.parent.exists():
        raise FxpruneError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    if path.parent and not os.access(path.parent if str(path.parent) else ".", os.W_OK):
        raise FxpruneError(f"cannot write '{path}': folder '{path.parent}' is not writable")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise FxpruneError(f"cannot write '{path}': {exc.strerror or exc}") from None
    with eval_mode(model), torch.no_grad():
        try:
            n_out = len(_flat(model(*inputs)))
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model failed on the example input
            raise ExportError(f"the model fails on example input(s) {[tuple(t.shape) for t in inputs]}: "
                              f"{type(exc).__name__}: {exc}") from exc
    order = EXPORTERS if exporter == "auto" else (exporter,)
    fns = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}
    errors: list[str] = []
    used = None
    for name in order:
        try:
            with eval_mode(model):  # not no_grad: it would switch attention to fused fast paths
                fns[name](model, inputs, path, opset, dynamic_batch, n_out)
            onnx.checker.check_model(str(path))
            used = name
            break
        except Exception as exc:  # noqa: BLE001 - try the next exporter, report all failures
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            log.info("ONNX export with the %s exporter failed: %s", name, errors[-1])
    if used is None:
        raise ExportError(f"cannot export {type(model).__name__} to ONNX: " + "; ".join(errors))
    max_abs, max_rel = check_parity(model, path, inputs, checks, rtol, atol, seed)
    written = max((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                   if o.domain in ("", "ai.onnx")), default=opset)
    if written != opset:
        log.info("the %s exporter wrote opset %d (asked for %d)", used, written, opset)
    res = ExportResult(path, used, written, [tuple(t.shape) for t in inputs], dynamic_batch, checks,
                       max_abs, max_rel, errors[0] if errors else None)
    log.info("exported %s", res)
    return res
