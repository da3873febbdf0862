"""Rules for normalisation layers: batch, instance, group and layer norm (module and functional)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..context import NORM_B, NORM_W, STAT_MEAN, STAT_VAR, Refuse, attr_target, full_labels, shape_of
from ..registry import register

_ROLES = {"weight": NORM_W, "bias": NORM_B, "running_mean": STAT_MEAN, "running_var": STAT_VAR}


def _label_owned(ctx, node, module, labels):
    for attr, role in _ROLES.items():
        if getattr(module, attr, None) is not None:
            ctx.label_param(f"{node.target}.{attr}", 0, labels, role)


def _resize_bn(m, sizes, node):
    m.num_features = sizes.new(node.args[0], 1)


@register(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
          nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, resize=_resize_bn)
def batch_norm(ctx, node):
    """Per-channel statistics and affine parameters on dim 1."""
    x = node.args[0]
    lab = ctx.tensor_labels(x)
    _label_owned(ctx, node, ctx.module(node), full_labels(lab, 1, shape_of(x)[1]))
    return dict(lab)


def _resize_gn(m, sizes, node):
    c = sizes.new(node.args[0], 1)
    if sizes.graph.conv_modes.get(node.target) == "per_channel":
        m.num_groups = c
    m.num_channels = c


@register(nn.GroupNorm, resize=_resize_gn)
def group_norm(ctx, node):
    """Statistics per norm-group: per-channel groups shrink with the channels; otherwise the
    channel at offset k of every norm-group is removed together so the group count stays valid."""
    m, x = ctx.module(node), node.args[0]
    lab = ctx.tensor_labels(x)
    c = shape_of(x)[1]
    lin = full_labels(lab, 1, c)
    if 1 < m.num_groups < c:
        ctx.union_all(list(lin.reshape(m.num_groups, c // m.num_groups)),
                      f"norm-groups of '{node.target}' must stay equally wide")
    ctx.conv_modes[node.target] = "per_channel" if m.num_groups == c else "fixed"
    _label_owned(ctx, node, m, lin)
    return dict(lab)


def _layer_norm(ctx, node, x, k, wname, bname):
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    for i in range(k):
        d = len(xs) - k + i
        arr = full_labels(lab, d, xs[d])
        if wname is not None:
            ctx.label_param(wname, i, arr, NORM_W)
        if bname is not None:
            ctx.label_param(bname, i, arr, NORM_B)
    return dict(lab)


def _resize_ln(m, sizes, node):
    x = node.args[0]
    nd, k = len(sizes.old_shape(x)), len(m.normalized_shape)
    m.normalized_shape = tuple(sizes.new(x, nd - k + i) for i in range(k))


@register(nn.LayerNorm, resize=_resize_ln)
def layer_norm_module(ctx, node):
    m = ctx.module(node)
    has = m.weight is not None
    return _layer_norm(ctx, node, node.args[0], len(m.normalized_shape),
                       f"{node.target}.weight" if has else None,
                       f"{node.target}.bias" if getattr(m, "bias", None) is not None else None)


def _rewrite_layer_norm(node, sizes):
    x = node.args[0]
    k = len(node.args[1])
    nd = len(sizes.old_shape(x))
    new = tuple(sizes.new(x, nd - k + i) for i in range(k))
    node.update_arg(1, list(new) if isinstance(node.args[1], list) else new)


@register(F.layer_norm, rewrite=_rewrite_layer_norm)
def layer_norm_functional(ctx, node):
    args = list(node.args) + [None] * 4
    ns = node.kwargs.get("normalized_shape", args[1])
    w = node.kwargs.get("weight", args[2])
    b = node.kwargs.get("bias", args[3])
    if "normalized_shape" in node.kwargs or not isinstance(ns, (tuple, list)):
        raise Refuse("normalized_shape is not a constant positional argument")
    return _layer_norm(ctx, node, args[0], len(ns), attr_target(w), attr_target(b))
