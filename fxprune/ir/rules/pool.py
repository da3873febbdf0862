"""Rules for ops that resize spatial dims and keep channels (pooling, adaptive pooling,
interpolation), and for reductions and softmax."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..context import Refuse, shape_of
from ..registry import register

_SPATIAL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d, nn.LPPool2d,
)
_SPATIAL_FUNCTIONS = (
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate, F.upsample,
    torch._C._nn.avg_pool2d, torch._C._nn.avg_pool3d, torch.max_pool2d, torch.avg_pool1d,
    torch.adaptive_avg_pool1d,
)


@register(*_SPATIAL_MODULES, *_SPATIAL_FUNCTIONS)
def spatial(ctx, node):
    """Batch and channel dims (0, 1) pass through; the spatial dims (2, ...) are pooled or
    resampled, which mixes neighbouring positions, so labels on them are pinned."""
    x = node.args[0]
    lab = ctx.tensor_labels(x)
    if shape_of(node) is None:
        raise Refuse("returns indices as well as values")
    for d, arr in lab.items():
        if d >= 2:
            ctx.pin(arr, f"dim {d} is pooled or resampled by {node.name}")
    return {d: a for d, a in lab.items() if d < 2}


def _reduce_dims(node, ndim, pos: int = 1):
    dim = node.kwargs.get("dim", node.args[pos] if len(node.args) > pos else None)
    if dim is None:
        return list(range(ndim))
    if isinstance(dim, int):
        dim = [dim]
    if not all(isinstance(d, int) for d in dim):
        raise Refuse("reduction dims are not constants")
    return sorted(d % ndim for d in dim)


def _reduction(ctx, node, channel_safe: bool, dim_pos: int = 1):
    x = node.args[0]
    xs = shape_of(x)
    if shape_of(node) is None:
        raise Refuse("reduction returns more than a tensor")
    keep = node.kwargs.get("keepdim", node.args[dim_pos + 1] if len(node.args) > dim_pos + 1 else False)
    dims = _reduce_dims(node, len(xs), dim_pos)
    lab = ctx.tensor_labels(x)
    out = {}
    shift = 0
    for d in range(len(xs)):
        if d in dims:
            if d in lab and not channel_safe:
                ctx.pin(lab[d], f"{node.name} averages over channels: the result would change with their count")
            shift += 0 if keep else 1
            continue
        if d in lab:
            out[d - shift] = lab[d]
    return out


@register("method:sum", torch.sum)
def reduce_sum(ctx, node):
    """A sum over channels is unchanged by removing dead (zero) channels."""
    return _reduction(ctx, node, True)


@register("method:mean", torch.mean, "method:amax", torch.amax, "method:amin", torch.amin,
          "method:std", "method:var", torch.std, torch.var, "method:logsumexp", torch.logsumexp)
def reduce_other(ctx, node):
    return _reduction(ctx, node, False)


@register("method:norm", torch.norm, torch.linalg.vector_norm)
def reduce_norm(ctx, node):
    """``x.norm(p, dim, keepdim)``: like ``mean`` (a norm over channels pins them)."""
    return _reduction(ctx, node, False, dim_pos=2)


def _softmax(ctx, node):
    x = node.args[0]
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    lab = ctx.tensor_labels(x)
    if dim is None or not isinstance(dim, int):
        raise Refuse("softmax dim is not a constant")
    d = dim % len(shape_of(x))
    if d in lab:
        ctx.pin(lab[d], f"{node.name} normalises over channels")
    return dict(lab)


register(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "method:softmax",
         "method:log_softmax")(_softmax)


@register(F.normalize)
def normalize(ctx, node):
    """``F.normalize(x, p, dim)``: divides by a norm over ``dim`` (default 1), like softmax."""
    x = node.args[0]
    dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 1)
    lab = ctx.tensor_labels(x)
    if not isinstance(dim, int):
        raise Refuse("normalize dim is not a constant")
    d = dim % len(shape_of(x))
    if d in lab:
        ctx.pin(lab[d], f"{node.name} normalises over channels")
    return dict(lab)


@register(nn.Softmax, nn.LogSoftmax)
def softmax_module(ctx, node):
    m = ctx.module(node)
    x = node.args[0]
    lab = ctx.tensor_labels(x)
    d = (m.dim if m.dim is not None else len(shape_of(x)) - 1) % len(shape_of(x))
    if d in lab:
        ctx.pin(lab[d], f"{node.name} normalises over channels")
    return dict(lab)
