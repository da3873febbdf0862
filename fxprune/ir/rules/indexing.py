"""Rules for ops that place channels at offsets: concat, split/chunk, tuple and tensor indexing
(slices), constant padding of the channel dim, and channel shuffle."""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..context import FIXED, Keyed, Refuse, full_labels, shape_of, shapes_of
from ..registry import register


def _dim_arg(node, pos: int, default=0):
    dim = node.kwargs.get("dim", node.args[pos] if len(node.args) > pos else default)
    if not isinstance(dim, int):
        raise Refuse("dim is not a constant")
    return dim


def tensor_list(ctx, tensors) -> list[tuple[tuple, dict]]:
    """``(shape, labels)`` of each tensor of a list argument: a list of nodes, or one node whose
    value is a tuple of tensors (``torch.cat(x.split(8, 1), 1)``)."""
    if isinstance(tensors, fx.Node):
        shapes, labels = shapes_of(tensors), ctx.get(tensors)
        if shapes is None or not isinstance(labels, list):
            raise Refuse("the tensor list is not a recorded tuple of tensors")
        return [(s, lab if isinstance(lab, dict) else {}) for s, lab in zip(shapes, labels)]
    return [(shape_of(t), ctx.tensor_labels(t)) for t in tensors]


@register(torch.cat, torch.concat, torch.concatenate)
def cat(ctx, node):
    tensors = node.kwargs.get("tensors", node.args[0])
    out_shape = shape_of(node)
    nd = len(out_shape)
    dim = _dim_arg(node, 1) % nd
    parts = tensor_list(ctx, tensors)
    out = {}
    joined = np.concatenate([full_labels(lab, dim, shp[dim]) for shp, lab in parts])
    if not (joined == FIXED).all():
        out[dim] = joined
    for d in range(nd):
        if d == dim or all(lab.get(d) is None for _, lab in parts):
            continue
        arrays = [full_labels(lab, d, shp[d]) for shp, lab in parts]
        labelled = [a for a in arrays if not (a == FIXED).all()]
        if labelled:
            ctx.union_all(arrays, f"concatenated with a fixed-size tensor at '{node.name}'")
            out[d] = labelled[0]
    return out


def mark_piece(ctx, arr: np.ndarray) -> np.ndarray:
    """Tag the channels of one piece of a split (or slice) with atoms of their own: the piece
    becomes a group of its own, whose ``min_keep`` then keeps it from being emptied (a zero-channel
    tensor would break its consumer). The tags belong to no tensor, so costs do not change."""
    if arr.size and not (arr == FIXED).all():
        ctx.union(arr, ctx.new_atoms(arr.size, "split"))
    return arr


def _pieces(ctx, node, x, dim):
    shapes = shapes_of(node)
    if shapes is None:
        raise Refuse("split outputs have no recorded shapes")
    lab = ctx.tensor_labels(x)
    dim %= len(shape_of(x))
    outs, start = [], 0
    for shp in shapes:
        n = shp[dim]
        outs.append({d: (mark_piece(ctx, a[start:start + n]) if d == dim else a) for d, a in lab.items()})
        start += n
    return outs


def rewrite_split(node, sizes):
    """chunk/split -> split with the pruned size of every piece."""
    x = node.args[0]
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
    new = [sizes.new_item(node, i, dim % len(sizes.old_shape(x))) for i in range(len(sizes.old_shapes(node)))]
    old = [s[dim] for s in sizes.old_shapes(node)]
    if new == old:
        return
    if node.op == "call_method":
        node.target = "split"
    else:
        node.target = torch.split
    node.args = (x, new, dim)
    node.kwargs = {}


@register(torch.split, "method:split", torch.chunk, "method:chunk", torch.tensor_split, "method:tensor_split",
          rewrite=rewrite_split)
def split(ctx, node):
    return _pieces(ctx, node, node.args[0], _dim_arg(node, 2))


def _index_items(idx, nd):
    items = list(idx) if isinstance(idx, tuple) else [idx]
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    res = []
    for it in items:
        if it is Ellipsis:
            res.extend([slice(None)] * (nd - used))
        else:
            res.append(it)
    return res + [slice(None)] * (nd - sum(1 for it in res if it is not None))


def _translate(it, kept: np.ndarray, size: int):
    """An index or slice on the original dim, expressed on the pruned dim."""
    before = np.concatenate([[0], np.cumsum(kept)])
    if isinstance(it, slice):
        start, stop, step = it.indices(size)
        return slice(int(before[start]), int(before[stop]), it.step)
    return int(before[it % size])


def _rewrite_getitem(node, sizes):
    src, idx = node.args[0], node.args[1]
    if not isinstance(sizes.labels(src), dict):
        return
    xs = sizes.old_shape(src)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    new_items, d = [], 0
    for it in items:
        if it is Ellipsis:
            d += len(xs) - used
        elif it is not None:
            kept = sizes.kept(src, d)
            if kept is not None and isinstance(it, (int, slice)):
                it = _translate(it, kept, xs[d])
            d += 1
        new_items.append(it)
    node.update_arg(1, tuple(new_items) if isinstance(idx, tuple) else new_items[0])


@register(operator.getitem, rewrite=_rewrite_getitem)
def getitem(ctx, node):
    src, idx = node.args[0], node.args[1]
    lab = ctx.get(src)
    if isinstance(lab, list):
        if not isinstance(idx, (int, slice)):
            raise Refuse("tuple indexed by a run-time value")
        return lab[idx]
    if isinstance(lab, Keyed):
        if idx not in lab.items:
            raise Refuse(f"key {idx!r} is not among the recorded keys")
        return lab.items[idx]
    if lab is None:
        return None
    xs = shape_of(src)
    out, od, d = {}, 0, 0
    for it in _index_items(idx, len(xs)):
        if it is None:
            od += 1
            continue
        if isinstance(it, slice):
            if not all(v is None or isinstance(v, int) for v in (it.start, it.stop, it.step)):
                if d in lab:
                    raise Refuse(f"slice bounds of channel dim {d} computed at run time")
                d += 1
                od += 1
                continue
            if d in lab:
                start, stop, step = it.indices(xs[d])
                if step != 1 and not (lab[d] == FIXED).all():
                    raise Refuse(f"strided slice of channels on dim {d}")
                piece = lab[d][start:stop:step]
                out[od] = mark_piece(ctx, piece) if piece.size < lab[d].size else piece
            d += 1
            od += 1
        elif isinstance(it, int):
            if d in lab:
                ctx.pin(lab[d][it:it + 1] if it >= 0 else lab[d][it:][:1],
                        f"one channel is selected by index at '{node.name}'")
            d += 1
        else:
            raise Refuse("indexing with a tensor, list or run-time value")
    return out




def _rewrite_pad(node, sizes):
    x = node.args[0]
    pads = list(node.kwargs.get("pad", node.args[1]))
    xs = sizes.old_shape(x)
    out_lab = sizes.labels(node)
    for k in range(len(pads) // 2):
        d = len(xs) - 1 - k
        kept = sizes.kept(node, d)
        if kept is None or d not in out_lab:
            continue
        lo, hi = pads[2 * k], pads[2 * k + 1]
        pads[2 * k], pads[2 * k + 1] = int(kept[:lo].sum()), int(kept[len(kept) - hi:].sum())
    if "pad" in node.kwargs:
        node.update_kwarg("pad", tuple(pads))
    else:
        node.update_arg(1, tuple(pads))


@register(F.pad, rewrite=_rewrite_pad)
def pad(ctx, node):
    """Constant padding of a channel dim adds zero channels, which are removable themselves."""
    x = node.args[0]
    pads = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else None)
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    if not isinstance(pads, (tuple, list)):
        raise Refuse("pad amounts computed at run time")
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    out = dict(lab)
    for k in range(len(pads) // 2):
        d = len(xs) - 1 - k
        lo, hi = pads[2 * k], pads[2 * k + 1]
        if d not in lab:
            continue  # padding of a dim without channels (spatial, often computed at run time)
        if not (isinstance(lo, int) and isinstance(hi, int)):
            raise Refuse(f"pad amounts of channel dim {d} computed at run time")
        if lo == 0 and hi == 0:
            continue
        if mode != "constant" or lo < 0 or hi < 0:
            raise Refuse(f"'{mode}' padding (or cropping) of channel dim {d}")
        lo_atoms, hi_atoms = ctx.new_atoms(lo, "pad"), ctx.new_atoms(hi, "pad")
        if ctx.all_pinned(lab[d]):
            ctx.pin(np.concatenate([lo_atoms, hi_atoms]), f"padding of fixed dim {d} at '{node.name}'")
        out[d] = np.concatenate([lo_atoms, lab[d], hi_atoms])
    return out




def _shuffle(ctx, x, groups, where):
    lab = ctx.tensor_labels(x)
    c = shape_of(x)[1]
    if 1 not in lab:
        return dict(lab)
    grid = lab[1].reshape(groups, c // groups)
    ctx.union_all(list(grid), f"channel shuffle at '{where}' keeps {groups} equal groups")
    out = dict(lab)
    out[1] = grid.T.ravel().copy()
    return out


@register(nn.ChannelShuffle)
def channel_shuffle_module(ctx, node):
    return _shuffle(ctx, node.args[0], ctx.module(node).groups, node.name)


@register(F.channel_shuffle, torch.channel_shuffle, torch.native_channel_shuffle)
def channel_shuffle_fn(ctx, node):
    g = node.kwargs.get("groups", node.args[1] if len(node.args) > 1 else None)
    if not isinstance(g, int):
        raise Refuse("groups is not a constant")
    return _shuffle(ctx, node.args[0], g, node.name)
