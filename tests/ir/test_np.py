"""The sort-based set helpers agree with numpy's own np.unique on random and edge-case inputs."""
import numpy as np
import pytest

from fxprune.ir import _np
from fxprune.ir._np import code_counts, unique, unique_counts, unique_inverse, unique_rows_inverse

CASES = [np.zeros(0, np.int64), np.array([5]), np.array([3, 3, 3]), np.array([-1, 7, -1, 2, 7, 0])]
CASES += [np.random.default_rng(s).integers(-5, 40, n) for s, n in [(0, 10), (1, 1000), (2, 20000)]]


@pytest.mark.parametrize("a", CASES, ids=lambda a: f"n{a.size}")
def test_matches_numpy(a):
    vals, inv, cnt = np.unique(a, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(unique(a), vals)
    u, c = unique_counts(a)
    np.testing.assert_array_equal(u, vals)
    np.testing.assert_array_equal(c, cnt)
    u, i = unique_inverse(a)
    np.testing.assert_array_equal(u, vals)
    np.testing.assert_array_equal(i, inv.ravel())
    np.testing.assert_array_equal(u[i], a)
    if a.size:
        shift = -int(a.min())
        for n_codes in (int(a.max()) + shift + 1, 10**9):  # bincount path, then the sort path
            u, c = code_counts(a + shift, n_codes)
            np.testing.assert_array_equal(u - shift, vals)
            np.testing.assert_array_equal(c, cnt)


def _same_partition(ids, ref):
    # ids may number the distinct rows in any order: equal rows <=> equal ids
    assert ids.shape == ref.shape
    pairs = set(zip(ids.tolist(), ref.tolist()))
    assert len(pairs) == len(set(ids.tolist())) == len(set(ref.tolist()))


@pytest.mark.parametrize("collide", [False, True], ids=["hash", "collision-fallback"])
@pytest.mark.parametrize("shape,seed", [((0, 3), 0), ((1, 4), 1), ((50, 3), 2), ((4000, 5), 3)])
def test_rows_equal_iff_same_id(shape, seed, collide, monkeypatch):
    if collide:  # every row hashes alike: the exactness check must catch it and fall back
        monkeypatch.setattr(_np, "_row_hash", lambda m: np.zeros(m.shape[0], np.int64))
    mat = np.random.default_rng(seed).integers(-1, 3, shape)
    ids = unique_rows_inverse(mat)
    _, ref = np.unique(mat, axis=0, return_inverse=True)
    _same_partition(ids, ref.ravel())
