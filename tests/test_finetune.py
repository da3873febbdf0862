"""Recovery fine-tuning: the KD loss formula, learning on a tiny task, teacher-only (label-free)
mode, the step budget, and that the input model is left alone."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxprune
from fxprune.finetune import FinetuneConfig, accuracy, finetune, kd_loss


def _task(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_kd_loss_matches_formula():
    g = torch.Generator().manual_seed(1)
    s, t, y = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.tensor([0, 1, 2, 3, 0])
    tau, w = 2.0, 0.25
    p_t = F.softmax(t / tau, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / tau, 1))).sum(1).mean()
    expect = (1 - w) * tau ** 2 * kl + w * F.cross_entropy(s, y)
    assert float(kd_loss(s, t, y, tau, w)) == pytest.approx(float(expect), rel=1e-5)
    assert float(kd_loss(s, None, y, tau, w)) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)
    assert float(kd_loss(s, t, None, tau, w)) == pytest.approx(float(tau ** 2 * kl), rel=1e-5)
    with pytest.raises(fxprune.FxpruneError, match="labels or a teacher"):
        kd_loss(s, None, None, tau, w)


def test_finetune_learns_and_leaves_input_alone():
    data, model = _task(), _net()
    before = copy.deepcopy(model.state_dict())
    acc0 = accuracy(model, data)
    res = finetune(model, data, epochs=8, lr=0.05, eval_data=data, progress=False)
    assert res.steps == 8 * len(data)
    assert res.best_acc == max(res.eval_acc) and res.best_acc > acc0 + 0.2
    assert accuracy(res.model, data) == pytest.approx(res.best_acc)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_kd_from_teacher_without_labels_moves_student_towards_teacher():
    data = _task()
    teacher = finetune(_net(), data, epochs=8, lr=0.05, progress=False).model.eval()
    unlabelled = [(x, None) for x, _ in data]
    student = _net()
    gap = lambda m: sum(float(F.mse_loss(m(x), teacher(x))) for x, _ in data)  # noqa: E731
    with torch.no_grad():
        g0 = gap(student.eval())
    teacher.train()  # the caller's flags: finetune must run it in eval mode and restore them
    teacher_state = copy.deepcopy(teacher.state_dict())
    res = finetune(student, unlabelled, teacher=teacher, max_steps=40, lr=0.05, progress=False)
    assert all(m.training for m in teacher.modules()), "the teacher's training flags were changed"
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())
    teacher.eval()
    with torch.no_grad():
        assert gap(res.model) < 0.5 * g0
    assert res.steps == 40


def test_config_errors():
    with pytest.raises(fxprune.FxpruneError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(fxprune.FxpruneError, match="student_weight"):
        FinetuneConfig(student_weight=2.0)
    with pytest.raises(fxprune.FxpruneError, match="nn.Module"):
        finetune("model", _task())
    with pytest.raises(fxprune.FxpruneError, match="max_steps"):
        finetune(_net(), iter(_task()))
    with pytest.raises(fxprune.FxpruneError, match="no parameters"):
        finetune(nn.ReLU(), _task())
    with pytest.raises(fxprune.FxpruneError, match="labelled"):
        accuracy(_net(), [torch.zeros(2, 3, 8, 8)])
    net = _net().train()
    accuracy(net, _task())
    assert all(m.training for m in net.modules())
