"""Rules for convolutions (grouped and depthwise included), transposed convolutions and linear
layers, module and functional forms.

Grouped convolutions keep a valid group count after pruning:
- *per-channel* mode (each conv-group sees one input channel: depthwise and channel multipliers):
  input channel i and its output channels are one removable unit; ``groups`` shrinks with them.
- *fixed* mode (several input channels per conv-group): the channel at offset k of every
  conv-group is removed together, so each conv-group keeps the same width and ``groups`` stays.
"""
from __future__ import annotations

import math

import numpy as np
import torch.nn as nn
import torch.nn.functional as F

from ..context import FIXED, IN, OUT, Refuse, attr_target, full_labels, shape_of
from ..registry import register


def _source(ctx, wname: str, dim: int, n: int) -> np.ndarray:
    """Existing labels of a producer dim (shared module), or fresh atoms."""
    lab = ctx.param_labels(wname, dim)
    return lab if lab is not None else ctx.new_atoms(n, "module")


def _weight_flops(ctx, wname: str, wshape, spatial: int) -> None:
    coef, dims = float(spatial), []
    for d, s in enumerate(wshape):
        lab = ctx.param_labels(wname, d)
        if lab is None:
            coef *= s
        else:
            dims.append(lab)
    ctx.add_flops(coef, dims)


def conv_core(ctx, node, x, wname, bname, wshape, groups, transposed, owner):
    xs = shape_of(x)
    if xs is None or len(xs) < 2:
        raise Refuse("convolution input without a channel dim")
    c_in = xs[1]
    lin = full_labels(ctx.tensor_labels(x), 1, c_in)
    if transposed:
        c_out, cpg_in = wshape[1] * groups, c_in // groups
    else:
        c_out, cpg_in = wshape[0], wshape[1]
    cpg_out = c_out // groups
    w_out_dim, w_in_dim = (1, 0) if transposed else (0, 1)
    if groups == 1:
        out = _source(ctx, wname, w_out_dim, c_out)
        ctx.label_param(wname, w_in_dim, lin, IN)
        ctx.label_param(wname, w_out_dim, out, OUT)
        mode = "fixed"
    elif cpg_in == 1:
        out = np.repeat(lin, cpg_out)
        if transposed:
            ctx.label_param(wname, 0, lin, IN)
        else:
            ctx.label_param(wname, 0, out, OUT)
        mode = "per_channel"
    else:
        grid = lin.reshape(groups, cpg_in)
        ctx.union_all(list(grid), f"conv-groups of '{owner}' must stay equally wide")
        src = _source(ctx, wname, w_out_dim, cpg_out) if transposed else None
        if transposed:
            ctx.label_param(wname, 0, lin, IN)
            ctx.label_param(wname, 1, src, OUT)
            out = np.tile(src, groups)
        else:
            prev = ctx.param_labels(wname, 0)
            out = prev if prev is not None else np.tile(ctx.new_atoms(cpg_out, "module"), groups)
            ctx.label_param(wname, 0, out, OUT)
            ctx.label_param(wname, 1, grid[0], IN)
        mode = "fixed"
    if bname is not None:
        ctx.label_param(bname, 0, out, OUT)
    ctx.conv_modes[owner] = mode
    os_ = shape_of(node)
    spatial = math.prod(xs[2:]) if transposed else math.prod(os_[2:])
    _weight_flops(ctx, wname, wshape, spatial)
    return {1: out}


def _new_groups(sizes, node, owner, groups):
    return sizes.new(node.args[0], 1) if sizes.graph.conv_modes.get(owner) == "per_channel" else groups


def _resize_conv(m, sizes, node):
    m.groups = _new_groups(sizes, node, node.target, m.groups)
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        m.in_channels, m.out_channels = m.weight.shape[0], m.weight.shape[1] * m.groups
    else:
        m.in_channels, m.out_channels = m.weight.shape[1] * m.groups, m.weight.shape[0]


@register(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d, resize=_resize_conv)
def conv_module(ctx, node):
    m = ctx.module(node)
    return conv_core(
        ctx, node, node.args[0], f"{node.target}.weight",
        f"{node.target}.bias" if m.bias is not None else None,
        tuple(m.weight.shape), m.groups, isinstance(m, nn.modules.conv._ConvTransposeNd), node.target,
    )


def _rewrite_conv(node, sizes):
    w = node.kwargs.get("weight", node.args[1] if len(node.args) > 1 else None)
    if "groups" in node.kwargs:
        node.update_kwarg("groups", _new_groups(sizes, node, w.target, node.kwargs["groups"]))
    elif len(node.args) > 6:
        node.update_arg(6, _new_groups(sizes, node, w.target, node.args[6]))


@register(F.conv1d, F.conv2d, F.conv3d, rewrite=_rewrite_conv)
def conv_functional(ctx, node):
    args = list(node.args) + [None] * 7
    w = node.kwargs.get("weight", args[1])
    b = node.kwargs.get("bias", args[2])
    groups = node.kwargs.get("groups", args[6] if args[6] is not None else 1)
    wname = attr_target(w)
    return conv_core(ctx, node, args[0], wname, attr_target(b), shape_of(w), groups, False, wname)


def linear_core(ctx, node, x, wname, bname, wshape):
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    lin = full_labels(lab, len(xs) - 1, xs[-1])
    out = _source(ctx, wname, 0, wshape[0])
    ctx.label_param(wname, 1, lin, IN)
    ctx.label_param(wname, 0, out, OUT)
    if bname is not None:
        ctx.label_param(bname, 0, out, OUT)
    coef, dims = 1.0, [out, lin]
    for d in range(1, len(xs) - 1):  # leading dims (batch excluded) may carry channels too
        if d in lab and not (lab[d] == FIXED).all():
            dims.append(lab[d])
        else:
            coef *= xs[d]
    ctx.add_flops(coef, dims)
    res = {d: a for d, a in lab.items() if d != len(xs) - 1}
    res[len(xs) - 1] = out
    return res


def _resize_linear(m, sizes, node):
    m.out_features, m.in_features = m.weight.shape


@register(nn.Linear, resize=_resize_linear)
def linear_module(ctx, node):
    m = ctx.module(node)
    return linear_core(ctx, node, node.args[0], f"{node.target}.weight",
                       f"{node.target}.bias" if m.bias is not None else None, tuple(m.weight.shape))


@register(F.linear)
def linear_functional(ctx, node):
    args = list(node.args) + [None] * 3
    w = node.kwargs.get("weight", args[1])
    b = node.kwargs.get("bias", args[2])
    return linear_core(ctx, node, args[0], attr_target(w), attr_target(b), shape_of(w))
