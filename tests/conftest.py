import os
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_data():
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not present (developer-only data)")
    return SHARED / "data"


def assert_dead_equivalent(check, tol=1e-4):
    """The pruned model equals the dead-channel model and is as small as the cost model says."""
    assert check.groups_pruned > 0, "nothing was pruned"
    assert check.rel_err < tol, f"pruned output differs: rel err {check.rel_err:.2e}"
    assert check.params_actual == pytest.approx(check.params_predicted, rel=0, abs=0.5)
    assert check.params_actual < check.params_full
    assert check.flops_actual == pytest.approx(check.flops_predicted, rel=1e-9)
    assert check.flops_actual < check.flops_full
