"""The folder of one search: a JSONL row per evaluation, checkpoints, and the reward curve.

Layout of ``run_dir``::

    run.json              what the search is (model signature, budget, policy, config, seed);
                          a folder that holds another search is refused, never mixed
    evals.jsonl           one row per evaluate() call (reward, accuracy, cost ratios, step ...)
    checkpoint.json       the policy's state after its last finished step (JSON only)
    checkpoint-K.safetensors  tensors of that state (weights of a model that was trained)
    result.json           the final keep vector and summary, once the search has finished
    reward_curve.png      reward per evaluation, with the committed candidates marked

Running the same search again with the same folder resumes from ``checkpoint.json`` (rows logged
after it are dropped and recomputed), or returns the finished result straight away.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FxpruneError

log = logging.getLogger(__name__)

_FILES = ("run.json", "evals.jsonl", "checkpoint.json", "result.json", "reward_curve.png")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class SearchRun:
    """One search's log and checkpoints in ``folder`` (see the module docstring).

    ``key``: a JSON-able description of the search; resuming needs the same key. ``resume=False``
    clears the folder first. ``max_evals``: :attr:`exhausted` turns true after that many rows.
    """

    def __init__(self, folder: str | Path, key: dict[str, Any], *, resume: bool = True,
                 max_evals: int | None = None):
        if max_evals is not None and (isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1):
            raise FxpruneError(f"max_evals={max_evals!r} must be a positive integer or None")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise FxpruneError(f"run_dir '{self.folder}' is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key, self.max_evals = json.loads(json.dumps(key)), max_evals
        meta = self.folder / "run.json"
        if not resume:
            self._clear()
        if meta.exists():
            old = json.loads(meta.read_text())
            if old != self.key:
                diff = sorted(k for k in set(old) | set(self.key) if old.get(k) != self.key.get(k))
                raise FxpruneError(f"run_dir '{self.folder}' holds another search (differs in {diff}); "
                                   "use another folder, or resume=False to start this one afresh there")
        else:
            _write_atomic(meta, json.dumps(self.key, indent=1))
        self.rows: list[dict[str, Any]] = []
        self._ckpt = self._read_json("checkpoint.json")
        self.result = self._read_json("result.json")
        if self.result is None:
            self._reload_rows(self._ckpt["n_rows"] if self._ckpt else 0)
        else:
            self._reload_rows(None)

    # ---- rows ----------------------------------------------------------------------------------
    def _clear(self) -> None:
        for name in _FILES:
            (self.folder / name).unlink(missing_ok=True)
        for p in self.folder.glob("checkpoint-*.safetensors"):
            p.unlink()

    def _read_json(self, name: str) -> dict[str, Any] | None:
        p = self.folder / name
        return json.loads(p.read_text()) if p.exists() else None

    def _reload_rows(self, n: int | None) -> None:
        path = self.folder / "evals.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        lines = [ln for ln in lines if ln.strip()][:n]
        self.rows = [json.loads(ln) for ln in lines]
        _write_atomic(path, "".join(ln + "\n" for ln in lines))

    def log(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append one evaluation row (the ``eval`` index is added)."""
        row = {"eval": len(self.rows), **row}
        with open(self.folder / "evals.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        return row

    @property
    def n_evals(self) -> int:
        return len(self.rows)

    @property
    def exhausted(self) -> bool:
        return self.max_evals is not None and self.n_evals >= self.max_evals

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        """Write ``state`` (JSON-able) and named tensor dicts; the JSON file is replaced last and
        atomically, so a kill at any moment leaves the previous or the new checkpoint whole."""
        from safetensors.torch import save_file

        k = (self._ckpt or {}).get("k", -1) + 1
        files = {}
        for name, tdict in (tensors or {}).items():
            fname = f"checkpoint-{k}-{name}.safetensors"
            save_file({n: t.detach().cpu().contiguous() for n, t in tdict.items()}, str(self.folder / fname))
            files[name] = fname
        self._ckpt = {"k": k, "n_rows": len(self.rows), "state": state, "tensors": files}
        _write_atomic(self.folder / "checkpoint.json", json.dumps(self._ckpt))
        for p in self.folder.glob("checkpoint-*.safetensors"):
            if p.name not in files.values():
                p.unlink()

    def load_checkpoint(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]] | None:
        """The last checkpoint's state and tensors, or None when there is none."""
        from safetensors.torch import load_file

        if self._ckpt is None:
            return None
        tensors = {name: load_file(str(self.folder / f)) for name, f in self._ckpt["tensors"].items()}
        log.info("resuming the search in %s after %d evaluations", self.folder, self._ckpt["n_rows"])
        return self._ckpt["state"], tensors

    def finish(self, result: dict[str, Any], model_state: dict[str, torch.Tensor] | None = None) -> None:
        """Record the final result (and the trained weights, if any) and draw the reward curve."""
        from safetensors.torch import save_file

        if model_state is not None:
            save_file({n: t.detach().cpu().contiguous() for n, t in model_state.items()},
                      str(self.folder / "result-model.safetensors"))
            result = {**result, "model": "result-model.safetensors"}
        _write_atomic(self.folder / "result.json", json.dumps(result))
        self.result = result
        self.plot_reward_curve()

    def result_model_state(self) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        if not self.result or "model" not in self.result:
            return None
        return load_file(str(self.folder / self.result["model"]))

    def plot_reward_curve(self, path: str | Path | None = None) -> Path:
        from .plots import plot_reward_curve

        return plot_reward_curve(self.rows, Path(path) if path else self.folder / "reward_curve.png")
