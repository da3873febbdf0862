"""The pure math of ``sac`` against independent computations, and the environment code's GRU."""
import math

import numpy as np
import pytest
import torch

from fxprune.policies.sac import EnvCode
from fxprune.policies.sac_math import (Schedule, actor_loss, align_loss, bisect_count, clip_action,
                                       closed_form_bounds, critic_target, fade_factor, kept_count, polyak,
                                       pre_tanh_of_rate, to_unit)


def test_schedule_is_the_papers_at_200_epochs_and_scales():
    s = Schedule.scaled(200, 0.05, 0.10, 0.45)
    assert (s.warm, s.fill, s.agent_end) == (10, 20, 90)  # App. B
    assert not s.collects(10) and s.collects(11) and s.collects(90) and not s.collects(91)
    assert not s.updates(20) and s.updates(21) and not s.updates(91)
    t = Schedule.scaled(40, 0.1, 0.15, 0.5)  # policies.md's CPU setting: 4 / 6 / 20
    assert (t.warm, t.fill, t.agent_end) == (4, 6, 20)
    for n in range(1, 12):  # every epoch budget has at least one collecting epoch
        s = Schedule.scaled(n, 0.05, 0.10, 0.45)
        assert any(s.collects(e) for e in range(1, n + 1)) and s.agent_end <= n and s.fade_end == n


@pytest.mark.parametrize("frac, fade_end", [(1.0, 30), (0.8, 24), (0.7, 21), (0.45, 14), (0.2, 14)])
def test_the_fade_ends_at_its_fraction_never_before_the_agent_phase(frac, fade_end):
    s = Schedule.scaled(30, 0.05, 0.10, 0.45, frac)
    assert s.agent_end == 14 and s.fade_end == fade_end


@pytest.mark.parametrize("seed", range(10))
def test_closed_form_bounds_make_every_action_feasible_on_a_linear_model(seed):
    """Layers whose FLOPs are linear in their kept fraction: any action clipped to the bounds,
    layer after layer, lands within [target - last layer's slack, target]."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(1, 10, 8)
    target = 0.5 * f.sum()
    spent = 0.0
    for i in range(len(f)):
        a_min, a_max = closed_form_bounds(target, spent, f[i], f[i + 1:].sum())
        a = clip_action(rng.uniform(0, 1), a_min, a_max, 1.0)
        spent += f[i] * (1 - a)
    assert spent == pytest.approx(target, rel=1e-9) or spent <= target + 1e-9
    assert spent >= target - 1e-9  # a_max: never undershoots with the later layers intact


def test_closed_form_matches_bisection_on_the_same_linear_cost():
    f, target = np.array([4.0, 6.0, 2.0, 8.0]), 10.0
    c = np.array([16, 32, 8, 64])
    keep = c.copy()
    i = 1
    cost = lambda k, later: float(f[0] * keep[0] / c[0] + f[1] * k / c[1] + (f[2:] * later).sum())  # noqa: E731
    a_min, a_max = closed_form_bounds(target, f[0], f[1], f[2:].sum())
    k_hi = bisect_count(lambda k: cost(k, np.zeros(2)), 0, c[i], target)
    assert 1 - k_hi / c[i] == pytest.approx(min(max(a_min, 0), 1), abs=1 / c[i])
    for tgt in (10.0, 17.0, 19.5):  # a_max: unconstrained (> 1), inside, and tight
        a_min, a_max = closed_form_bounds(tgt, f[0], f[1], f[2:].sum())
        k_lo = bisect_count(lambda k: cost(k, np.ones(2)), 0, c[i], tgt)
        k_min = 0 if k_lo is None else k_lo + (k_lo < c[i] and cost(k_lo, np.ones(2)) < tgt)
        assert 1 - k_min / c[i] == pytest.approx(min(max(a_max, 0), 1), abs=1 / c[i]), tgt


def test_bisect_count():
    assert bisect_count(lambda k: k * k, 0, 100, 50) == 7
    assert bisect_count(lambda k: k, 5, 10, 3) is None
    assert bisect_count(lambda k: k, 0, 10, 99) == 10


def test_clip_action():
    assert clip_action(0.9, 0.2, 0.5, 0.8) == 0.5
    assert clip_action(0.0, 0.2, 0.5, 0.8) == 0.2
    assert clip_action(0.3, -1.0, 2.0, 0.8) == 0.3
    assert clip_action(0.3, 0.95, 2.0, 0.8) == 0.8  # empty interval: the cap (the floor keeps)


def test_unit_squash_logprob_is_the_change_of_variables():
    torch.manual_seed(0)
    mu, std = torch.randn(6, 1), torch.rand(6, 1) + 0.2
    u = mu + std * torch.randn(6, 1)
    t = torch.tanh(u)
    logp_t = (torch.distributions.Normal(mu, std).log_prob(u) - torch.log(1 - t.pow(2))).sum(-1)
    a, logp = to_unit(t, logp_t)
    base = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, std),
        [torch.distributions.TanhTransform(), torch.distributions.AffineTransform(0.5, 0.5)])
    assert torch.allclose(a, (t + 1) / 2)
    assert torch.allclose(logp, base.log_prob(a).sum(-1), atol=1e-4)


def test_critic_target_and_actor_loss():
    r, d = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    q1, q2, lp = torch.tensor([2.0, 3.0]), torch.tensor([1.5, 4.0]), torch.tensor([-1.0, 0.3])
    y = critic_target(r, d, q1, q2, lp, 0.9, 0.1)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * (1.5 + 0.1), 0.5])
    assert float(actor_loss(q1, q2, lp, 0.1)) == pytest.approx(np.mean([0.1 * -1 - 1.5, 0.1 * 0.3 - 3.0]))


def test_polyak():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    want = [0.9 * p.detach() + 0.1 * q.detach() for p, q in zip(a.parameters(), b.parameters())]
    polyak(a, b, 0.1)
    assert all(torch.allclose(p, w) for p, w in zip(a.parameters(), want))


def test_align_loss_forms():
    w = torch.arange(24, dtype=torch.float32).reshape(4, 3, 2)
    idx = torch.tensor([1, 3])
    per_layer = align_loss([(w, 0, idx)], "per_layer")
    assert float(per_layer) == pytest.approx(math.sqrt(float((w[[1, 3]] ** 2).sum())), rel=1e-5)
    per_channel = align_loss([(w, 0, idx)], "per_channel")
    assert float(per_channel) == pytest.approx(float(w[1].norm() + w[3].norm()), rel=1e-5)
    on_dim1 = align_loss([(w, 1, torch.tensor([0]))], "per_channel")
    assert float(on_dim1) == pytest.approx(float(w[:, 0].norm()), rel=1e-5)
    g = w.clone().requires_grad_(True)
    align_loss([(g, 0, idx)]).backward()
    assert torch.all(g.grad[[0, 2]] == 0) and torch.all(g.grad[[1, 3]] != 0)  # only removed channels pulled


def test_environment_code_is_causal_and_changes_across_epochs():
    torch.manual_seed(0)
    env = EnvCode(10, 8, 6, 16)
    with torch.no_grad():
        z5, z3 = env.codes(5), env.codes(3)
    assert torch.allclose(z5[:3], z3)  # z_k depends on epochs 1..k only
    assert not torch.allclose(z5[3], z5[4])


def test_decoder_mse_falls_on_a_synthetic_drifting_reward():
    """r = s·w + drift(epoch): the decoder can only fit the drift through z, so its error falls
    well below that of the best epoch-blind fit."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    env = EnvCode(8, 8, 8, 32)
    opt = torch.optim.Adam(env.parameters(), lr=3e-3)
    w = torch.randn(10, generator=g)
    drift = torch.linspace(-1, 1, 8)
    s = torch.rand(2000, 10, generator=g)
    ep = torch.randint(0, 8, (2000,), generator=g)
    r = 0.2 * (s @ w) + drift[ep]
    losses = []
    for _ in range(400):
        i = torch.randint(0, 2000, (128,), generator=g)
        z = env.codes(8)[ep[i]]
        loss = (env.decoder(torch.cat([s[i, :9], s[i, 9:], z], -1)).squeeze(-1) - r[i]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    blind = float(((r - r.mean()) - 0.2 * ((s - s.mean(0)) @ w)).var())  # the drift's variance: no z, no fit
    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:20])
    assert np.mean(losses[-20:]) < 0.3 * blind


@pytest.mark.parametrize("rate,expected", [(0.1, 0.1), (0.29, 0.29), (0.5, 0.5), (0.9, 0.9), (0.0, 1e-3), (1.0, 1 - 1e-3)])
def test_pre_tanh_of_rate_squashes_back_to_the_rate(rate, expected):
    u = torch.tensor([pre_tanh_of_rate(rate)], dtype=torch.float64)
    a, _ = to_unit(torch.tanh(u), torch.zeros(()))
    assert float(a) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("args,expected", [
    ((0.3, 16, 2, 1), 12),           # 16 - floor(4.8)
    ((0.3, 16, 2, 8), 8),            # down to the multiple
    ((0.99, 16, 4, 1), 4),           # never under the floor
    ((0.1, 16, 1, 1, 10), 10),       # at most the lower bound's count
    ((0.0, 12, 1, 8), 12),           # a whole group is not rounded
    ((0.5, 16, 6, 4), 8)])
def test_kept_count_rounds_as_the_rollout_does(args, expected):
    assert kept_count(*args) == expected


@pytest.mark.parametrize("e0", [1, 4, 10])
def test_fade_factors_multiply_to_a_linear_fade_that_ends_at_zero(e0):
    epochs, left = 10, 1.0
    for e in range(e0, epochs + 1):
        left *= fade_factor(e, epochs)
        assert left == pytest.approx((epochs - e) / (epochs - e0 + 1))  # the share still alive after epoch e
    assert left == 0.0 and fade_factor(epochs, epochs) == 0.0
    with pytest.raises(ValueError, match="epoch 11 outside 1..10"):
        fade_factor(11, 10)
