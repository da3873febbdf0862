"""The folder of one search: a JSONL row per evaluation, checkpoints, and the reward curve.

Layout of ``run_dir``::

    run.json              what the search is (model signature, budget, policy, config, seed);
                          a folder that holds another search is refused, never mixed
    evals.jsonl           one row per evaluation (and one per committed step): ``kind``, reward,
                          accuracy, cost ratios, step, epoch, bn_recalib ...
    checkpoint.json       the policy's state after its last finished step or update (JSON)
    checkpoint-K-NAME.safetensors  tensors of that state: module weights, optimizer buffers,
                          generator states, any other tensors
    result.json           the final keep vector and summary, once the search has finished
    reward_curve.png      reward per evaluation, with the committed candidates marked

Running the same search again with the same folder resumes from ``checkpoint.json`` (rows logged
after it are dropped and recomputed), or returns the finished result straight away. A corrupt
file is reported by name, with the way out (``resume=False`` starts afresh); nothing is half
loaded. Nothing here is unpickled: JSON and safetensors only.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FxpruneError

log = logging.getLogger(__name__)

_FILES = ("run.json", "evals.jsonl", "checkpoint.json", "result.json", "reward_curve.png")


class RowKind:
    """The ``kind`` of a logged row. ``EVALUATED`` kinds count towards ``max_evals``."""

    BASELINE = "baseline"  # the unpruned model, scored once
    CANDIDATE = "candidate"  # a sampled plan
    LOOKAHEAD = "lookahead"  # a plan scored only for a lookahead value (mcq, depth > 1)
    AFTER_TRAINING = "kd"  # the committed plan re-scored after the working model was trained
    FINAL = "final"  # a final decode scored at the end (ppo's greedy decode)
    COMMIT = "commit"  # a step's committed candidate (copied from its row; not an evaluation)
    EPOCH = "epoch"  # an epoch summary (sac; not an evaluation)
    SCREENED = "screened"  # a sampled plan the cost model rejected before any evaluation (ppo)
    UPDATE = "update"  # a policy update's summary (ppo: infeasible fraction, feasible accuracy, losses)
    EVALUATED = (BASELINE, CANDIDATE, LOOKAHEAD, AFTER_TRAINING, FINAL)


class CorruptRun(FxpruneError):
    """A file of a run folder cannot be read; the message names it."""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- optimizer and generator states as JSON + tensors ------------------------------------------------
def split_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested state (an optimizer's ``state_dict()``) by a reference
    ``{"__tensor__": key}`` and put it into ``tensors``; the rest stays JSON-able."""
    if isinstance(state, torch.Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = state.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(state, dict):
        return {"__dict__": [[split_state(k, prefix, tensors), split_state(v, prefix, tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {"__list__": [split_state(v, prefix, tensors) for v in state], "tuple": isinstance(state, tuple)}
    if isinstance(state, np.generic):
        return state.item()
    return state


def join_state(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(state, dict):
        if "__tensor__" in state:
            return tensors[state["__tensor__"]]
        if "__dict__" in state:
            return {join_state(k, tensors): join_state(v, tensors) for k, v in state["__dict__"]}
        if "__list__" in state:
            items = [join_state(v, tensors) for v in state["__list__"]]
            return tuple(items) if state.get("tuple") else items
    return state


def generator_state(gen: np.random.Generator | torch.Generator) -> Any:
    if isinstance(gen, np.random.Generator):
        return {"numpy": gen.bit_generator.state}
    return {"torch": gen.get_state().tolist()}


def set_generator_state(gen: np.random.Generator | torch.Generator, state: dict[str, Any]) -> None:
    if isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["numpy"]
    else:
        gen.set_state(torch.tensor(state["torch"], dtype=torch.uint8))


class SearchRun:
    """One search's log and checkpoints in ``folder`` (see the module docstring).

    ``key``: a JSON-able description of the search; resuming needs the same key. ``resume=False``
    clears the folder first. ``max_evals``: :attr:`exhausted` turns true after that many evaluated
    rows (commit and epoch rows do not count).
    """

    def __init__(self, folder: str | Path, key: dict[str, Any], *, resume: bool = True,
                 max_evals: int | None = None):
        if max_evals is not None and (isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1):
            raise FxpruneError(f"max_evals={max_evals!r} must be a positive integer or None")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise FxpruneError(f"run_dir '{self.folder}' is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise FxpruneError(f"cannot write into run_dir '{self.folder}': {exc.strerror or exc}") from exc
        self.key, self.max_evals = json.loads(json.dumps(key, default=str)), max_evals
        meta = self.folder / "run.json"
        if not resume:
            self._clear()
        if meta.exists():
            old = self._read_json("run.json")
            if old != self.key:
                diff = sorted(k for k in set(old) | set(self.key) if old.get(k) != self.key.get(k))
                raise FxpruneError(f"run_dir '{self.folder}' holds another search (differs in {diff}); "
                                   "use another folder, or resume=False to start this one afresh there")
        else:
            _write_atomic(meta, json.dumps(self.key, indent=1))
        self.rows: list[dict[str, Any]] = []
        self._ckpt = self._read_json("checkpoint.json")
        if self._ckpt is not None and not {"k", "n_rows", "state", "tensors"} <= set(self._ckpt):
            raise CorruptRun(f"'{self.folder / 'checkpoint.json'}' is not a checkpoint of this fxprune "
                             "(fields are missing); pass resume=False to start the search afresh")
        self.result = self._read_json("result.json")
        self._reload_rows(None if self.result is not None else (self._ckpt["n_rows"] if self._ckpt else 0))

    # ---- rows ----------------------------------------------------------------------------------
    def _clear(self) -> None:
        for name in _FILES:
            (self.folder / name).unlink(missing_ok=True)
        for p in [*self.folder.glob("checkpoint-*.safetensors"), *self.folder.glob("result-*.safetensors")]:
            p.unlink()

    def _read_json(self, name: str) -> dict[str, Any] | None:
        p = self.folder / name
        if not p.exists():
            return None
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptRun(f"'{p}' is corrupt ({exc}); pass resume=False to start the search afresh") from exc
        if not isinstance(data, dict):
            raise CorruptRun(f"'{p}' does not hold a JSON object; pass resume=False to start the search afresh")
        return data

    def _reload_rows(self, n: int | None) -> None:
        path = self.folder / "evals.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        lines = [ln for ln in lines if ln.strip()][:n]
        if n is not None and len(lines) < n:
            raise CorruptRun(f"'{path}' has {len(lines)} rows but the checkpoint was taken after {n}; pass "
                             "resume=False to start the search afresh")
        rows = []
        for i, ln in enumerate(lines):
            try:
                rows.append(json.loads(ln))
            except json.JSONDecodeError as exc:
                raise CorruptRun(f"row {i + 1} of '{path}' is corrupt ({exc}); pass resume=False to start the "
                                 "search afresh") from exc
        self.rows = rows
        _write_atomic(path, "".join(ln + "\n" for ln in lines))

    def log(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append one row (the ``eval`` index, counting all rows, is added)."""
        row = {"eval": len(self.rows), **row}
        with open(self.folder / "evals.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        return row

    @property
    def n_evals(self) -> int:
        """Rows that are evaluations (not commit or epoch summaries)."""
        return sum(1 for r in self.rows if r.get("kind") in RowKind.EVALUATED or "kind" not in r)

    @property
    def exhausted(self) -> bool:
        return self.max_evals is not None and self.n_evals >= self.max_evals

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], *, modules: dict[str, dict[str, torch.Tensor]] | None = None,
                        optimizers: dict[str, Any] | None = None,
                        generators: dict[str, np.random.Generator | torch.Generator] | None = None,
                        tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Write the policy's ``state`` (JSON-able), module state dicts, optimizer state dicts
        (their buffers as tensors), generator states and loose tensors. The JSON file is replaced
        last and atomically, so a kill at any moment leaves the previous or the new checkpoint whole."""
        from safetensors.torch import save_file

        k = (self._ckpt or {}).get("k", -1) + 1
        files: dict[str, str] = {}

        def put(name: str, tdict: dict[str, torch.Tensor]) -> None:
            fname = f"checkpoint-{k}-{name}.safetensors"
            save_file({n: t.detach().cpu().contiguous() for n, t in tdict.items()}, str(self.folder / fname))
            files[name] = fname

        for name, sd in (modules or {}).items():
            put(f"module.{name}", sd)
        opt_json = {}
        for name, sd in (optimizers or {}).items():
            ts: dict[str, torch.Tensor] = {}
            opt_json[name] = split_state(sd, "t", ts)
            put(f"optimizer.{name}", ts or {"_empty": torch.zeros(1)})
        if tensors:
            put("tensors", tensors)
        self._ckpt = {"k": k, "n_rows": len(self.rows), "state": state, "tensors": files, "optimizers": opt_json,
                      "generators": {n: generator_state(g) for n, g in (generators or {}).items()}}
        _write_atomic(self.folder / "checkpoint.json", json.dumps(self._ckpt))
        for p in self.folder.glob("checkpoint-*.safetensors"):
            if p.name not in files.values():
                p.unlink()

    def load_checkpoint(self) -> "Checkpoint | None":
        """The last checkpoint (:class:`Checkpoint`), or None when there is none."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if self._ckpt is None:
            return None
        loaded: dict[str, dict[str, torch.Tensor]] = {}
        for name, f in self._ckpt["tensors"].items():
            path = self.folder / f
            try:
                loaded[name] = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise CorruptRun(f"checkpoint tensors '{path}' cannot be read ({exc}); pass resume=False to start "
                                 "the search afresh") from exc
        log.info("resuming the search in %s after %d rows", self.folder, self._ckpt["n_rows"])
        return Checkpoint(self._ckpt, loaded)

    def finish(self, result: dict[str, Any], model_state: dict[str, torch.Tensor] | None = None) -> None:
        """Record the final result (and the trained weights, if any) and draw the reward curve."""
        from safetensors.torch import save_file

        if model_state is not None:
            save_file({n: t.detach().cpu().contiguous() for n, t in model_state.items()},
                      str(self.folder / "result-model.safetensors"))
            result = {**result, "model": "result-model.safetensors"}
        _write_atomic(self.folder / "result.json", json.dumps(result, default=float))
        self.result = result
        self.plot_reward_curve()

    def result_model_state(self) -> dict[str, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not self.result or "model" not in self.result:
            return None
        path = self.folder / self.result["model"]
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CorruptRun(f"'{path}' cannot be read ({exc}); pass resume=False to run the search again") from exc

    def plot_reward_curve(self, path: str | Path | None = None) -> Path:
        from .plots import plot_reward_curve

        return plot_reward_curve(self.rows, Path(path) if path else self.folder / "reward_curve.png")


class Checkpoint:
    """A loaded checkpoint: ``state`` (JSON), ``modules[name]`` (state dicts),
    ``optimizer(name)`` (a state dict for ``load_state_dict``), ``restore_generator(name, gen)``
    and ``tensors`` (loose tensors)."""

    def __init__(self, raw: dict[str, Any], loaded: dict[str, dict[str, torch.Tensor]]):
        self.state = raw["state"]
        self.n_rows = raw["n_rows"]
        self.modules = {n[len("module."):]: t for n, t in loaded.items() if n.startswith("module.")}
        self.tensors = loaded.get("tensors", {})
        self._opt = raw.get("optimizers", {})
        self._opt_t = {n[len("optimizer."):]: t for n, t in loaded.items() if n.startswith("optimizer.")}
        self._gens = raw.get("generators", {})

    def optimizer(self, name: str) -> Any:
        return join_state(self._opt[name], self._opt_t.get(name, {}))

    def restore_generator(self, name: str, gen: np.random.Generator | torch.Generator) -> None:
        set_generator_state(gen, self._gens[name])

    def has_generator(self, name: str) -> bool:
        return name in self._gens
