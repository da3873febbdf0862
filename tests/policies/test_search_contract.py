"""The contract every search policy keeps, on the tiny task, in seconds: feasible plans, seeded
runs that repeat bit for bit, max_evals honoured, kill -> resume gives the same plan (also after
a real SIGKILL of the process), the user's model untouched, a corrupted run folder reported."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fxprune
from fxprune.policies.base import _POLICIES
from tests.conftest import assert_untouched, snapshot
from tests.policies.tiny_task import EXAMPLE, splits, trained

ROOT = Path(__file__).resolve().parents[2]
# every registered search policy, with options that keep it to seconds on the tiny task
# mcq distils (kd) here: a search that trains is the harder resume
FAST = {"mcq": {"samples": 4, "rounds": 1, "step_ratio": 0.15, "kd": True, "kd_max_steps": 2},
        "random": {"evaluations": 12, "batch": 4},
        "ppo": {"episodes": 24, "batch_episodes": 8, "gae_epochs": 4, "ppo_epochs": 2},
        "sac": {"epochs": 6, "finetune_epochs": 1, "episodes_per_epoch": 3, "hidden": 32, "emb_dim": 8, "z_dim": 8,
                "batch": 32, "updates_per_epoch": 5, "scope": "all"}}
SEARCH = sorted({cls.name for cls in _POLICIES.values() if getattr(cls, "needs_data", False)})


def test_every_search_policy_has_fast_options():
    assert SEARCH and set(SEARCH) <= set(FAST), SEARCH


def run(policy, folder, **kw):
    return fxprune.prune(kw.pop("model", None) or trained(), kw.pop("budget", 0.5), policy=policy, data=splits(),
                         example_inputs=EXAMPLE, run_dir=folder, policy_config=FAST[policy], progress=False,
                         round_to=kw.pop("round_to", "auto"), **kw)


@pytest.mark.parametrize("policy", SEARCH)
def test_plan_is_feasible_and_the_user_model_untouched(policy, tmp_path):
    model = trained()
    snap = snapshot(model)
    r = run(policy, tmp_path / "a", model=model)
    assert_untouched(model, snap)
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.model(EXAMPLE).shape == (1, 8)
    rows = r.search["history"]
    assert rows and all(row["bn_recalib"] == 8 for row in rows if "bn_recalib" in row)  # the default, logged


@pytest.mark.parametrize("policy", SEARCH)
def test_seeded_runs_repeat_bit_for_bit(policy, tmp_path):
    a, b = run(policy, tmp_path / "a"), run(policy, tmp_path / "b")
    c = run(policy, tmp_path / "c", seed=5)
    assert a.plan.keep == b.plan.keep
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a.search["history"]) == strip(b.search["history"])
    assert [r.get("reward") for r in a.search["history"]] != [r.get("reward") for r in c.search["history"]]
    with torch.no_grad():
        assert torch.equal(a.model(EXAMPLE + 1), b.model(EXAMPLE + 1))


@pytest.mark.parametrize("policy", SEARCH)
def test_max_evals_is_honoured(policy, tmp_path):
    r = run(policy, tmp_path / "a", max_evals=7)
    assert r.search["evaluations"] == 7
    assert r.report.flops_ratio <= 0.5 + 1e-9  # repaired to the budget


_CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
import fxprune
from fxprune.search import Evaluator
from tests.policies.test_search_contract import run
real, n = Evaluator.evaluate, {{"n": 0}}
def dying(self, plan):
    n["n"] += 1
    if n["n"] == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, plan)
Evaluator.evaluate = dying
run({policy!r}, {folder!r})
"""


@pytest.mark.parametrize("policy", SEARCH)
def test_sigkill_then_resume_gives_the_same_plan(policy, tmp_path):
    full = run(policy, tmp_path / "full")
    kill_at = max(2, full.search["evaluations"] - 3)
    folder = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), kill_at=kill_at, policy=policy,
                                                                folder=str(folder))],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    ckpt = json.loads((folder / "checkpoint.json").read_text())
    assert 0 < ckpt["n_rows"]
    resumed = run(policy, folder)
    assert resumed.plan.keep == full.plan.keep
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed.search["history"]) == strip(full.search["history"])
    with torch.no_grad():
        assert torch.equal(resumed.model(EXAMPLE + 1), full.model(EXAMPLE + 1))


@pytest.mark.parametrize("policy", SEARCH)
@pytest.mark.parametrize("damage", ["checkpoint.json", "evals.jsonl", "tensors", "run.json"])
def test_a_corrupted_run_folder_is_named_or_restarted_cleanly(policy, damage, tmp_path):
    folder = tmp_path / "run"
    full = run(policy, tmp_path / "full")
    real = fxprune.search.Evaluator.evaluate
    calls = {"n": 0}

    def stop(self, plan):
        calls["n"] += 1
        if calls["n"] == max(2, full.search["evaluations"] - 3):
            raise KeyboardInterrupt
        return real(self, plan)

    fxprune.search.Evaluator.evaluate = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run(policy, folder)
    finally:
        fxprune.search.Evaluator.evaluate = real
    if damage == "tensors":
        for p in folder.glob("checkpoint-*.safetensors"):
            p.write_bytes(p.read_bytes()[:40])
    elif damage == "evals.jsonl":
        (folder / damage).write_text("{not json\n" + (folder / damage).read_text())
    else:
        (folder / damage).write_text((folder / damage).read_text()[:-7])
    with pytest.raises(fxprune.FxpruneError, match=f"{damage if damage != 'tensors' else 'checkpoint'}.*resume=False"
                       if damage != "run.json" else "run.json.*resume=False"):
        run(policy, folder)
    again = run(policy, folder, resume=False)  # the clean restart gives the uninterrupted result
    assert again.plan.keep == full.plan.keep
