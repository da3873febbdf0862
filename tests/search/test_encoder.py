"""The GAT encoder over the dependency graph: real features, output shapes, determinism, GAE."""
import numpy as np
import pytest
import torch
import torchvision

import fxprune
from fxprune.models import CifarResNet
from fxprune.search import FEATURES, GraphEncoder, encode, graph_features, pretrain_gae

MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
    "densenet121": lambda: torchvision.models.densenet121(),
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(),
    "cifar_resnet20": lambda: CifarResNet(20),
}


def graph_of(name):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32) if name.startswith("cifar") else torch.randn(1, 3, 64, 64)
    return fxprune.analyze(MODELS[name]().eval(), x)


@pytest.mark.parametrize("name", MODELS)
def test_features_and_embedding_shapes(name):
    g = graph_of(name)
    f = graph_features(g)
    n_groups = len(g.groups)
    assert f.x.shape == (len(f.op_names) + n_groups, len(FEATURES))
    assert torch.isfinite(f.x).all()
    assert f.edge_index.min() >= 0 and f.edge_index.max() < f.num_nodes
    assert f.edge_attr.shape == (f.edge_index.shape[1], 3)
    kind = f.x[:, :FEATURES.index("kind:group") + 1]
    assert torch.equal(kind.sum(1), torch.ones(f.num_nodes))  # one kind per node
    assert torch.equal(f.x[f.group_nodes, FEATURES.index("kind:group")], torch.ones(n_groups))
    assert (f.edge_attr[:, 2] == 1).any()  # group <-> member edges exist
    e = encode(g, seed=0)
    assert e.node.shape == (f.num_nodes, 64) and e.group.shape == (n_groups, 64) and e.graph.shape == (128,)
    assert torch.isfinite(e.node).all()


def test_conv_rows_carry_the_real_layer_numbers():
    g = graph_of("resnet18")
    f = graph_features(g)
    row = f.x[f.op_names.index("conv1")]
    assert row[FEATURES.index("kind:conv")] == 1
    # standardised columns: the stem conv (7x7 kernel) has the largest kernel of the graph
    k = FEATURES.index("kernel")
    assert row[k] == f.x[: len(f.op_names), k].max()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_encoder_is_deterministic_per_seed(name):
    g = graph_of(name)
    a, b, c = encode(g, seed=0), encode(g, seed=0), encode(g, seed=1)
    assert torch.equal(a.node, b.node) and torch.equal(a.graph, b.graph)
    assert not torch.allclose(a.node, c.node)


def test_current_plan_changes_the_features():
    g = graph_of("cifar_resnet20")
    keep = np.ones(g.n_classes)
    grp = g.prunable_groups[0]
    keep[grp.classes[: grp.size // 2]] = 0
    f0, f1 = graph_features(g), graph_features(g, keep)
    col = FEATURES.index("g_keep")
    assert f1.x[f1.group_nodes[grp.id], col] < f0.x[f0.group_nodes[grp.id], col]
    e0, e1 = encode(g, seed=0), encode(g, keep, seed=0)
    assert not torch.allclose(e0.group, e1.group)


def test_gae_pretraining_lowers_the_reconstruction_loss():
    g = graph_of("cifar_resnet20")
    f = graph_features(g)
    enc = GraphEncoder(f.x.shape[1], seed=0)
    losses = pretrain_gae(enc, f, epochs=100, seed=0)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_gae_pretraining_repeats_bit_for_bit_whatever_the_global_rngs():
    import random

    f = graph_features(graph_of("cifar_resnet20"))
    runs = []
    for noise in (1, 2):  # the library's GAE re-initialises and samples from the global RNGs
        torch.manual_seed(noise)
        random.seed(noise)
        enc = GraphEncoder(f.x.shape[1], seed=0)
        runs.append((pretrain_gae(enc, f, epochs=5, seed=0), [p.detach().clone() for p in enc.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_negative_edges_avoid_real_edges_and_self_loops():
    from fxprune.search.encoder import negative_edges

    f = graph_features(graph_of("cifar_resnet20"))
    n = f.x.shape[0]
    neg = negative_edges(f.edge_index, n, torch.Generator().manual_seed(0))
    real = set(map(tuple, f.edge_index.t().tolist()))
    assert neg.shape[1] > 0.5 * f.edge_index.shape[1]
    assert not (set(map(tuple, neg.t().tolist())) & real) and bool((neg[0] != neg[1]).all())


def test_channel_granularity_graph_adds_one_node_per_channel():
    from fxprune.search.features import channel_features, with_channel_nodes

    g = graph_of("cifar_resnet20")
    f = graph_features(g)
    chan = channel_features(g)
    h, nodes = with_channel_nodes(f, chan, g.group_of_class)
    assert h.num_nodes == f.num_nodes + g.n_classes and nodes.tolist() == list(range(f.num_nodes, h.num_nodes))
    assert h.edge_index.shape[1] == f.edge_index.shape[1] + 2 * g.n_classes
    # each channel node is joined to exactly its own group's node, both ways
    new = h.edge_index[:, f.edge_index.shape[1]:]
    j = 5
    assert set(new[1][new[0] == nodes[j]].tolist()) == {int(f.group_nodes[g.group_of_class[j]])}
    assert torch.equal(h.x[nodes[j], f.x.shape[1]:], torch.as_tensor(chan[j], dtype=torch.float32))
    enc = GraphEncoder(h.x.shape[1], seed=0)
    assert enc(h).node.shape == (h.num_nodes, 64)
