"""Rules for convolutions (grouped and depthwise included), transposed convolutions and linear
layers, module and functional forms.

Grouped convolutions keep a valid group count after pruning:
- *per-channel* mode (each conv-group sees one input channel: depthwise and channel multipliers):
  input channel i and its output channels are one removable unit; ``groups`` shrinks with them.
- *fixed* mode (several input channels per conv-group): the channel at offset k of every
  conv-group is removed together, so each conv-group keeps the same width and ``groups`` stays.

The weight of a functional convolution or linear layer may be a parameter read by ``get_attr`` or
a tensor computed from parameters at run time (weight standardisation, weight scaling, a
re-parameterised sum of branches): its channel dims carry the labels of the parameters they were
computed from, so the parameters are sliced by surgery and the computation is left as it is.
"""
from __future__ import annotations

import math

import numpy as np
import torch.nn as nn
import torch.nn.functional as F

from ..context import FIXED, IN, OUT, Refuse, full_labels, shape_of
from ..registry import register


class _ModuleWeight:
    """The weight of a conv/linear module, a parameter labelled by name."""

    def __init__(self, ctx, name: str):
        self.ctx, self.name = ctx, name

    def get(self, dim: int) -> np.ndarray | None:
        return self.ctx.param_labels(self.name, dim)

    def bind(self, dim: int, labels: np.ndarray, role: str) -> None:
        self.ctx.label_param(self.name, dim, labels, role)

    def fix_kernel(self) -> None:  # module rules never label kernel dims
        pass


class _TensorWeight:
    """The weight argument of a functional op: a ``get_attr`` node or a computed tensor."""

    def __init__(self, ctx, node, owner: str):
        self.ctx, self.node, self.owner = ctx, node, owner

    def get(self, dim: int) -> np.ndarray | None:
        return self.ctx.tensor_labels(self.node).get(dim)

    def bind(self, dim: int, labels: np.ndarray, role: str) -> None:
        self.ctx.bind(self.node, dim, labels, role, f"the weight of '{self.owner}' has a fixed dim {dim}")

    def fix_kernel(self) -> None:
        self.ctx.pin_other_dims(self.node, (0, 1), f"kernel dims of the weight of '{self.owner}'")


def _bind_bias(ctx, b, out: np.ndarray, owner: str) -> None:
    if isinstance(b, str):
        ctx.label_param(b, 0, out, OUT)
    elif b is not None:
        ctx.bind(b, 0, out, OUT, f"the bias of '{owner}' has a fixed size")


def _flops(ctx, w, wshape, extent: float) -> None:
    """``extent`` (output or input positions, batch included) × the weight's elements."""
    coef, dims = float(extent), []
    for d, s in enumerate(wshape):
        lab = w.get(d) if d < 2 else None
        if lab is None or (lab == FIXED).all():
            coef *= s
        else:
            dims.append(lab)
    ctx.add_flops(coef, dims)


def conv_core(ctx, node, x, w, bias, wshape, groups, transposed, owner):
    xs = shape_of(x)
    if xs is None or len(xs) < 2:
        raise Refuse("convolution input without a channel dim")
    c_in = xs[1]
    xlab = ctx.tensor_labels(x)
    lin = full_labels(xlab, 1, c_in)
    for d, arr in xlab.items():
        if d >= 2:  # a kernel slides over these positions: none may go
            ctx.pin(arr, f"'{owner}' convolves over dim {d}")
    if transposed:
        c_out, cpg_in = wshape[1] * groups, c_in // groups
    else:
        c_out, cpg_in = wshape[0], wshape[1]
    cpg_out = c_out // groups
    w_out_dim, w_in_dim = (1, 0) if transposed else (0, 1)
    w.fix_kernel()
    if groups == 1:
        out = w.get(w_out_dim)
        out = out if out is not None else ctx.new_atoms(c_out, "module")
        w.bind(w_in_dim, lin, IN)
        w.bind(w_out_dim, out, OUT)
        mode = "fixed"
    elif cpg_in == 1:
        out = np.repeat(lin, cpg_out)
        if transposed:
            w.bind(0, lin, IN)
        else:
            w.bind(0, out, OUT)
        mode = "per_channel"
    else:
        grid = lin.reshape(groups, cpg_in)
        why = f"conv-groups of '{owner}' must stay equally wide"
        ctx.union_all(list(grid), why)
        if transposed:
            src = w.get(1)
            src = src if src is not None else ctx.new_atoms(cpg_out, "module")
            w.bind(0, lin, IN)
            w.bind(1, src, OUT)
            out = np.tile(src, groups)
        else:
            prev = w.get(0)
            if prev is None:
                out = np.tile(ctx.new_atoms(cpg_out, "module"), groups)
            else:
                out = prev
                ctx.union_all(list(prev.reshape(groups, cpg_out)), why)
            w.bind(0, out, OUT)
            w.bind(1, grid[0], IN)
        mode = "fixed"
    _bind_bias(ctx, bias, out, owner)
    ctx.conv_modes[owner] = mode
    os_ = shape_of(node)
    extent = math.prod(xs[:1] + xs[2:]) if transposed else math.prod(os_[:1] + os_[2:])
    _flops(ctx, w, wshape, extent)
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
        ctx, node, node.args[0], _ModuleWeight(ctx, f"{node.target}.weight"),
        f"{node.target}.bias" if m.bias is not None else None,
        tuple(m.weight.shape), m.groups, isinstance(m, nn.modules.conv._ConvTransposeNd), node.target,
    )


# positional index of ``groups``: conv(input, weight, bias, stride, padding, dilation, groups),
# conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)
_GROUPS_AT = 6


def _rewrite_conv(node, sizes):
    if "groups" in node.kwargs:
        node.update_kwarg("groups", _new_groups(sizes, node, node.name, node.kwargs["groups"]))
    elif len(node.args) > _GROUPS_AT:
        node.update_arg(_GROUPS_AT, _new_groups(sizes, node, node.name, node.args[_GROUPS_AT]))


def _functional_conv(ctx, node, transposed: bool):
    args = list(node.args) + [None] * 8
    w = node.kwargs.get("weight", args[1])
    b = node.kwargs.get("bias", args[2])
    groups = node.kwargs.get("groups", args[_GROUPS_AT] if args[_GROUPS_AT] is not None else 1)
    wshape = shape_of(w)
    if wshape is None or not isinstance(groups, int):
        raise Refuse("the weight is not a tensor or groups is not a constant")
    return conv_core(ctx, node, args[0], _TensorWeight(ctx, w, node.name), b, wshape, groups, transposed, node.name)


@register(F.conv1d, F.conv2d, F.conv3d, rewrite=_rewrite_conv)
def conv_functional(ctx, node):
    return _functional_conv(ctx, node, False)


@register(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, rewrite=_rewrite_conv)
def conv_transpose_functional(ctx, node):
    return _functional_conv(ctx, node, True)


def linear_core(ctx, node, x, w, bias, wshape, owner):
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    lin = full_labels(lab, len(xs) - 1, xs[-1])
    out = w.get(0)
    out = out if out is not None else ctx.new_atoms(wshape[0], "module")
    w.bind(1, lin, IN)
    w.bind(0, out, OUT)
    _bind_bias(ctx, bias, out, owner)
    coef, dims = 1.0, [out, lin]
    for d in range(len(xs) - 1):  # leading dims (batch included) may carry channels too
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
    return linear_core(ctx, node, node.args[0], _ModuleWeight(ctx, f"{node.target}.weight"),
                       f"{node.target}.bias" if m.bias is not None else None, tuple(m.weight.shape), node.target)


@register(F.linear)
def linear_functional(ctx, node):
    args = list(node.args) + [None] * 3
    w = node.kwargs.get("weight", args[1])
    b = node.kwargs.get("bias", args[2])
    wshape = shape_of(w)
    if wshape is None or len(wshape) != 2:
        raise Refuse("the weight is not a matrix")
    return linear_core(ctx, node, args[0], _TensorWeight(ctx, w, node.name), b, wshape, node.name)
