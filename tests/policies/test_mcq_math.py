"""The pruning-distribution arithmetic of mcq (policies.md §1.2 and the §4 checklist)."""
import math

import numpy as np
import pytest

from fxprune.policies.mcq_math import counts, epsilon, project, sample, trust_region_step


@pytest.mark.parametrize("seed", range(5))
def test_project_and_sample_stay_on_the_simplex_above_p_min(seed):
    rng = np.random.default_rng(seed)
    p = project(rng.random(12) ** 4, 1e-5)
    for _ in range(50):
        pt = sample(p, 0.3, rng, 1e-5)
        assert pt.sum() == pytest.approx(1.0)
        assert pt.min() >= 1e-5 - 1e-15
    x = project(np.array([-1.0, 0.0, 2.0, 6.0]), 0.01)
    np.testing.assert_allclose(x, [0.01, 0.01, 0.98 * 2 / 8, 0.98 * 6 / 8])


@pytest.mark.parametrize("seed", range(5))
def test_trust_region_bounds_the_change_of_every_entry(seed):
    rng = np.random.default_rng(seed)
    p = project(rng.random(10), 1e-5)
    target = project(rng.random(10) ** 6, 1e-5)
    for step in (0.1, 1.0):
        new = trust_region_step(p, target, step, 0.2, 1e-5)
        assert new.sum() == pytest.approx(1.0)
        f = new / p  # one normaliser for all entries: the factors' spread is at most (1+δ)/(1-δ)
        assert f.max() / f.min() <= 1.2 / 0.8 + 1e-9
    # a full step towards the target moves p as far as the clip allows
    far = trust_region_step(p, target, 1.0, 0.2, 1e-5)
    assert (far / p).max() / (far / p).min() == pytest.approx(1.5, rel=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_counts_sum_to_the_quota_and_respect_room(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.integers(3, 40))
    pt = project(rng.random(g) ** 3, 1e-5)
    room = rng.integers(0, 30, g)
    quota = int(rng.integers(1, max(2, room.sum())))
    n = counts(pt, quota, room)
    assert (n >= 0).all() and (n <= room).all()
    assert abs(int(n.sum()) - quota) <= 1
    # unlimited room: the rounding fix keeps the sum at the quota (±1)
    n2 = counts(pt, quota, np.full(g, 10 ** 6))
    assert abs(int(n2.sum()) - quota) <= 1
    assert np.abs(n2 - pt * quota).max() <= quota * 0.05 + 1.5


def test_counts_redistribute_the_excess_of_clipped_groups():
    n = counts(np.array([0.9, 0.05, 0.05]), 20, np.array([2, 100, 100]))
    assert n[0] == 2 and n.sum() == 20


def test_epsilon_schedules():
    assert epsilon("constant", 0.4, 7, 10) == 0.4
    assert epsilon("cosine", 0.4, 5, 100) == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert epsilon("linear", 0.4, 5, 100) == pytest.approx(0.2)
    assert epsilon("cosine", 0.4, 11, 100) == 0.0 and epsilon("linear", 0.4, 11, 100) == 0.0
