"""Rules for normalisation layers: batch, instance, group and layer norm (module and functional)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..context import NORM_B, NORM_W, STAT_MEAN, STAT_VAR, Refuse, full_labels, shape_of
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


def _layer_norm(ctx, node, x, k, weight, bias):
    """``weight``/``bias``: parameter names (module) or argument nodes (functional)."""
    xs = shape_of(x)
    lab = ctx.tensor_labels(x)
    for i in range(k):
        d = len(xs) - k + i
        arr = full_labels(lab, d, xs[d])
        for arg, role in ((weight, NORM_W), (bias, NORM_B)):
            if isinstance(arg, str):
                ctx.label_param(arg, i, arr, role)
            elif arg is not None:
                ctx.bind(arg, i, arr, role, f"the affine parameters of '{node.name}' have a fixed size")
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


def _arg(node, name: str, pos: int):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else None


@register(F.layer_norm, rewrite=_rewrite_layer_norm)
def layer_norm_functional(ctx, node):
    ns = _arg(node, "normalized_shape", 1)
    if "normalized_shape" in node.kwargs or not isinstance(ns, (tuple, list)):
        raise Refuse("normalized_shape is not a constant positional argument")
    return _layer_norm(ctx, node, node.args[0], len(ns), _arg(node, "weight", 2), _arg(node, "bias", 3))


def _channel_norm(ctx, node, params: dict[str, tuple[int, str]]):
    """Functional norms with per-channel parameters on dim 1 (batch and instance norm)."""
    x = node.args[0]
    xs = shape_of(x)
    if xs is None or len(xs) < 2:
        raise Refuse("input without a channel dim")
    lab = ctx.tensor_labels(x)
    lin = full_labels(lab, 1, xs[1])
    for name, (pos, role) in params.items():
        arg = _arg(node, name, pos)
        if arg is not None:
            ctx.bind(arg, 0, lin, role, f"the {name} of '{node.name}' has a fixed size")
    return dict(lab)


@register(F.batch_norm)
def batch_norm_functional(ctx, node):
    """``F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)``, as
    norm+activation layers (timm's ``BatchNormAct2d``) and weight standardisation call it."""
    return _channel_norm(ctx, node, {"running_mean": (1, STAT_MEAN), "running_var": (2, STAT_VAR),
                                     "weight": (3, NORM_W), "bias": (4, NORM_B)})


@register(F.instance_norm)
def instance_norm_functional(ctx, node):
    return _channel_norm(ctx, node, {"running_mean": (1, STAT_MEAN), "running_var": (2, STAT_VAR),
                                     "weight": (3, NORM_W), "bias": (4, NORM_B)})


def _rewrite_group_norm(node, sizes):
    if sizes.graph.conv_modes.get(node.name) != "per_channel":
        return
    c = sizes.new(node.args[0], 1)
    if "num_groups" in node.kwargs:
        node.update_kwarg("num_groups", c)
    else:
        node.update_arg(1, c)


@register(F.group_norm, rewrite=_rewrite_group_norm)
def group_norm_functional(ctx, node):
    """``F.group_norm(x, num_groups, weight, bias, eps)``: as the module (see :func:`group_norm`)."""
    x = node.args[0]
    xs = shape_of(x)
    g = _arg(node, "num_groups", 1)
    if xs is None or len(xs) < 2 or not isinstance(g, int):
        raise Refuse("num_groups is not a constant")
    lab = ctx.tensor_labels(x)
    c = xs[1]
    lin = full_labels(lab, 1, c)
    if 1 < g < c:
        ctx.union_all(list(lin.reshape(g, c // g)), f"norm-groups of '{node.name}' must stay equally wide")
    ctx.conv_modes[node.name] = "per_channel" if g == c else "fixed"
    for name, pos, role in (("weight", 2, NORM_W), ("bias", 3, NORM_B)):
        arg = _arg(node, name, pos)
        if arg is not None:
            ctx.bind(arg, 0, lin, role, f"the {name} of '{node.name}' has a fixed size")
    return dict(lab)
