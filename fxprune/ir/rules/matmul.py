"""Rule for matrix products of activations (``@``, matmul, bmm): the contracted dims are coupled,
the other two dims carry their operand's channels, batch dims broadcast."""
from __future__ import annotations

import operator

import torch

from ..context import FIXED, Refuse, full_labels, shape_of
from ..registry import register


@register(operator.matmul, torch.matmul, torch.bmm, "method:matmul", "method:bmm")
def matmul(ctx, node):
    a, b = node.args[0], node.args[1]
    sa, sb, so = shape_of(a), shape_of(b), shape_of(node)
    if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        raise Refuse("matrix-vector products")
    la, lb = ctx.tensor_labels(a), ctx.tensor_labels(b)
    na, nb, no = len(sa), len(sb), len(so)
    ka, kb = full_labels(la, na - 1, sa[-1]), full_labels(lb, nb - 2, sb[-2])
    if not ((ka == FIXED).all() and (kb == FIXED).all()):
        ctx.union(ka, kb, f"contracted dims of '{node.name}'")
    out = {}
    if na - 2 in la:
        out[no - 2] = la[na - 2]
    if nb - 1 in lb:
        out[no - 1] = lb[nb - 1]
    for od in range(no - 2):
        arrays = []
        for shp, lab, n in ((sa, la, na), (sb, lb, nb)):
            d = od - (no - n)
            if d >= 0 and shp[d] > 1:
                arrays.append(full_labels(lab, d, shp[d]))
        labelled = [x for x in arrays if not (x == FIXED).all()]
        if labelled:
            ctx.union_all(arrays, f"batch dims of '{node.name}'")
            out[od] = labelled[0]
    coef, dims = 1.0, []
    for arr, size in ((ka, sa[-1]),) + tuple((out.get(d), so[d]) for d in range(1, no)):
        if arr is None or (arr == FIXED).all():
            coef *= size
        else:
            dims.append(arr)
    ctx.add_flops(coef, dims)
    return out
