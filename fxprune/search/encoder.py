"""GAT encoder over the dependency graph (policies.md §0.3), with optional GAE pretraining.

``GraphEncoder``: an input projection, ``layers`` GATv2Conv layers (``heads`` heads concatenated,
projected back to ``hidden``), ELU, residual connections and LayerNorm. It returns node
embeddings ``H``, group embeddings ``h_g`` (the rows of the group nodes) and the graph embedding
``h_G = [mean(H) ‖ max(H)]``. Weights are initialised from ``seed``, so the same graph and seed
give the same embeddings.
"""
from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from .features import GraphFeatures, graph_features

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Encoding:
    node: torch.Tensor  # [N, hidden]
    group: torch.Tensor  # [n_groups, hidden], by group id
    graph: torch.Tensor  # [2 * hidden]


class GraphEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: int = 64, heads: int = 4, layers: int = 3, edge_dim: int = 3,
                 seed: int = 0):
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.inp = nn.Linear(in_dim, hidden)
            self.convs = nn.ModuleList(GATv2Conv(hidden, hidden, heads=heads, concat=True, edge_dim=edge_dim)
                                       for _ in range(layers))
            self.proj = nn.ModuleList(nn.Linear(hidden * heads, hidden) for _ in range(layers))
            self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.hidden = hidden

    def nodes(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for conv, proj, norm in zip(self.convs, self.proj, self.norms):
            h = norm(h + nn.functional.elu(proj(conv(h, edge_index, edge_attr))))
        return h

    def forward(self, feats: GraphFeatures) -> Encoding:
        h = self.nodes(feats.x, feats.edge_index, feats.edge_attr)
        return Encoding(h, h[feats.group_nodes], torch.cat([h.mean(0), h.max(0).values]))


def encode(graph, keep_vec=None, *, seed: int = 0, encoder: GraphEncoder | None = None) -> Encoding:
    """Embeddings of a DepGraph (and current plan) with a fresh seeded encoder, or ``encoder``."""
    feats = graph_features(graph, keep_vec)
    enc = encoder or GraphEncoder(feats.x.shape[1], seed=seed)
    with torch.no_grad():
        return enc(feats)


def pretrain_gae(encoder: GraphEncoder, feats: GraphFeatures | list[GraphFeatures], *, epochs: int = 100,
                 lr: float = 0.005, seed: int = 0) -> list[float]:
    """Graph-autoencoder pretraining (torch_geometric ``GAE``: inner-product decoder, reconstruction
    loss with negative sampling) of ``encoder`` in place; returns the loss per epoch. ``feats``: one
    graph, or several (the same network under different plans), taken in turn, one step each."""
    graphs = feats if isinstance(feats, list) else [feats]
    from torch_geometric.nn import GAE

    class _Wrap(nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, x, edge_index, edge_attr):
            # scaled like dot-product attention: LayerNorm'd rows have norm ~sqrt(hidden), and raw
            # inner products that large saturate the decoder's sigmoid
            return self.enc.nodes(x, edge_index, edge_attr) / self.enc.hidden ** 0.25

    init = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = GAE(_Wrap(encoder))
    encoder.load_state_dict(init)  # GAE() re-initialises its encoder from the global RNG: keep the seeded weights
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for e in range(epochs):
        f = graphs[e % len(graphs)]
        opt.zero_grad()
        z = model.encode(f.x, f.edge_index, f.edge_attr)
        loss = model.recon_loss(z, f.edge_index, negative_edges(f.edge_index, z.shape[0], gen))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    if losses:
        log.info("GAE pretraining: loss %.4f -> %.4f over %d epochs", losses[0], losses[-1], epochs)
    return losses


def negative_edges(edge_index: torch.Tensor, n_nodes: int, gen: torch.Generator) -> torch.Tensor:
    """As many node pairs as there are edges, drawn from ``gen`` (reproducible, unlike the
    library's sampler, which draws from Python's global ``random``), without self-loops and
    existing edges (pairs that hit one are dropped)."""
    pairs = torch.randint(0, n_nodes, (2, edge_index.shape[1]), generator=gen)
    code = edge_index[0] * n_nodes + edge_index[1]
    hit = torch.isin(pairs[0] * n_nodes + pairs[1], code) | (pairs[0] == pairs[1])
    return pairs[:, ~hit]
