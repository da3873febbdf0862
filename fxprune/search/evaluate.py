"""Plan evaluation: score any plan on a fixed data subset, fast enough to search over thousands.

Two modes, the same metrics (to float rounding; the test suite checks it):

- ``"masked"``: one working copy of the traced model is made when the :class:`Evaluator` is built.
  For each plan every producer position of a dropped channel (conv/linear output rows and biases,
  norm scale and shift, running means) is set to zero and every kept position restored. A zeroed
  channel carries zeros through every op the pruned model would no longer compute, so the masked
  model computes what the surgically pruned one does (the dead-channel oracle, for architectures
  without channel-mixing normalisation or attention). It runs the *whole* network per plan.
- ``"compact"``: the physically pruned network is built from the working weights for each plan
  (surgery without validation, ``passes.surgery``) and scored; it costs what the pruned model costs.
  ``"auto"`` (the searches' default) is compact on a CPU and masked on a GPU, the faster of the two
  on each (on an H200 building the compact network per plan costs more host time than the masked
  forward saves, ``device_throughput.md``: masked 8.4 vs compact 4.6 plans/s on ResNet-56; on a
  2-core CPU compact is 2.5x faster, ``evaluate_throughput.md``). The
  choice depends only on the device, so a seeded search repeats bit for bit.

``train_steps=K`` (the searches' ``reward_train_steps``): the pruned network is trained for ``K``
SGD steps on fixed TRAIN batches before it is scored (:mod:`fxprune.search.probe`); it is then
always built compact, and the training happens on a copy, so the working weights do not change.

``bn_recalib=N``: before a plan is scored, the running statistics of every norm layer are
re-estimated on ``N`` batches of a calibration slice of the TRAIN data (disjoint from the reward
data) and restored afterwards (adaptive BN, :mod:`fxprune.search.bn`). Masked + recalibration
equals compact + recalibration exactly, in fp32, up to float rounding.

``precision="bf16"``: forwards run under ``torch.autocast`` in bfloat16 (3.5x faster on a CPU
with AVX-512 BF16, 7-10x slower on an AVX2-only one: ``benchmarks/results/evaluate_throughput.md``); scores then differ from
fp32 by rounding noise, enough to reorder near-ties.

Metrics: top-1 accuracy and cross-entropy when the data has labels; otherwise (or with
``metric="distill"``) a label-free agreement score with the unpruned model: the fraction of samples
whose arg-max matches, and the KL divergence of the pruned model's outputs from it.
``score``: what a search maximises, ``Metrics.score``: the accuracy (``"accuracy"``, the default)
or ``exp(-loss)`` (``"likelihood"``: the geometric mean of the probability the pruned model gives
the true label, or exp(-KL) with ``distill``). After recalibration the likelihood ranks plans by
their accuracy after fine-tuning better than the accuracy does (Spearman 0.71 against 0.58 on
ResNet-56, ``benchmarks/results/reward_fidelity.md``): it sees how sure the network still is, not
only which side of the decision boundary each sample fell on.
:meth:`Evaluator.evaluate_many` scores a list of plans; it is the one entry point a parallel
backend replaces, so results never depend on completion order.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import batches
from ..errors import FxpruneError, OptionError
from ..ir import DepGraph
from ..ir.context import ZEROED_FOR_DEAD, tensor_at
from ..plan import Plan
from .backends import LocalBackend
from .bn import kept_statistics, recalibrate
from .probe import train_probe
from .config import EVAL_MODES, PRECISIONS, SCORES

log = logging.getLogger(__name__)


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
    bn_recalib: int = 0  # calibration batches the norm statistics were re-estimated on
    mode: str = "masked"
    score: float | None = None  # what searches maximise: ``acc`` (score='accuracy') or ``exp(-loss)`` ('likelihood')
    train_steps: int = 0  # SGD steps of the training probe before scoring (fxprune.search.probe)

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = self.acc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(name: str, val: Any, allow_none: bool = True) -> None:
    if val is None and allow_none:
        return
    if isinstance(val, bool) or not isinstance(val, int) or val < 1:
        raise OptionError(f"{name}={val!r} must be a positive integer{' or None' if allow_none else ''}")


def require_whole_graph(graph) -> None:
    """Plan evaluation runs the model as one graph: refuse one pruned inside traceable regions."""
    if graph.regions:
        raise FxpruneError(f"{graph.model_name}.forward is not traceable ({graph.untraced}); plan evaluation "
                           "needs the whole model as one graph, so only the baselines (global, uniform) can prune it")


class Evaluator:
    """``evaluate(plan) -> Metrics`` on ``data`` (at most ``n_samples`` samples, kept in memory).

    ``metric``: ``"accuracy"`` (needs labels) or ``"distill"`` (label-free, against the unpruned
    model); ``"auto"`` picks accuracy when every batch has labels. ``budget``: a
    :class:`~fxprune.Budget`; plans over a FLOPs or params budget are reported ``feasible=False``.
    ``mode``, ``bn_recalib`` (with ``calibration=``: TRAIN batches disjoint from ``data``) and
    ``precision``, ``score``: see the module docstring. ``train_steps`` (with ``train_data=``:
    TRAIN batches disjoint from ``data``, at least ``train_steps * train_batch`` samples are used)
    and ``train_lr``, ``train_batch``: the training probe, :mod:`fxprune.search.probe`.
    """

    def __init__(self, graph, data: Any, *, metric: str = "auto", n_samples: int | None = 1000,
                 batch_size: int | None = None, device: str | torch.device | None = None,
                 budget: Any = None, precision: str = "fp32", mode: str = "masked", bn_recalib: int = 0,
                 calibration: Any = None, score: str = "accuracy", train_steps: int = 0,
                 train_data: Any = None, train_lr: float = 0.02, train_batch: int = 64):
        if score not in SCORES:
            raise OptionError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
        if metric not in ("auto", "accuracy", "distill"):
            raise OptionError(f"unknown metric '{metric}'; choose 'accuracy', 'distill' or 'auto'")
        if precision not in PRECISIONS:
            raise OptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if mode not in EVAL_MODES:
            raise OptionError(f"unknown evaluation mode {mode!r}; choose one of {', '.join(EVAL_MODES)}")
        if not isinstance(graph, DepGraph):
            raise FxpruneError(f"Evaluator needs the DepGraph of fxprune.analyze(model), got {type(graph).__name__}")
        require_whole_graph(graph)
        _positive("n_samples", n_samples)
        _positive("batch_size", batch_size)
        if isinstance(bn_recalib, bool) or not isinstance(bn_recalib, int) or bn_recalib < 0:
            raise OptionError(f"bn_recalib={bn_recalib!r} must be an integer >= 0 (calibration batches)")
        if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
            raise OptionError(f"train_steps={train_steps!r} must be an integer >= 0 (SGD steps before scoring)")
        _positive("train_batch", train_batch, allow_none=False)
        if not (isinstance(train_lr, (int, float)) and not isinstance(train_lr, bool) and 0 < train_lr < math.inf):
            raise OptionError(f"train_lr={train_lr!r} must be a positive number")
        self.graph, self.budget, self.precision, self.score = graph, budget, precision, score
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.mode = ("masked" if self.device.type == "cuda" else "compact") if mode == "auto" else mode
        data_batches = batches(data, n_samples)
        xs = torch.cat([x for x, _ in data_batches])
        want = graph.input_shapes[0] if graph.input_shapes and isinstance(graph.input_shapes[0], list) else None
        if want is not None and list(xs.shape[1:]) != list(want[1:]):
            raise OptionError(f"the reward data has samples of shape {tuple(xs.shape[1:])}, but the model was analysed "
                              f"with inputs of shape {tuple(want[1:])} (example_inputs): pass example_inputs of the "
                              "data's shape")
        has_labels = all(y is not None for _, y in data_batches)
        if metric == "accuracy" and not has_labels:
            raise OptionError("metric='accuracy' needs labelled data: (inputs, targets) batches")
        self.metric = "accuracy" if metric == "auto" and has_labels else ("distill" if metric == "auto" else metric)
        bs = batch_size or max(x.shape[0] for x, _ in data_batches)
        self._x = [xs[i:i + bs].to(self.device) for i in range(0, xs.shape[0], bs)]
        ys = torch.cat([y for _, y in data_batches]) if has_labels else None
        if ys is not None:
            self._check_labels(ys)
        self._y = [ys[i:i + bs].to(self.device) for i in range(0, ys.shape[0], bs)] if ys is not None else None
        self.n_samples = int(xs.shape[0])
        self.bn_recalib = bn_recalib
        self._calib: list[torch.Tensor] = []
        if bn_recalib:
            if calibration is None:
                raise OptionError("bn_recalib needs calibration= data: TRAIN batches disjoint from the reward data")
            self._calib = [x.to(self.device) for x, _ in batches(calibration)][:bn_recalib]
        self.train_steps, self.train_lr = train_steps, float(train_lr)
        self._train: list[tuple[torch.Tensor, torch.Tensor]] = []
        if train_steps:
            self._train = self._probe_batches(train_data, train_steps, train_batch)
        self.model = copy.deepcopy(graph.gm).to(self.device).eval()
        self._masked = False
        self._slots = self._collect_slots()
        self._teacher = None
        if self.metric == "distill":
            self._teacher = [self._forward(self.model, x) for x in self._x]
        self.calls, self.total_seconds = 0, 0.0
        self.backend: Any = None  # where evaluate_many runs (None: here)
        self.on_batch: Any = None  # called with the backend after each remote batch (progress, logs)

    def _check_labels(self, ys: torch.Tensor) -> None:
        """Labels are class indices within the model's outputs (checked before any scoring)."""
        if ys.dtype.is_floating_point or ys.dim() != 1:
            raise OptionError(f"reward labels must be a 1-D integer tensor of class indices, got {ys.dtype} "
                              f"{tuple(ys.shape)}")
        out = next(n for n in self.graph.gm.graph.nodes if n.op == "output").args[0]
        out = out[0] if isinstance(out, (tuple, list)) else out
        shape = getattr(getattr(out, "meta", {}).get("tensor_meta"), "shape", None)
        if shape is not None and len(shape) == 2 and ys.numel():
            lo, hi = int(ys.min()), int(ys.max())
            if lo < 0 or hi >= shape[1]:
                raise OptionError(f"reward labels must lie in [0, {shape[1] - 1}] (the model has {shape[1]} "
                                  f"outputs); found labels {lo}..{hi}")

    def _probe_batches(self, data: Any, steps: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The training probe's batches: the first ``steps * size`` labelled samples of ``data``."""
        if self.metric != "accuracy":
            raise OptionError("reward_train_steps needs labelled data: the training probe trains on labels")
        if data is None:
            raise OptionError("reward_train_steps needs train_data=: TRAIN batches disjoint from the reward data")
        got = batches(data, steps * size)
        if any(y is None for _, y in got):
            raise OptionError("reward_train_steps needs labelled training batches (inputs, targets)")
        xs, ys = torch.cat([x for x, _ in got]), torch.cat([y for _, y in got])
        if xs.shape[0] < size:
            raise OptionError(f"the training probe needs at least train_batch={size} samples; the training data "
                              f"has {xs.shape[0]}")
        self._check_labels(ys)
        return [(xs[i:i + size].to(self.device), ys[i:i + size].to(self.device))
                for i in range(0, xs.shape[0] - size + 1, size)]

    # ---- masks on the working copy ---------------------------------------------------------------
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
    def apply(self, keep: Any) -> None:
        """Mask the working copy for ``keep`` (a plan, ``{gid: kept}`` or a keep vector): dropped
        channels zeroed, kept ones restored from the working weights."""
        alive = self.graph.atom_keep(self.keep_vector(keep))
        self._masked = not alive.all()
        for t, orig, d, labels in self._slots:
            m = alive[labels]
            if m.all():
                t.copy_(orig)
                continue
            shape = [1] * t.dim()
            shape[d] = -1
            t.copy_(orig * torch.as_tensor(m, dtype=orig.dtype, device=orig.device).view(shape))

    def restore(self) -> None:
        """Put every masked tensor back to its working value."""
        self.apply(np.ones(self.graph.n_classes))

    @torch.no_grad()
    def zero_dead(self, keep: Any, model: torch.nn.Module | None = None, scale: float = 0.0) -> None:
        """Zero the producer positions of the dropped channels of ``model`` (default: the working
        copy) in place, leaving the kept positions as they are: called after every optimiser step
        while a masked model trains, so that it keeps computing what the pruned model would.
        ``scale`` multiplies them instead of zeroing (a fade: under batch statistics a normalised
        channel's output shrinks by that factor; at 0 it is gone whatever the statistics)."""
        alive = self.graph.atom_keep(self.keep_vector(keep))
        model = self.model if model is None else model
        for t, _orig, d, labels in self._slots:
            m = alive[labels]
            if m.all():
                continue
            if model is not self.model:
                t = tensor_at(model, self._names[id(t)])
            shape = [1] * t.dim()
            shape[d] = -1
            factor = np.where(m, 1.0, float(scale))
            t.mul_(torch.as_tensor(factor, dtype=t.dtype, device=t.device).view(shape))

    @torch.no_grad()
    def rebase(self) -> None:
        """Take the working copy's current weights as its new working values."""
        for t, orig, _d, _labels in self._slots:
            orig.copy_(t)

    @contextlib.contextmanager
    def training(self, keep: Any) -> Iterator[torch.nn.Module]:
        """``with ev.training(keep) as model:`` the working copy, masked for ``keep``, to train (in
        place, through a :class:`~fxprune.search.Trainer` whose step hook keeps the dropped
        channels at zero); afterwards its weights are the new working weights and it is back in
        eval mode. This is the one way a search changes weights."""
        self.apply(keep)
        try:
            yield self.model
        finally:
            self.model.eval()
            self.rebase()

    # ---- scoring --------------------------------------------------------------------------------
    def keep_vector(self, plan: Plan | dict | np.ndarray) -> np.ndarray:
        if isinstance(plan, np.ndarray):
            if plan.shape != (self.graph.n_classes,):
                raise FxpruneError(f"a keep vector for this model has {self.graph.n_classes} entries, got shape "
                                   f"{plan.shape} (a plan of another architecture?)")
            return plan.astype(np.float64)
        if isinstance(plan, Plan):
            plan.validate(self.graph)
            return self.graph.keep_vector(plan.keep)
        if isinstance(plan, dict):
            return self.graph.keep_vector(Plan.from_graph(self.graph, plan).keep if plan else {})
        raise FxpruneError(f"cannot evaluate a {type(plan).__name__}: pass a Plan, a dict of kept indices "
                           "per group or a keep vector")

    @torch.no_grad()
    def _forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float()

    def _network(self, keep_vec: np.ndarray) -> torch.nn.Module:
        if self.mode == "compact" or self.train_steps:
            from ..passes.prune_channels import surgery

            if self._masked:  # surgery slices the working weights, not a masked view of them
                self.restore()
            return surgery(self.graph, keep_vec, self.model).eval()
        self.apply(keep_vec)
        return self.model

    @torch.no_grad()
    def _score(self, net: torch.nn.Module) -> tuple[float, float]:
        correct, loss = 0.0, 0.0
        for i, x in enumerate(self._x):
            out = self._forward(net, x)
            if self.metric == "accuracy":
                y = self._y[i]
                correct += float((out.argmax(1) == y).sum())
                loss += float(F.cross_entropy(out, y, reduction="sum"))
            else:
                ref = self._teacher[i]
                correct += float((out.argmax(-1) == ref.argmax(-1)).sum()) if out.dim() > 1 else 0.0
                loss += float(F.kl_div(F.log_softmax(out, -1), F.log_softmax(ref, -1), log_target=True,
                                       reduction="sum"))
        return correct / self.n_samples, loss / self.n_samples

    def evaluate(self, plan: Plan | dict | np.ndarray) -> Metrics:
        """Metrics of ``plan`` (a Plan, ``{group id: kept indices}`` or a 0/1 keep vector over classes)."""
        t0 = time.perf_counter()
        keep_vec = self.keep_vector(plan)
        net = self._network(keep_vec)
        if self.train_steps:  # a compact copy: trained, scored and thrown away
            if self.bn_recalib:
                recalibrate(net, self._calib, self.precision)
            train_probe(net, self._train, self.train_steps, self.train_lr)
            acc, loss = self._score(net)
        elif self.bn_recalib:
            with kept_statistics(net):
                recalibrate(net, self._calib, self.precision)
                acc, loss = self._score(net)
        else:
            acc, loss = self._score(net)
        cost = self.graph.cost
        flops, params = float(cost.flops(keep_vec)), float(cost.params(keep_vec))
        fr, pr = flops / cost.full_flops, params / max(cost.full_params, 1e-12)
        feasible = True
        if self.budget is not None and self.budget.metric in ("flops", "params"):
            feasible = (fr if self.budget.metric == "flops" else pr) <= self.budget.value + 1e-9
        dt = time.perf_counter() - t0
        self.calls += 1
        self.total_seconds += dt
        score = acc if self.score == "accuracy" else math.exp(-loss)
        return Metrics(acc, loss, flops, params, fr, pr, feasible, dt, len(self._calib),
                       "compact" if self.train_steps else self.mode, score, self.train_steps)

    __call__ = evaluate

    def evaluate_many(self, plans: Sequence[Plan | dict | np.ndarray]) -> list[Metrics]:
        """Metrics of every plan, in the order given, on this evaluator's ``backend`` (default:
        here, one after the other; ``fxprune.search.backends`` for worker processes and Ray)."""
        vecs = [self.keep_vector(p) for p in plans]
        if self.backend is None or isinstance(self.backend, LocalBackend):
            return [self.evaluate(v) for v in vecs]
        out = self.backend.run(self, vecs)
        self.calls += len(out)
        self.total_seconds += sum(m.seconds for m in out)
        if self.on_batch is not None:
            self.on_batch(self.backend)
        return out

    def for_workers(self) -> bytes:
        """This evaluator, pickled for worker processes (without its backend and callbacks)."""
        import pickle

        self.restore()
        backend, hook = self.backend, self.on_batch
        self.backend = self.on_batch = None
        try:
            blob = pickle.dumps(self)
            pickle.loads(blob)  # noqa: S301 - our own bytes; fail here, with a clear message, not in a worker
        except Exception as exc:  # noqa: BLE001 - whatever stops the model from travelling
            raise FxpruneError(f"cannot send {self.graph.model_name}'s evaluator to worker processes "
                               f"({type(exc).__name__}: {exc}); use backend='local'") from exc
        finally:
            self.backend, self.on_batch = backend, hook
        return blob

    @property
    def plans_per_second(self) -> float:
        return self.calls / self.total_seconds if self.total_seconds else float("nan")

    def fingerprint(self) -> str:
        """A checksum of the scoring set-up (reward and calibration data, metric, mode, precision)."""
        h = hashlib.sha1(f"{self.metric}:{self.mode}:{self.precision}:{self.bn_recalib}".encode())
        if self.train_steps:
            h.update(f"probe:{self.train_steps}:{self.train_lr!r}".encode())
        for x in [*self._x, *self._calib, *(x for x, _ in self._train)]:
            h.update(f"{tuple(x.shape)}:{float(x.double().sum()):.9g}".encode())
        for y in self._y or []:
            h.update(f"{int(y.long().sum())}".encode())
        return h.hexdigest()[:16]

    def recalibrate(self, model: torch.nn.Module) -> int:
        """Re-estimate ``model``'s norm statistics on the calibration batches, as every plan's
        score was (a search's final pruned model gets the statistics its score assumed); returns
        the number of norm layers recalibrated (0 without ``bn_recalib``)."""
        if not self._calib:
            return 0
        dev = next((p.device for p in model.parameters()), self.device)
        return recalibrate(model, [x.to(dev) for x in self._calib], "fp32")

    # ---- the working weights ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The working copy's weights and buffers (unmasked)."""
        self.restore()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights into the working copy and take them as the new working weights."""
        self.model.load_state_dict(state)
        self.rebase()
