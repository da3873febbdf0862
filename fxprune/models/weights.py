"""Reading user weight files without unpickling: ``.safetensors``, or PyTorch checkpoints through
``torch.load(weights_only=True)`` (``{"state_dict": ...}`` or a bare state dict; ``module.``
prefixes of DataParallel checkpoints stripped)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import FxpruneError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FxpruneError(f"no weights file at '{path}'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise FxpruneError(f"'{path}' is not a readable weights file: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FxpruneError(f"'{path}' holds no state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model: torch.nn.Module, path: str | Path, state: dict | None = None) -> torch.nn.Module:
    """Load ``path`` (or its already read ``state``) into ``model``: every key must fit
    (``num_batches_tracked`` may be missing)."""
    state = read_state_dict(path) if state is None else state
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (the model's is {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise FxpruneError(f"'{path}' does not fit {type(model).__name__}: wrong shapes for {'; '.join(wrong[:3])}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise FxpruneError(f"'{path}' does not fit {type(model).__name__}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model
