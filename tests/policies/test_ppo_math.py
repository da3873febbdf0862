"""The pure math of ``ppo`` and the shared heads/buffers, against independent formulas and a toy
problem PPO must solve."""
import json
import math

import numpy as np
import pytest
import torch

from fxprune.policies.ppo_math import (Competition, bernoulli_entropy, bernoulli_logprob, centre_prior, clipped_surrogate,
                                       executed_mask, fill_to_budget, jaccard, lagrangian, normalise, rank_prior,
                                       ranked_mask, self_competition, slope_factor)
from fxprune.search.buffers import ReplayBuffer, RolloutBuffer, gae
from fxprune.search.heads import BernoulliHead, TanhGaussian


def test_bernoulli_logprob_and_entropy_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 40, generator=g) * 3
    mask = (torch.rand(5, 40, generator=g) < 0.5).to(torch.uint8)
    d = torch.distributions.Bernoulli(logits=logits)
    assert torch.allclose(bernoulli_logprob(logits, mask), d.log_prob(mask.float()).sum(-1), atol=1e-5)
    assert torch.allclose(bernoulli_entropy(logits), d.entropy().sum(-1), atol=1e-5)


@pytest.mark.parametrize("adv", [1.5, -2.0])
def test_clipped_surrogate_is_the_pessimistic_bound(adv):
    old = torch.zeros(7)
    new = torch.tensor([-1.0, -0.3, -0.1, 0.0, 0.1, 0.3, 1.0])
    a = torch.full((7,), adv)
    ratio = np.exp(new.numpy())
    want = -np.mean([min(r * adv, min(max(r, 0.8), 1.2) * adv) for r in ratio])
    assert float(clipped_surrogate(new, old, a, 0.2)) == pytest.approx(want, rel=1e-6)
    # no gradient through the clipped side: positive advantages stop pushing above 1+eps
    new = new.clone().requires_grad_(True)
    clipped_surrogate(new, old, a, 0.2).backward()
    outside = (ratio > 1.2) if adv > 0 else (ratio < 0.8)
    assert np.all(new.grad.numpy()[outside] == 0) and np.all(new.grad.numpy()[~outside] != 0)


def test_normalise_gives_zero_mean_unit_std():
    z = normalise(np.array([2.0, 2.0, 0.0, 1.0, 5.0]))
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0, rel=1e-6)


def test_self_competition_every_feasible_reward_beats_every_infeasible_one():
    rng = np.random.default_rng(0)
    ref = Competition(a_ref=0.5, c_ema=0.7)
    feas, infeas = [], []
    for _ in range(200):
        c = rng.uniform(0.2, 1.0)
        acc = rng.uniform(0, 1)
        r, _ = self_competition(c, 0.5, acc if c <= 0.5 else None, ref, 0.9)
        (feas if c <= 0.5 else infeas).append(r)
    assert min(feas) >= max(infeas)
    assert set(feas) <= {0.0, 1.0, 2.0} and set(infeas) <= {-1.5, -1.0, -0.5}


def test_self_competition_references_move():
    r, ref = self_competition(0.4, 0.5, 0.8, Competition(0.6, 0.9), mu=0.9)
    assert r == 2.0 and ref.a_ref == pytest.approx(0.9 * 0.6 + 0.1 * 0.8) and ref.c_ema == 0.9
    r, ref = self_competition(0.4, 0.5, 0.5, Competition(0.6, 0.9), mu=0.9, baseline="best")
    assert r == 0.0 and ref.a_ref == 0.6  # "best" never goes down
    r, ref = self_competition(0.7, 0.5, None, Competition(0.6, 0.9), mu=0.9)  # cheaper than usual
    assert r == -0.5 and ref.c_ema == pytest.approx(0.9 * 0.9 + 0.1 * 0.7) and ref.a_ref == 0.6
    r, _ = self_competition(0.95, 0.5, None, Competition(0.6, 0.9), mu=0.9)  # dearer than usual
    assert r == -1.5


def test_lagrangian_reward_and_dual_ascent():
    r, lam = lagrangian(0.7, 0.5, None, lam=2.0, lr=0.5)
    assert r == pytest.approx(-2.0 * 0.2) and lam == pytest.approx(2.1)
    r, lam = lagrangian(0.4, 0.5, 0.9, lam=0.02, lr=0.5)
    assert r == pytest.approx(0.9) and lam == 0.0  # lambda never negative


def _groups(rng, n_groups=6):
    sizes = rng.integers(4, 40, n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    classes = [np.arange(s, s + n) for s, n in zip(starts, sizes)]
    return sizes, classes


@pytest.mark.parametrize("seed", range(20))
def test_executed_mask_keeps_the_floor_and_lands_on_multiples(seed):
    rng = np.random.default_rng(seed)
    sizes, classes = _groups(rng)
    n = int(sizes.sum())
    floor = np.maximum(1, (sizes * rng.uniform(0.05, 0.5, len(sizes))).astype(int))
    multiples = rng.choice([1, 2, 4], len(sizes))
    logits = rng.normal(size=n)
    sampled = (rng.random(n) < rng.uniform(0, 1)).astype(np.uint8)  # often empties whole groups
    keep = executed_mask(sampled, logits, classes, floor, multiples, sizes)
    for g, cls in enumerate(classes):
        k = int(keep[cls].sum())
        assert k >= floor[g] and k >= 1, "a group fell below its floor"
        assert k == sizes[g] or k % multiples[g] == 0 or k == floor[g], (k, multiples[g], floor[g])
        on = int(sampled[cls].sum())
        if k > on:  # channels switched back on are the highest-logit ones among those dropped
            added = cls[(keep[cls] > 0.5) & (sampled[cls] == 0)]
            rest = cls[(keep[cls] < 0.5)]
            assert not rest.size or logits[added].min() >= logits[rest].max()
        if k < on:  # channels switched off are the lowest-logit ones among those sampled on
            assert np.all(keep[cls][sampled[cls] == 0] == 0)


def test_executed_mask_leaves_a_valid_sample_alone():
    classes = [np.arange(0, 8), np.arange(8, 16)]
    sampled = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0], np.uint8)
    keep = executed_mask(sampled, np.zeros(16), classes, np.array([2, 2]), np.array([2, 4]), np.array([8, 8]))
    assert np.array_equal(keep, sampled)


@pytest.mark.parametrize("seed", range(10))
def test_ranked_mask_keeps_the_sampled_count_of_the_highest_logit_channels(seed):
    rng = np.random.default_rng(seed)
    sizes, classes = _groups(rng)
    n = int(sizes.sum())
    logits = rng.normal(size=n)
    sampled = (rng.random(n) < 0.5).astype(np.uint8)
    outside = np.arange(n, n + 5)  # entries of no listed group are left alone
    sampled = np.concatenate([sampled, [1, 0, 1, 1, 0]]).astype(np.uint8)
    keep = ranked_mask(sampled, np.concatenate([logits, np.zeros(5)]), classes)
    assert np.array_equal(keep[outside], sampled[outside])
    for cls in classes:
        k = int(sampled[cls].sum())
        assert int(keep[cls].sum()) == k
        on, off = logits[cls][keep[cls] > 0.5], logits[cls][keep[cls] < 0.5]
        assert not on.size or not off.size or on.min() >= off.max()


def _linear_cost(rng, n):
    w = rng.uniform(0.5, 2.0, n)
    return lambda keep: float(keep @ w) / w.sum()


def _next_blocks(keep, logits, classes, multiples):
    """Every group's next block: its ``m`` highest-logit dropped channels."""
    out = []
    for cls, m in zip(classes, multiples):
        off = cls[keep[cls] < 0.5]
        if off.size:
            out.append(off[np.argsort(-logits[off], kind="stable")[:m]])
    return out


@pytest.mark.parametrize("seed", range(20))
def test_fill_to_budget_spends_the_budget_in_logit_order_on_multiples(seed):
    rng = np.random.default_rng(seed)
    sizes, classes = _groups(rng)
    n = int(sizes.sum())
    mult = rng.choice([1, 2, 4], len(sizes)) if seed % 2 else np.ones(len(sizes), np.int64)
    cost, logits = _linear_cost(rng, n), rng.normal(size=n)
    keep = np.zeros(n)
    for cls, m in zip(classes, mult):  # a valid plan: on the multiples
        keep[cls[rng.permutation(cls.size)[:min(m * rng.integers(1, cls.size // m + 1), cls.size)]]] = 1.0
    budget = cost(keep) + rng.uniform(0.05, 0.4)
    out = fill_to_budget(keep, logits, classes, mult, sizes, cost, budget)
    assert cost(out) <= budget and np.all(out >= keep) and out.sum() > keep.sum()
    for cls, m, size in zip(classes, mult, sizes):
        k = int(out[cls].sum())
        assert k == size or k % m == 0, (k, m)
        added, off = cls[(out[cls] > 0.5) & (keep[cls] < 0.5)], cls[out[cls] < 0.5]
        assert not added.size or not off.size or logits[added].min() >= logits[off].max()
    for block in _next_blocks(out, logits, classes, mult):  # no group can take another block
        trial = out.copy()
        trial[block] = 1.0
        assert cost(trial) > budget
    assert np.array_equal(fill_to_budget(keep, logits, classes, mult, sizes, cost, cost(keep) - 0.01), keep)


def test_jaccard():
    assert jaccard(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(1 / 3)
    assert jaccard(np.zeros(3), np.zeros(3)) == 1.0


def test_gae_matches_the_recursion_by_hand():
    r = np.array([0.0, 1.0, 0.0, 0.0, 2.0])
    v = np.array([0.5, 0.2, 0.1, 0.3, 0.4])
    d = np.array([False, True, False, False, True])
    g, lam = 0.9, 0.8
    # by hand: episode 2 (t=2..4), then episode 1 (t=0..1)
    d4 = 2.0 - 0.4
    d3 = 0.0 + g * 0.4 - 0.3
    d2 = 0.0 + g * 0.3 - 0.1
    a4, a3 = d4, d3 + g * lam * d4
    a2 = d2 + g * lam * a3
    d1, d0 = 1.0 - 0.2, 0.0 + g * 0.2 - 0.5
    a1, a0 = d1, d0 + g * lam * d1
    adv, ret = gae(r, v, d, g, lam)
    assert np.allclose(adv, [a0, a1, a2, a3, a4]) and np.allclose(ret, adv + v)


def test_one_step_episodes_give_reward_minus_value():
    r, v = np.array([1.0, -1.0, 2.0]), np.array([0.5, 0.5, 0.5])
    adv, _ = gae(r, v, np.ones(3, bool), 0.99, 0.95)
    assert np.allclose(adv, r - v)


def test_rollout_buffer_round_trips_its_state():
    b = RolloutBuffer()
    for t in range(3):
        shift = torch.tensor([0.25 * t, -0.5]) if t else None  # ppo's group shifts (group_noise), or none
        b.add(torch.tensor([1, 0, t % 2], dtype=torch.uint8), -0.5 * t, 0.1 * t, t, np.ones(4) * t, shift)
    b.end_episode(1.5)
    c = RolloutBuffer()
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert [m.tolist() for m in c.masks] == [m.tolist() for m in b.masks]
    assert [None if x is None else x.tolist() for x in c.shifts] == [None, [0.25, -0.5], [0.5, -0.5]]
    assert np.allclose(c.advantages(0.9, 0.9)[0], b.advantages(0.9, 0.9)[0])


def test_replay_buffer_wraps_and_round_trips():
    b = ReplayBuffer(4, 2, 1)
    for i in range(6):
        b.add([i, i], [i], float(i), [i + 1, i + 1], i == 5, epoch=i // 2)
    assert len(b) == 4 and sorted(b.r.tolist()) == [2.0, 3.0, 4.0, 5.0]
    st = b.state_dict()
    c = ReplayBuffer(4, 2, 1)
    c.load_state_dict({k: v for k, v in st.items() if k != "tensors"}, st["tensors"])
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    s1, s2 = b.sample(8, rng1), c.sample(8, rng2)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


@pytest.mark.parametrize("k0", [0.3, 0.5, 0.8])
def test_keep_bias_initialisation(k0):
    torch.manual_seed(0)
    head = BernoulliHead(12, 32, k0)
    with torch.no_grad():
        p = torch.sigmoid(head(torch.randn(500, 12)))
    assert float(p.mean()) == pytest.approx(k0, abs=0.02) and float(p.std()) < 0.05


def test_tanh_gaussian_logprob_is_the_change_of_variables():
    torch.manual_seed(0)
    head = TanhGaussian(5, 3, hidden=16)
    x = torch.randn(4, 5)
    a, logp = head.sample(x, torch.Generator().manual_seed(1))
    mu, log_std = head(x)
    base = torch.distributions.Normal(mu, log_std.exp())
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    want = (base.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)
    assert torch.allclose(logp, want, atol=1e-3)
    assert float(a.abs().max()) < 1


def test_ppo_math_solves_a_toy_mask_problem():
    """A bandit over 16 channel bits: reward = fraction of bits equal to "keep the odd channels";
    the policy is a vector of logits updated with the clipped objective on normalised advantages."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    target = torch.arange(16) % 2
    logits = torch.zeros(16, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(60):
        with torch.no_grad():
            masks = (torch.rand(32, 16, generator=g) < torch.sigmoid(logits)).to(torch.uint8)
            old = bernoulli_logprob(logits.expand(32, -1), masks)
            reward = (masks == target).float().mean(1).numpy()
        adv = torch.as_tensor(normalise(reward), dtype=torch.float32)
        for _ in range(4):
            loss = clipped_surrogate(bernoulli_logprob(logits.expand(32, -1), masks), old, adv, 0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    learned = (logits > 0).long()
    assert torch.equal(learned, target), logits
    assert float(torch.sigmoid(logits)[target == 1].min()) > 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_prior_is_positive_exactly_on_the_reference_plan(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 20, 6)
    group_of = np.repeat(np.arange(6), sizes)
    rank = np.concatenate([rng.permutation(n) for n in sizes])
    counts = np.array([rng.integers(0, n + 1) for n in sizes])
    prior = rank_prior(rank, group_of, counts, sizes)
    np.testing.assert_array_equal(prior > 0, rank < counts[group_of])
    # in units of the group's width: neighbours in rank are 1/C_g apart
    for g in range(6):
        p = np.sort(prior[group_of == g])
        np.testing.assert_allclose(np.diff(p), 1.0 / sizes[g])


@pytest.mark.parametrize("slope", [3.0, 10.0, 40.0])
def test_centre_prior_makes_the_expected_kept_count_the_reference_count(slope):
    rng = np.random.default_rng(int(slope))
    sizes = rng.integers(4, 40, 8)
    group_of = np.repeat(np.arange(8), sizes)
    rank = np.concatenate([rng.permutation(n) for n in sizes])
    counts = np.array([rng.integers(1, n) for n in sizes])  # 0 < k < C: reachable within one group width
    prior = rank_prior(rank, group_of, counts, sizes)
    centred = centre_prior(prior, group_of, counts, slope)
    for g in range(8):
        on = group_of == g
        expected = (1.0 / (1.0 + np.exp(-slope * centred[on]))).sum()
        assert expected == pytest.approx(counts[g], abs=1e-6)
        shift = centred[on] - prior[on]
        np.testing.assert_allclose(shift, shift[0], atol=1e-12)  # one shift per group: the ranking within it is kept
        assert -1.0 <= shift[0] <= 1.0
        boundary = (1.0 / (1.0 + np.exp(-slope * prior[on]))).sum()
        # the shift moves the expected count towards k from where the boundary prior leaves it
        assert np.sign(shift[0]) == np.sign(counts[g] - boundary) or abs(counts[g] - boundary) < 1e-9


def test_centre_prior_shifts_a_group_that_keeps_most_of_its_channels_up_under_a_flat_slope():
    """k = 0.7 C: the kept side spans 0 … 0.7 s and the dropped side 0 … −0.3 s, so the boundary
    prior's samples fall short of k; the centred prior needs a positive shift, smaller when steeper."""
    c, k = 100, 70
    group_of, rank = np.zeros(c, np.int64), np.arange(c)
    prior = rank_prior(rank, group_of, np.array([k]), np.array([c]))
    shifts = [float((centre_prior(prior, group_of, np.array([k]), s) - prior)[0]) for s in (3.0, 10.0, 40.0)]
    assert shifts[0] > shifts[1] > shifts[2] > 0.0, shifts
    # by hand (the integral of the logistic): at s = 3 the shift is about 0.13 group widths
    assert shifts[0] == pytest.approx(0.13, abs=0.02)


@pytest.mark.parametrize("start,final,span", [(10.0, 3.0, 200), (3.0, 10.0, 50), (10.0, 0.0, 100)])
def test_slope_factor_is_geometric_from_one_to_final_over_start(start, final, span):
    f = [slope_factor(e, start, final, span) for e in (0, span // 2, span, 2 * span)]
    if final == 0:
        assert f == [1.0] * 4
        return
    assert f[0] == pytest.approx(1.0)
    assert f[1] == pytest.approx((final / start) ** 0.5)  # half way: the geometric mean of the slopes
    assert f[2] == pytest.approx(final / start) and f[3] == pytest.approx(final / start)
