"""Rules for ops that move channels between dims: view/reshape/flatten (channel x spatial
expansion into a linear layer, channel-shuffle splits and merges), permute/transpose
(channels-last blocks), unsqueeze/squeeze and expand.

A reshape is split into runs of dims whose sizes multiply to the same number. Inside a run the
labels of its (single) labelled input dim are broadcast over the run, reshaped to the output
dims, and attached to the innermost output dim along which they vary; positions that differ only
along the other varying dims are coupled, so that removing a channel always removes whole slices
and the reshape stays valid (the two halves of a channel shuffle, the heads of a split).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..context import FIXED, Refuse, full_labels, shape_of
from ..registry import register


def _runs(a: tuple, b: tuple):
    """Pairs of (input dims, output dims) with equal products, ignoring size-1 dims."""
    ia = [d for d, s in enumerate(a) if s != 1]
    ob = [d for d, s in enumerate(b) if s != 1]
    i = j = 0
    while i < len(ia) and j < len(ob):
        gi, gj = [ia[i]], [ob[j]]
        pi, pj = a[ia[i]], b[ob[j]]
        i += 1
        j += 1
        while pi != pj:
            if pi < pj:
                if i >= len(ia):
                    raise Refuse(f"cannot match reshape {a} -> {b}")
                gi.append(ia[i])
                pi *= a[ia[i]]
                i += 1
            else:
                if j >= len(ob):
                    raise Refuse(f"cannot match reshape {a} -> {b}")
                gj.append(ob[j])
                pj *= b[ob[j]]
                j += 1
        yield gi, gj
    if i < len(ia) or j < len(ob):
        raise Refuse(f"cannot match reshape {a} -> {b}")


def attach(ctx, full: np.ndarray, dims: list[int], out: dict, why: str) -> None:
    """Attach an N-d label block to output dims (see module docstring)."""
    varying = [k for k in range(full.ndim)
               if full.shape[k] > 1 and not (full == full.take([0], axis=k)).all()]
    if not varying:
        return
    ax = varying[-1]
    moved = np.moveaxis(full, ax, -1).reshape(-1, full.shape[ax])
    if len(varying) > 1:
        ctx.union(moved[1:].ravel(), np.broadcast_to(moved[0], moved[1:].shape).ravel(), why)
    out[dims[ax]] = moved[0].copy()


def reshape_labels(ctx, in_shape: tuple, lab: dict, out_shape: tuple, why: str) -> dict:
    out: dict = {}
    for gi, gj in _runs(in_shape, out_shape):
        labelled = [d for d in gi if d in lab and not (lab[d] == FIXED).all()]
        if not labelled:
            continue
        if len(labelled) > 1:
            reason = f"{why}: two channel dims are merged into one"
            for d in labelled:
                ctx.pin(lab[d], reason)
            for d in gj:  # fixed-size channel dims from here on
                out[d] = ctx.new_atoms(out_shape[d], "opaque")
                ctx.pin(out[d], reason)
            continue
        d0 = labelled[0]
        shape = [in_shape[d] for d in gi]
        view = [1] * len(gi)
        view[gi.index(d0)] = in_shape[d0]
        full = np.broadcast_to(lab[d0].reshape(view), shape).reshape([out_shape[d] for d in gj])
        attach(ctx, full, gj, out, why)
    return out


def _shape_args(node, first: int):
    args = list(node.args)
    if len(args) == first + 1 and isinstance(args[first], (tuple, list, torch.Size)):
        return list(args[first]), True
    return args[first:], False


def rewrite_shape_args(node, sizes, first: int = 1) -> None:
    """Set the size of every channel-carrying output dim to its pruned value. Such sizes are
    static, so a size read at run time from another tensor (``B, C = x.shape``) is replaced by a
    constant too; ``-1`` and the sizes of batch/spatial dims are left alone (they stay dynamic)."""
    lab = sizes.labels(node)
    if not isinstance(lab, dict) or not lab:
        return
    new = sizes.new_shape(node)
    shp, packed = _shape_args(node, first)
    if "size" in node.kwargs or "shape" in node.kwargs or len(shp) != len(new):
        raise RuntimeError(f"cannot rewrite the shape arguments of node '{node.name}'")
    for d in lab:
        if not (isinstance(shp[d], int) and shp[d] == -1):
            shp[d] = new[d]
    if packed:
        node.update_arg(first, list(shp) if isinstance(node.args[first], list) else tuple(shp))
    else:
        node.args = tuple(list(node.args[:first]) + shp)


def _reshape(ctx, node):
    x = node.args[0]
    return reshape_labels(ctx, shape_of(x), ctx.tensor_labels(x), shape_of(node), f"reshape at '{node.name}'")


register("method:view", "method:reshape", torch.reshape, rewrite=rewrite_shape_args)(_reshape)
register(torch.flatten, "method:flatten", nn.Flatten, torch.unsqueeze, "method:unsqueeze",
         torch.squeeze, "method:squeeze")(_reshape)


def _resize_unflatten(m, sizes, node):
    nd = len(sizes.old_shape(node.args[0]))
    d = m.dim % nd
    m.unflattened_size = tuple(sizes.new(node, d + i) for i in range(len(m.unflattened_size)))


register(nn.Unflatten, resize=_resize_unflatten)(_reshape)


@register(torch.permute, "method:permute")
def permute(ctx, node):
    perm, _ = _shape_args(node, 1)
    perm = node.kwargs.get("dims", perm)
    nd = len(shape_of(node))
    perm = [p % nd for p in perm]
    lab = ctx.tensor_labels(node.args[0])
    return {i: lab[p] for i, p in enumerate(perm) if p in lab}


@register(torch.transpose, "method:transpose", torch.swapaxes, "method:swapaxes", torch.swapdims)
def transpose(ctx, node):
    nd = len(shape_of(node))
    a, b = node.args[1] % nd, node.args[2] % nd
    lab = ctx.tensor_labels(node.args[0])
    out = {d: v for d, v in lab.items() if d not in (a, b)}
    if a in lab:
        out[b] = lab[a]
    if b in lab:
        out[a] = lab[b]
    return out


@register("method:expand", rewrite=rewrite_shape_args)
def expand(ctx, node):
    xs, os_ = shape_of(node.args[0]), shape_of(node)
    off = len(os_) - len(xs)
    lab = ctx.tensor_labels(node.args[0])
    return {d + off: v for d, v in lab.items() if xs[d] == os_[d + off]}


def _couple_with(ctx, out: dict, other, why: str) -> dict:
    """``x.reshape_as(other)`` / ``x.expand_as(other)`` take ``other``'s run-time shape, so every
    output dim must shrink exactly as ``other``'s does."""
    os_ = shape_of(other)
    olab = ctx.tensor_labels(other)
    for d, size in enumerate(os_):
        if size <= 1:
            continue
        mine = out.get(d)
        theirs = olab.get(d)
        if mine is None and theirs is None:
            continue
        a = mine if mine is not None else np.full(size, FIXED, np.int64)
        b = theirs if theirs is not None else np.full(size, FIXED, np.int64)
        ctx.union(a, b, why)
        out[d] = a if mine is not None and not (a == FIXED).all() else b
    return out


@register("method:reshape_as", "method:view_as")
def reshape_as(ctx, node):
    x, other = node.args[0], node.args[1]
    out = reshape_labels(ctx, shape_of(x), ctx.tensor_labels(x), shape_of(node), f"reshape at '{node.name}'")
    return _couple_with(ctx, out, other, f"'{node.name}' takes the shape of another tensor")


@register("method:expand_as")
def expand_as(ctx, node):
    out = expand(ctx, node)
    return _couple_with(ctx, out, node.args[1], f"'{node.name}' takes the shape of another tensor")


@register("method:repeat", torch.tile, "method:tile")
def repeat(ctx, node):
    """Tiling: every copy of a channel goes with it (the repeat counts stay as they are)."""
    x = node.args[0]
    xs, os_ = shape_of(x), shape_of(node)
    lab = ctx.tensor_labels(x)
    off = len(os_) - len(xs)
    out = {}
    for d, arr in lab.items():
        reps = os_[d + off] // xs[d]
        out[d + off] = np.tile(arr, reps)
    return out


def _dim_of(node, pos: int, nd: int, default=None):
    dim = node.kwargs.get("dim", node.args[pos] if len(node.args) > pos else default)
    if dim is None:
        return None
    if not isinstance(dim, int):
        raise Refuse("dim is not a constant")
    return dim % nd


@register(torch.repeat_interleave, "method:repeat_interleave")
def repeat_interleave(ctx, node):
    """Each position repeated ``repeats`` times along ``dim``: a removed channel takes its copies."""
    x = node.args[0]
    xs, os_ = shape_of(x), shape_of(node)
    reps = node.kwargs.get("repeats", node.args[1] if len(node.args) > 1 else None)
    dim = _dim_of(node, 2, len(xs))
    lab = ctx.tensor_labels(x)
    if dim is None:
        if lab:
            raise Refuse("repeat_interleave without dim flattens the channels")
        return {}
    if not isinstance(reps, int):
        if dim in lab:
            raise Refuse("repeats is a tensor")
        return dict(lab)
    out = dict(lab)
    if dim in lab:
        out[dim] = np.repeat(lab[dim], reps)
    return out


@register("method:cumsum", torch.cumsum, "method:cumprod", torch.cumprod, "method:flip", torch.flip,
          "method:roll", torch.roll)
def along_dim(ctx, node):
    """Ops that combine or reorder positions along dims (cumulative sums, flips, rolls): those
    dims cannot lose positions; the others pass through."""
    x = node.args[0]
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name in ("flip", "roll"):
        dims = node.kwargs.get("dims", node.args[1] if len(node.args) > 1 else None)
        if name == "roll":
            dims = node.kwargs.get("dims", node.args[2] if len(node.args) > 2 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or range(len(xs)))
    else:
        dims = [_dim_of(node, 1, len(xs))]
    for d in dims:
        if not isinstance(d, int):
            raise Refuse("dims are not constants")
        d %= len(xs)
        if d in lab:
            ctx.pin(lab[d], f"'{node.name}' mixes positions along dim {d}")
    return {d: a for d, a in lab.items() if d not in [e % len(xs) for e in dims]}


@register(torch.stack)
def stack(ctx, node):
    """A new dim at ``dim``; the stacked tensors' other dims are coupled position by position."""
    from .indexing import tensor_list

    tensors = node.kwargs.get("tensors", node.args[0])
    out_shape = shape_of(node)
    dim = _dim_of(node, 1, len(out_shape), 0)
    parts = tensor_list(ctx, tensors)
    out = {}
    for d, size in enumerate(parts[0][0]):
        arrays = [full_labels(lab, d, shp[d]) for shp, lab in parts]
        labelled = [a for a in arrays if not (a == FIXED).all()]
        if labelled:
            ctx.union_all(arrays, f"stacked with a fixed-size tensor at '{node.name}'")
            out[d if d < dim else d + 1] = labelled[0]
    return out


@register(torch.unbind, "method:unbind")
def unbind(ctx, node):
    """One tensor per position of ``dim``: positions of that dim cannot be removed."""
    x = node.args[0]
    xs = shape_of(x)
    dim = _dim_of(node, 1, len(xs), 0)
    lab = ctx.tensor_labels(x)
    if dim in lab:
        ctx.pin(lab[dim], f"'{node.name}' makes one tensor of every position of dim {dim}")
    piece = {(d if d < dim else d - 1): a for d, a in lab.items() if d != dim}
    return [dict(piece) for _ in range(xs[dim])]
