"""Fast plan evaluation by masking: score any plan on a fixed data subset without copying the
model or doing surgery per call.

One working copy of the traced model is made when the :class:`Evaluator` is built. For each plan,
every producer position of a dropped channel (conv/linear output rows and biases, norm scale and
shift, running means) is set to zero and every kept position is restored from the original
weights. A zeroed channel then carries zeros through every op a pruned model would no longer
compute, so the masked model computes what the surgically pruned one does (for architectures
without channel-mixing normalisation or attention: the dead-channel oracle), and the test suite
checks that the two give the same metrics.

Precision: ``"fp32"`` (default; the masked == surgery oracle holds to float rounding) or
``"bf16"``: the forward runs under ``torch.autocast`` in bfloat16, which is 3.5x faster on this
project's 2-core AVX-512 BF16 CPU (CIFAR ResNet-56, 1,000 images:
``benchmarks/results/evaluate_throughput.md``); how much it gains elsewhere depends on the hardware. Scores then differ from fp32 by rounding noise (at
most 0.2 points of accuracy over 10 random plans there), enough to reorder near-ties between plans.

Metrics: top-1 accuracy and cross-entropy when the data has labels; otherwise (or with
``metric="distill"``) a label-free agreement score with the unpruned model: the fraction of
samples whose arg-max matches, and the KL divergence of the pruned model's outputs from it.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import batches
from ..errors import FxpruneError
from ..ir import DepGraph
from ..ir.context import ZEROED_FOR_DEAD, tensor_at
from ..plan import Plan

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass
class Metrics:
    acc: float  # top-1 accuracy (labels), or arg-max agreement with the unpruned model (distill)
    loss: float  # cross-entropy (labels) or KL(teacher || pruned) (distill)
    flops: float
    params: float
    flops_ratio: float
    params_ratio: float
    feasible: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Evaluator:
    """``evaluate(plan) -> Metrics`` on ``data`` (at most ``n_samples`` samples, kept in memory).

    ``metric``: ``"accuracy"`` (needs labels) or ``"distill"`` (label-free, against the unpruned
    model); ``"auto"`` picks accuracy when every batch has labels. ``budget``: a
    :class:`~fxprune.Budget`; plans over a FLOPs or params budget are reported ``feasible=False``
    (channel and latency budgets are not checked here). ``precision``: ``"fp32"`` or ``"bf16"``
    (see the module docstring).
    """

    def __init__(self, graph, data: Any, *, metric: str = "auto", n_samples: int | None = 1000,
                 batch_size: int | None = None, device: str | torch.device | None = None,
                 budget: Any = None, precision: str = "fp32"):
        if metric not in ("auto", "accuracy", "distill"):
            raise FxpruneError(f"unknown metric '{metric}'; choose 'accuracy', 'distill' or 'auto'")
        if precision not in PRECISIONS:
            raise FxpruneError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        if not isinstance(graph, DepGraph):
            raise FxpruneError(f"Evaluator needs the DepGraph of fxprune.analyze(model), got {type(graph).__name__}")
        if graph.regions:
            raise FxpruneError(f"{graph.model_name}.forward is not traceable ({graph.untraced}); plan evaluation "
                               "needs the whole model as one graph, so only the baselines (global, uniform) can prune it")
        for arg, val in (("n_samples", n_samples), ("batch_size", batch_size)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise FxpruneError(f"{arg}={val!r} must be a positive integer or None")
        self.graph, self.budget = graph, budget
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        data_batches = batches(data, n_samples)
        xs = torch.cat([x for x, _ in data_batches])
        has_labels = all(y is not None for _, y in data_batches)
        if metric == "accuracy" and not has_labels:
            raise FxpruneError("metric='accuracy' needs labelled data: (inputs, targets) batches")
        self.metric = "accuracy" if metric == "auto" and has_labels else ("distill" if metric == "auto" else metric)
        bs = batch_size or max(x.shape[0] for x, _ in data_batches)
        self._x = [xs[i:i + bs].to(self.device) for i in range(0, xs.shape[0], bs)]
        ys = torch.cat([y for _, y in data_batches]) if has_labels else None
        self._y = [ys[i:i + bs].to(self.device) for i in range(0, ys.shape[0], bs)] if ys is not None else None
        self.n_samples = int(xs.shape[0])
        self.model = copy.deepcopy(graph.gm).to(self.device).eval()
        self._slots = self._collect_slots()
        self._teacher = None
        if self.metric == "distill":
            self._teacher = [self._forward(x) for x in self._x]
        self.calls, self.total_seconds = 0, 0.0

    def _collect_slots(self) -> list[tuple[torch.Tensor, torch.Tensor, int, np.ndarray]]:
        slots = []
        self._names: dict[int, str] = {}
        for name, dims in self.graph.params.items():
            t = tensor_at(self.model, name)
            self._names[id(t)] = name
            for d, pd in dims.items():
                if pd.role in ZEROED_FOR_DEAD:
                    slots.append((t, t.detach().clone(), d, pd.labels))
        return slots

    @torch.no_grad()
    def _apply(self, keep_vec: np.ndarray) -> None:
        alive = self.graph.atom_keep(keep_vec)
        for t, orig, d, labels in self._slots:
            m = alive[labels]
            if m.all():
                t.copy_(orig)
                continue
            shape = [1] * t.dim()
            shape[d] = -1
            t.copy_(orig * torch.as_tensor(m, dtype=orig.dtype, device=orig.device).view(shape))

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float()

    def keep_vector(self, plan: Plan | dict | np.ndarray) -> np.ndarray:
        if isinstance(plan, np.ndarray):
            return plan.astype(np.float64)
        keep = plan.keep if isinstance(plan, Plan) else plan
        return self.graph.keep_vector(keep)

    @torch.no_grad()
    def evaluate(self, plan: Plan | dict | np.ndarray) -> Metrics:
        """Metrics of ``plan`` (a Plan, ``{group id: kept indices}`` or a 0/1 keep vector over classes)."""
        t0 = time.perf_counter()
        keep_vec = self.keep_vector(plan)
        self._apply(keep_vec)
        correct, loss = 0.0, 0.0
        for i, x in enumerate(self._x):
            out = self._forward(x)
            if self.metric == "accuracy":
                y = self._y[i]
                correct += float((out.argmax(1) == y).sum())
                loss += float(F.cross_entropy(out, y, reduction="sum"))
            else:
                ref = self._teacher[i]
                correct += float((out.argmax(-1) == ref.argmax(-1)).sum()) if out.dim() > 1 else 0.0
                loss += float(F.kl_div(F.log_softmax(out, -1), F.log_softmax(ref, -1), log_target=True,
                                       reduction="sum"))
        cost = self.graph.cost
        flops, params = float(cost.flops(keep_vec)), float(cost.params(keep_vec))
        fr, pr = flops / cost.full_flops, params / max(cost.full_params, 1e-12)
        feasible = True
        if self.budget is not None and self.budget.metric in ("flops", "params"):
            feasible = (fr if self.budget.metric == "flops" else pr) <= self.budget.value + 1e-9
        dt = time.perf_counter() - t0
        self.calls += 1
        self.total_seconds += dt
        return Metrics(correct / self.n_samples, loss / self.n_samples, flops, params, fr, pr, feasible, dt)

    __call__ = evaluate

    @property
    def plans_per_second(self) -> float:
        return self.calls / self.total_seconds if self.total_seconds else float("nan")

    def restore(self) -> None:
        """Put every masked tensor back to its original values."""
        self._apply(np.ones(self.graph.n_classes))

    # ---- for searches whose weights change between steps (KD between pruning steps) ----------
    @torch.no_grad()
    def zero_dead(self, keep_vec: np.ndarray, model: torch.nn.Module | None = None) -> None:
        """Zero the producer positions of the dropped channels of ``model`` (default: the working
        copy) in place, leaving the kept positions as they are. Used after every optimiser step
        while a masked model trains, so that it keeps computing what the pruned model would."""
        alive = self.graph.atom_keep(keep_vec)
        model = self.model if model is None else model
        for t, _orig, d, labels in self._slots:
            m = alive[labels]
            if m.all():
                continue
            if model is not self.model:
                t = tensor_at(model, self._names[id(t)])
            shape = [1] * t.dim()
            shape[d] = -1
            t.mul_(torch.as_tensor(m, dtype=t.dtype, device=t.device).view(shape))

    @torch.no_grad()
    def rebase(self) -> None:
        """Take the working copy's current weights as the new originals (after it was trained)."""
        for t, orig, _d, _labels in self._slots:
            orig.copy_(t)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The working copy's original (unmasked) weights and buffers."""
        self.restore()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights into the working copy and take them as the new originals."""
        self.model.load_state_dict(state)
        self.rebase()
