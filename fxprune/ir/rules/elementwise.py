"""Rules for ops that keep every channel where it is: activations, dropout, elementwise
arithmetic with broadcasting (residual adds, SE gates, layer scale), and shape queries."""
from __future__ import annotations

import builtins
import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..context import FIXED, Refuse, full_labels, shape_of
from ..registry import register

_UNARY_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
_UNARY_FUNCTIONS = (
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, torch.sigmoid,
    F.sigmoid, torch.tanh, F.tanh, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, torch.abs, torch.neg, torch.exp, torch.clamp, torch.clip, operator.neg,
    operator.pos, torch.square, torch.sqrt, torch.rsqrt, torch.erf,
)
_UNARY_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "abs",
    "neg", "exp", "contiguous", "clone", "detach", "float", "half", "double", "to", "type_as",
    "sqrt", "rsqrt", "square", "erf", "sin", "cos", "log", "reciprocal", "sign", "floor", "ceil",
    "round", "pow", "bool", "int", "long", "logical_not", "exp_", "hardtanh_", "silu_",
)
_UNARY_FUNCTIONS_MORE = (
    torch.sin, torch.cos, torch.log, torch.reciprocal, torch.sign, torch.floor, torch.ceil, torch.round,
    torch.logical_not, operator.invert, F.softsign, F.tanhshrink, F.logsigmoid, F.softplus, F.glu,
)
_BINARY = (
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, operator.itruediv, operator.pow, operator.and_, operator.or_, torch.add,
    torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.true_divide, torch.pow,
    torch.where, torch.addcmul, torch.addcdiv, torch.lerp,
)
_BINARY_METHODS = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "maximum",
                   "minimum", "masked_fill", "masked_fill_", "where", "addcmul", "lerp")


def _first_tensor(node):
    for a in node.args:
        if shape_of(a) is not None:
            return a
    raise Refuse("no tensor argument")


@register(*_UNARY_MODULES, *_UNARY_FUNCTIONS, *[f for f in _UNARY_FUNCTIONS_MORE if f is not F.glu],
          *[f"method:{m}" for m in _UNARY_METHODS])
def unary(ctx, node):
    """Same shape in, same shape out, channel by channel."""
    x = _first_tensor(node)
    if shape_of(x) != shape_of(node):
        raise Refuse(f"output shape {shape_of(node)} differs from input shape {shape_of(x)}")
    for a in list(node.args[1:]) + list(node.kwargs.values()):
        if shape_of(a) is not None and shape_of(a) != ():
            return broadcast(ctx, node)  # e.g. clamp with tensor bounds
    return dict(ctx.tensor_labels(x))


def broadcast(ctx, node):
    """Elementwise op with numpy broadcasting: dims that meet with size > 1 are coupled."""
    out_shape = shape_of(node)
    if out_shape is None:
        if not any(shape_of(a) is not None for a in list(node.args) + list(node.kwargs.values())):
            return None  # arithmetic on sizes (``C // heads``)
        raise Refuse("output is not a tensor")
    nd = len(out_shape)
    operands = []
    for a in list(node.args) + list(node.kwargs.values()):
        shp = shape_of(a)
        if shp is not None:
            operands.append((shp, ctx.tensor_labels(a)))
    out = {}
    for od in range(nd):
        arrays, labelled = [], None
        for shp, lab in operands:
            d = od - (nd - len(shp))
            if d < 0 or shp[d] == 1:
                continue
            arr = full_labels(lab, d, shp[d])
            arrays.append(arr)
            if labelled is None and not (arr == FIXED).all():
                labelled = arr
        if labelled is None:
            continue
        if len(arrays) > 1:
            ctx.union_all(arrays, f"combined elementwise with a fixed-size operand at node '{node.name}'")
        out[od] = labelled
    return out


register(*_BINARY, *[f"method:{m}" for m in _BINARY_METHODS])(broadcast)


@register("method:size", "method:dim", "method:numel", "method:ndimension", "method:nelement")
def shape_query(ctx, node):
    """Reads the shape only. The value is recomputed at run time on the pruned tensor."""
    return None


@register(builtins.getattr)
def attribute(ctx, node):
    if len(node.args) >= 2 and node.args[1] in ("shape", "dtype", "device", "ndim", "is_cuda"):
        return None
    raise Refuse(f"attribute '{node.args[1] if len(node.args) > 1 else '?'}' of a tensor")
