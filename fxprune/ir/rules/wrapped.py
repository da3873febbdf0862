"""Rules for library helpers that models mark with ``torch.fx.wrap`` (traced as one call, never
inlined): torchvision's stochastic depth, MViT's squeeze/unsqueeze/shortcut/relative-position
helpers and Swin's patch-merging padding. Each rule is registered only when its library imports.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..context import FIXED, IN, full_labels, shape_of, shapes_of
from ..registry import register
from .shape import reshape_labels


def _find(module: str, name: str) -> tuple:
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # library missing or changed: nothing to register
        return ()
    return (fn,)


@register(*_find("torchvision.ops", "stochastic_depth"))
def stochastic_depth(ctx, node):
    """Drops whole samples (rows), never channels: a channel passthrough."""
    return dict(ctx.tensor_labels(node.args[0]))


@register(*_find("torchvision.models.video.mvit", "_unsqueeze"))
def mvit_unsqueeze(ctx, node):
    """``(x.unsqueeze(expand_dim) if needed, x.dim())``: a reshape, and an int."""
    x = node.args[0]
    out_shape = shapes_of(node)[0]
    return [reshape_labels(ctx, shape_of(x), ctx.tensor_labels(x), out_shape, f"unsqueeze at '{node.name}'"), None]


@register(*_find("torchvision.models.video.mvit", "_squeeze"))
def mvit_squeeze(ctx, node):
    x = node.args[0]
    return reshape_labels(ctx, shape_of(x), ctx.tensor_labels(x), shape_of(node), f"squeeze at '{node.name}'")


@register(*_find("torchvision.models.video.mvit", "_add_shortcut"))
def mvit_add_shortcut(ctx, node):
    """``x += shortcut`` (on the tokens after the class token, or on all): a residual add."""
    x, shortcut = node.args[0], node.args[1]
    lx, ls = ctx.tensor_labels(x), ctx.tensor_labels(shortcut)
    xs, ss = shape_of(x), shape_of(shortcut)
    out = dict(lx)
    for d in set(lx) | set(ls):
        a, b = full_labels(lx, d, xs[d]), full_labels(ls, d, ss[d])
        if a.size != b.size:
            ctx.pin(a, f"'{node.name}' adds tensors of different sizes on dim {d}")
            ctx.pin(b, f"'{node.name}' adds tensors of different sizes on dim {d}")
            continue
        ctx.union(a, b, f"residual add at '{node.name}'")
        out[d] = a if not (a == FIXED).all() else b
    return out


@register(*_find("torchvision.models.video.mvit", "_add_rel_pos"))
def mvit_add_rel_pos(ctx, node):
    """``attn + rel_pos(q)``: the relative-position tables (parameters ``(L, head_dim)``) are
    contracted with ``q``'s head dim, so they shrink with it; its cost is linear in the head dim."""
    attn, q = node.args[0], node.args[1]
    tables = list(node.args[4:7])
    lq = ctx.tensor_labels(q)
    qs = shape_of(q)
    head = full_labels(lq, len(qs) - 1, qs[-1])
    for t in tables:
        ctx.bind(t, 1, head, IN, f"relative-position table of '{node.name}'")
    for d, arr in lq.items():
        if d != len(qs) - 1:
            ctx.pin(arr, f"'{node.name}' reads these positions of q")
    from ..flops import measured_macs

    macs = measured_macs(node, ctx.modules)
    if macs:
        ctx.add_flops(macs / max(qs[-1], 1), [head])
    return dict(ctx.tensor_labels(attn))


def _patch_merging_pad(ctx, node):
    """Swin: pad H and W to even sizes, then concatenate the four 2x2 phases along channels:
    every input channel appears four times in the output, and goes with all four copies."""
    x = node.args[0]
    lab = ctx.tensor_labels(x)
    xs, os_ = shape_of(x), shape_of(node)
    last = len(xs) - 1
    out = {d: a for d, a in lab.items() if d != last and xs[d] == os_[d]}
    if last in lab:
        out[len(os_) - 1] = np.tile(lab[last], os_[-1] // xs[-1])
    for d, a in lab.items():
        if d != last and xs[d] != os_[d]:
            ctx.pin(a, f"dim {d} is resized by '{node.name}'")
    return out


register(*_find("torchvision.models.swin_transformer", "_patch_merging_pad"),
         *_find("torchvision.models.video.swin_transformer", "_patch_merging_pad"))(_patch_merging_pad)

