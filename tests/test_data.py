"""fxprune.data: npz loading, reward split (disjoint, balanced, from train), batching; the CIFAR
ResNet definition loads the shared pretrained weights and reproduces their accuracy."""
import numpy as np
import pytest
import torch

import fxprune
from fxprune.data import ArrayDataset, batches, load_npz, load_npz_folder, reward_split
from fxprune.finetune import accuracy
from fxprune.models import cifar_resnet, load_cifar_resnet


def _ds(n=100, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % classes)


def test_npz_roundtrip_and_normalisation(tmp_path):
    ds = _ds()
    np.savez(tmp_path / "train.npz", x=ds.x, y=ds.y)
    got = load_npz_folder(tmp_path, "train", normalize="cifar10")
    assert len(got) == 100 and np.array_equal(got.y, ds.y)
    x = got.to_tensor(slice(0, 2))
    assert x.shape == (2, 3, 8, 8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    expect = (ds.x[1, 2, 3, 0] / 255.0 - mean[0]) / std[0]
    assert float(x[1, 0, 2, 3]) == pytest.approx(expect, rel=1e-5)


def test_bad_files(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="no data file"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(fxprune.FxpruneError, match="not a readable"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "wrong.npz", a=np.zeros(3))
    with pytest.raises(fxprune.FxpruneError, match="'x' and 'y'"):
        load_npz(tmp_path / "wrong.npz")
    with pytest.raises(fxprune.FxpruneError, match="uint8"):
        ArrayDataset(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int64))


def test_reward_split_disjoint_balanced_and_seeded():
    ds = _ds(200)
    rest, reward = reward_split(ds, 50, seed=3)
    assert len(rest) + len(reward) == 200 and len(reward) == 50
    rows = {r.tobytes() for r in reward.x}
    assert not any(r.tobytes() in rows for r in rest.x)
    assert np.bincount(reward.y, minlength=10).tolist() == [5] * 10
    again = reward_split(ds, 50, seed=3)[1]
    assert np.array_equal(again.x, reward.x)
    assert not np.array_equal(reward_split(ds, 50, seed=4)[1].x, reward.x)
    with pytest.raises(fxprune.FxpruneError, match="n_reward"):
        reward_split(ds, 0)


def test_loader_shuffles_per_epoch_and_batches_limit():
    ds = _ds(30)
    ld = ds.loader(8, shuffle=True, augment=True, seed=1)
    first = torch.cat([y for _, y in ld])
    second = torch.cat([y for _, y in ld])
    assert len(ld) == 4 and sorted(first.tolist()) == sorted(ds.y.tolist())
    assert not torch.equal(first, second)
    got = batches(ds.loader(8), limit=12)
    assert [x.shape[0] for x, _ in got] == [8, 4]
    with pytest.raises(fxprune.FxpruneError, match="limit"):
        batches(ds.loader(8), limit=0)
    got = batches([torch.zeros(5, 3, 2, 2)] * 3, limit=7)
    assert [x.shape[0] for x, _ in got] == [5, 2] and got[0][1] is None


def _augment_one_by_one(x, rng, pad=4):
    """The CIFAR recipe written out image by image: the reference for the batched version."""
    n, _, h, w = x.shape
    flip = rng.random(n) < 0.5
    dy, dx = rng.integers(0, 2 * pad + 1, n), rng.integers(0, 2 * pad + 1, n)
    out = []
    for i in range(n):
        img = x[i].flip(2) if flip[i] else x[i]
        img = torch.nn.functional.pad(img, (pad, pad, pad, pad))
        out.append(img[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w])
    return torch.stack(out)


def test_batched_augmentation_is_the_per_image_recipe():
    from fxprune.data import _augment

    x = torch.randn(9, 3, 8, 6)
    got = _augment(x, np.random.default_rng(4))
    assert torch.equal(got, _augment_one_by_one(x, np.random.default_rng(4)))
    # a crop really moves the image: some outputs differ from the flipped/unflipped input
    assert not torch.equal(got, x) and got.shape == x.shape


@pytest.mark.parametrize("augment", [False, True])
def test_device_resident_loader_gives_the_host_batches(augment):
    ds = ArrayDataset(np.random.default_rng(0).integers(0, 256, (37, 8, 8, 3), dtype=np.uint8), np.arange(37) % 10,
                      normalize="cifar10")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    host = list(ds.loader(8, shuffle=True, augment=augment, seed=3))
    for dev in devices:
        ld = ds.loader(8, shuffle=True, augment=augment, seed=3, device=dev)
        got = list(ld)
        assert len(got) == len(host) == 5
        for (xa, ya), (xb, yb) in zip(host, got):
            assert xb.device.type == dev and torch.equal(ya, yb.cpu())
            torch.testing.assert_close(xb.cpu(), xa, rtol=0, atol=1e-6)
        ld.set_epoch(0)
        assert torch.equal(next(iter(ld))[1].cpu(), host[0][1])  # set_epoch replays the first pass


def test_cifar_resnet_structure_and_pruning():
    m = cifar_resnet(20).eval()
    assert sum(p.numel() for p in m.parameters()) == 269_722  # the published ResNet-20 size
    res = fxprune.prune(m, 0.5, example_inputs=(1, 3, 32, 32), progress=False)
    assert res.plan.meta["flops_ratio"] == pytest.approx(0.5, abs=0.02)
    assert res.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(fxprune.FxpruneError, match="6n\\+2"):
        cifar_resnet(21)


def test_pretrained_resnet56_reproduces_accuracy(shared_data):
    m = load_cifar_resnet(shared_data / "weights" / "resnet56-4bfd9763.th")
    test = load_npz_folder(shared_data / "cifar10", "test")
    acc = accuracy(m, test.subset(np.arange(2000)).loader(500))
    # 93.39% on all 10,000 test images (../shared/data/README.md); 2,000 images: within ~1.5 pt
    assert 0.915 < acc < 0.955


@pytest.mark.parametrize("device, match", [("gpu0", "not a torch device"), (3.5, "not a torch device")]
                         + ([] if torch.cuda.is_available() else [("cuda", "CUDA is not available")]))
def test_loader_refuses_a_bad_device(device, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        _ds().loader(8, device=device)

