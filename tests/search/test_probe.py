"""The training probe (``reward_train_steps``): its schedule, its training, and the evaluator's
scores with it (deterministic per plan, the working weights untouched, masked = compact)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import fxprune
from fxprune.finetune import lr_schedule
from fxprune.models import cifar_resnet
from fxprune.passes import prune_channels
from fxprune.search import DataSplits
from fxprune.search.bn import recalibrate
from fxprune.search.evaluate import Evaluator
from fxprune.search.probe import probe_config, train_probe
from fxprune.testing import random_plan


def _task(n, seed, size=16):
    """A learnable toy task: the class is the quadrant of the image with the largest mean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g) * 0.5
    y = torch.randint(0, 4, (n,), generator=g)
    h = size // 2
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, :, r * h:(r + 1) * h, col * h:(col + 1) * h] += 1.0
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def _graph():
    torch.manual_seed(0)
    model = cifar_resnet(20, num_classes=4).eval()
    return model, fxprune.analyze(model, (1, 3, 16, 16))


@pytest.mark.parametrize("steps", [1, 4, 10, 25])
def test_probe_lr_warms_up_linearly_then_anneals_towards_zero(steps):
    lr_at = lr_schedule(probe_config(0.1), steps)
    lrs = [lr_at(s) for s in range(steps)]
    warm = int(0.3 * steps)
    assert lrs[:warm] == pytest.approx([0.1 * (s + 1) / warm for s in range(warm)])
    assert max(lrs) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[max(warm - 1, 0):], lrs[max(warm, 1):]))  # never rises after the warm-up
    assert all(v > 0 for v in lrs)
    if steps > 1:  # the cosine ends low, and reaches 0 one step after the last
        assert lrs[-1] < 0.5 * 0.1
        assert lr_at(steps) == pytest.approx(0.0, abs=1e-12)


def test_train_probe_lowers_the_loss_and_repeats_bit_for_bit():
    model, _ = _graph()
    data = _task(128, seed=1)
    with torch.no_grad():
        before = sum(float(F.cross_entropy(model(x), y)) for x, y in data) / len(data)
    nets = [copy.deepcopy(model) for _ in range(2)]
    for net in nets:
        train_probe(net, data, steps=30, lr=0.05)
    with torch.no_grad():
        after = sum(float(F.cross_entropy(nets[0](x), y)) for x, y in data) / len(data)
    assert after < 0.8 * before
    assert not nets[0].training
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)


def _probe_metrics(graph, plan, reward, train, steps, calib):
    """What the evaluator's probe must compute, written out: surgery, recalibration, training, score."""
    net = prune_channels(graph, plan).eval()
    recalibrate(net, calib)
    train_probe(net, train, steps, 0.02)
    with torch.no_grad():
        outs = [(net(x), y) for x, y in reward]
    n = sum(y.numel() for _, y in outs)
    acc = sum(float((o.argmax(1) == y).sum()) for o, y in outs) / n
    loss = sum(float(F.cross_entropy(o, y, reduction="sum")) for o, y in outs) / n
    return acc, loss


@pytest.mark.parametrize("mode", ["masked", "compact"])
def test_probe_scores_equal_the_written_out_probe_and_leave_the_weights_alone(mode):
    model, graph = _graph()
    original = copy.deepcopy(model.state_dict())
    reward, train = _task(64, seed=2), _task(96, seed=3)
    calib = [x for x, _ in _task(32, seed=4)]
    ev = Evaluator(graph, reward, n_samples=None, mode=mode, bn_recalib=2, calibration=calib, train_steps=40,
                   train_data=train, train_lr=0.02, train_batch=16)
    plain = Evaluator(graph, reward, n_samples=None, mode=mode, bn_recalib=2, calibration=calib)
    working = copy.deepcopy(ev.state_dict())
    plans = [random_plan(graph, seed=s, drop=0.4) for s in range(2)]
    first = [ev.evaluate(p) for p in plans]
    again = ev.evaluate_many(plans[::-1])[::-1]  # another order, the same scores
    for p, m, m2 in zip(plans, first, again):
        acc, loss = _probe_metrics(graph, p, reward, train, 40, calib[:2])
        assert (m.acc, m.loss) == (m2.acc, m2.loss)
        assert m.acc == pytest.approx(acc, abs=1e-12)
        assert m.loss == pytest.approx(loss, rel=1e-5)
        assert (m.train_steps, m.mode) == (40, "compact")
        assert m.loss < plain.evaluate(p).loss  # the probe trained towards the task
    for k, v in ev.state_dict().items():
        assert torch.equal(v, working[k]), k
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_probe_takes_part_in_the_fingerprint():
    _, graph = _graph()
    reward, train = _task(32, seed=2), _task(64, seed=3)
    a = Evaluator(graph, reward, train_steps=2, train_data=train, train_batch=16).fingerprint()
    b = Evaluator(graph, reward, train_steps=3, train_data=train, train_batch=16).fingerprint()
    c = Evaluator(graph, reward, train_steps=2, train_data=_task(64, seed=5), train_batch=16).fingerprint()
    d = Evaluator(graph, reward).fingerprint()
    assert len({a, b, c, d}) == 4


def test_probe_bad_input():
    _, graph = _graph()
    reward = _task(32, seed=2)
    with pytest.raises(fxprune.OptionError, match="needs train_data"):
        Evaluator(graph, reward, train_steps=2)
    with pytest.raises(fxprune.OptionError, match="train_steps=-1"):
        Evaluator(graph, reward, train_steps=-1, train_data=reward)
    with pytest.raises(fxprune.OptionError, match="train_lr=0"):
        Evaluator(graph, reward, train_steps=1, train_data=reward, train_lr=0)
    with pytest.raises(fxprune.OptionError, match="labelled training batches"):
        Evaluator(graph, reward, train_steps=1, train_data=[x for x, _ in reward])
    with pytest.raises(fxprune.OptionError, match="at least train_batch=64"):
        Evaluator(graph, reward, train_steps=1, train_data=reward[:1], train_batch=64)
    with pytest.raises(fxprune.OptionError, match="labelled data"):
        Evaluator(graph, [x for x, _ in reward], train_steps=1, train_data=reward)


def test_prune_with_the_probe_through_the_search_options(tmp_path):
    """``policy_config={"reward_train_steps": K}`` reaches the evaluator: the random search draws
    the same plans with and without the probe (its draws do not depend on scores) and scores them
    differently; the user's model is not modified."""
    model, _ = _graph()
    original = copy.deepcopy(model.state_dict())
    data = DataSplits(train=_task(128, seed=6), reward=_task(32, seed=7))
    cfg = {"evaluations": 3, "reward_train_batch": 16, "bn_recalib": 1, "bn_batch": 16}
    rewards = {}
    for steps in (0, 10):
        res = fxprune.prune(model, 0.6, policy="random", data=data, example_inputs=(1, 3, 16, 16), n_reward=32,
                            policy_config={**cfg, "reward_train_steps": steps}, run_dir=tmp_path / f"run{steps}",
                            progress=False)
        rewards[steps] = [h["reward"] for h in res.search["history"] if h.get("kind") == "candidate"]
        assert res.search["info"]["reward_train_steps"] == steps
        assert res.report.flops_ratio <= 0.6 + 1e-9
    assert len(rewards[0]) == len(rewards[10]) == 3
    assert rewards[0] != rewards[10]
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k
    with pytest.raises(fxprune.OptionError, match="reward_train_steps"):
        fxprune.prune(model, 0.6, policy="random", data=data, example_inputs=(1, 3, 16, 16), n_reward=32,
                      policy_config={"reward_train_steps": -1}, run_dir=tmp_path / "bad", progress=False)
    with pytest.raises(fxprune.OptionError, match="DataSplits.train is None"):
        fxprune.prune(model, 0.6, policy="random", data=DataSplits(train=None, reward=_task(32, seed=7)),
                      example_inputs=(1, 3, 16, 16), n_reward=32, policy_config={"reward_train_steps": 1},
                      run_dir=tmp_path / "none", progress=False)


def test_a_diverging_probe_names_its_learning_rate_option():
    model, _ = _graph()
    with pytest.raises(fxprune.TrainingDiverged, match="lower reward_train_lr"):
        train_probe(copy.deepcopy(model), _task(64, seed=3), steps=20, lr=1e12)
