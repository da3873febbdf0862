"""``sac`` on the tiny task: trains a randomly initialised network and prunes it in one call (a
DataLoader as users pass it), every scored plan meets the budget by construction, the alignment
loss shrinks the channels the best policy removes, the scopes, and the epoch log."""
import numpy as np
import pytest
import torch

import fxprune
from fxprune.models import CifarResNet
from fxprune.policies.sac import acted_groups
from tests.policies.tiny_task import EXAMPLE, TinyCNN, make, splits

CFG = {"epochs": 6, "finetune_epochs": 1, "episodes_per_epoch": 3, "hidden": 32, "emb_dim": 8, "z_dim": 8,
       "batch": 32, "updates_per_epoch": 5, "train": {"lr": 0.05}}


def accuracy(model, n=512):
    x, y = make(n, 9)
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def scratch():
    torch.manual_seed(3)
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def from_scratch(tmp_path_factory):
    x, y = make(1024, 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=False)
    model = scratch()
    r = fxprune.prune(model, 0.5, policy="sac", data=loader, example_inputs=EXAMPLE, progress=False, n_reward=256,
                      run_dir=tmp_path_factory.mktemp("sac"), policy_config={**CFG, "scope": "all"})
    return model, r


def test_trains_and_prunes_a_random_network_in_one_call(from_scratch):
    model, r = from_scratch
    before = accuracy(model)
    after = accuracy(r.model)
    assert before < 0.3 and after > before + 0.25, (before, after)  # 8 classes: chance is 0.125
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.search["info"]["epochs"] == CFG["epochs"] and r.search["info"]["finetune_loss"] is not None


def test_every_scored_plan_meets_the_budget_by_construction(from_scratch):
    _, r = from_scratch
    cand = [row for row in r.search["history"] if row["kind"] == "candidate"]
    assert cand and all(row["feasible"] and row["flops_ratio"] <= 0.5 + 1e-9 for row in cand)
    assert all(0.0 <= a <= 1.0 for row in cand for a in row["actions"])
    assert r.search["info"]["repaired"] == 0


def test_the_epoch_log_follows_the_schedule(from_scratch):
    _, r = from_scratch
    epochs = [row for row in r.search["history"] if row["kind"] == "epoch"]
    sched = r.search["info"]["schedule"]
    assert [row["epoch"] for row in epochs] == list(range(1, CFG["epochs"] + 1))
    for row in epochs:
        e = row["epoch"]
        n = sum(1 for c in r.search["history"] if c["kind"] == "candidate" and c["epoch"] == e)
        assert n == (CFG["episodes_per_epoch"] if sched["warm"] < e <= sched["agent_end"] else 0)
        assert ("critic_loss" in row) == (sched["fill"] < e <= sched["agent_end"])
    losses = [row["loss"] for row in epochs]
    assert losses[-1] < losses[0]


def test_alignment_shrinks_the_channels_the_best_policy_removes(tmp_path):
    # the norms of the removed channels of the trained (not yet cut) weights, relative to the kept ones
    ratios = {}
    for beta in (0.0, 1.0):  # a strong pull: the tiny run has few steps
        r = fxprune.prune(scratch(), 0.5, policy="sac", data=splits(1024), example_inputs=EXAMPLE, progress=False,
                          run_dir=tmp_path / str(beta), policy_config={**CFG, "scope": "all", "beta_align": beta,
                                                                       "finetune_epochs": 0, "epochs": 8,
                                                                       "align_target": "frozen_plan"})
        ratios[beta] = r.search["info"]["removed_norm_ratio"]
    assert ratios[0.0] > 0.5 and ratios[1.0] < 0.1 * ratios[0.0], ratios


def test_align_fade_leaves_the_removed_channels_at_zero_before_surgery(tmp_path):
    """With the fade (and no loss) the channels the final plan removes compute exactly zero in the
    trained weights: cutting them changes no reward-split metric. Without it the cut costs loss.
    The epoch log records the removed/kept norm ratio of every aligned epoch."""
    out = {}
    for fade in (False, True):
        r = fxprune.prune(scratch(), 0.5, policy="sac", data=splits(1024), example_inputs=EXAMPLE, progress=False,
                          run_dir=tmp_path / str(fade), policy_config={**CFG, "scope": "all", "beta_align": 0.0,
                                                                       "finetune_epochs": 0, "epochs": 8,
                                                                       "align_target": "frozen_plan",
                                                                       "align_fade": fade})
        rows = [row for row in r.search["history"] if row["kind"] == "epoch" and row["aligned"]]
        info = r.search["info"]
        out[fade] = (info["reward_before_cut"], info["reward_after_cut"], [row["removed_norm_ratio"] for row in rows])
    (b0, a0, _), (b1, a1, ratios) = out[False], out[True]
    assert a0["loss"] > b0["loss"] * 1.01, out  # without the fade the cut removes signal
    assert a1 == pytest.approx(b1, rel=1e-6, abs=1e-9), out  # with it, none is left to remove
    assert len(ratios) >= 3 and ratios[-1] < 0.5 * ratios[0], ratios  # the removed channels' norms shrank


FADE_END = {**CFG, "scope": "all", "beta_align": 0.0, "finetune_epochs": 0, "epochs": 8, "align_fade": True,
            "fade_end_frac": 0.75}


def _fade_end_run(folder, stop_at=None, monkeypatch=None):
    """A run whose fade ends after epoch 6 of 8; ``stop_at``: interrupted as that epoch starts."""
    if stop_at is not None:
        from fxprune.search import trainer as trainer_mod

        real = trainer_mod.Trainer.train_epoch

        def dying(self, **kw):
            if kw["epoch"] == stop_at:
                raise KeyboardInterrupt
            return real(self, **kw)

        monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", dying)
    return fxprune.prune(scratch(), 0.5, policy="sac", data=splits(1024), example_inputs=EXAMPLE, progress=False,
                         run_dir=folder, policy_config=FADE_END)


def test_after_an_early_fade_end_the_pruned_subnetwork_trains(tmp_path, monkeypatch):
    """fade_end_frac=0.75 of 8 epochs: the fade reaches zero after epoch 6; epochs 7-8 train with
    that plan frozen and its removed channels held at exactly zero, so the cut is lossless. A run
    stopped after epoch 7 (the frozen plan in its checkpoint) resumes to the same plan and weights."""
    r = _fade_end_run(tmp_path / "full")
    info = r.search["info"]
    assert info["schedule"]["fade_end"] == 6 and info["chosen"] == "the plan the fade ended on (epoch 6)"
    rows = {row["epoch"]: row for row in r.search["history"] if row["kind"] == "epoch"}
    assert all(rows[e]["aligned"] for e in (5, 6, 7, 8))
    assert rows[7]["kept"] == rows[6]["kept"] == rows[8]["kept"]
    assert rows[8]["loss"] < rows[6]["loss"]  # the sub-network goes on learning
    assert info["reward_after_cut"] == pytest.approx(info["reward_before_cut"], rel=1e-6, abs=1e-9)
    with pytest.raises(KeyboardInterrupt):
        _fade_end_run(tmp_path / "cut", stop_at=8, monkeypatch=monkeypatch)
    monkeypatch.undo()
    resumed = _fade_end_run(tmp_path / "cut")
    assert resumed.plan.keep == r.plan.keep
    with torch.no_grad():
        assert torch.equal(resumed.model(EXAMPLE + 1), r.model(EXAMPLE + 1))


@pytest.mark.parametrize("cfg, match", [({"fade_end_frac": 0.8}, "fade_end_frac=0.8.*align_fade is off"),
                                        ({"fade_end_frac": 0.3, "align_fade": True},
                                         "fade_end_frac=0.3 is before the agent phase ends")])
def test_a_fade_end_that_cannot_apply_is_refused(cfg, match, tmp_path):
    model = scratch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.prune(model, 0.5, policy="sac", data=splits(), example_inputs=EXAMPLE, progress=False,
                      run_dir=tmp_path, policy_config={**CFG, **cfg})
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_after_the_agent_phase_the_target_keeps_its_counts(from_scratch):
    """Past the agent phase the frozen best snapshot is re-run with the last agent epoch's code, so
    the plan the weights align to keeps the same per-group counts every epoch."""
    _, r = from_scratch
    end = r.search["info"]["schedule"]["agent_end"]
    late = [row["kept"] for row in r.search["history"] if row["kind"] == "epoch" and row["epoch"] > end]
    assert len(late) >= 2 and all(k == late[0] for k in late), late


@pytest.mark.parametrize("mode", ["last", "current"])
def test_the_code_past_the_agent_phase(mode):
    s, _ = _resnet20_search(scope="all", z_dim=8, emb_dim=4, z_after_agent=mode)
    end = s.sched.agent_end
    assert 1 < end < s.cfg.epochs
    assert not torch.equal(s.z_of(end - 1), s.z_of(end))  # it moves within the agent phase
    assert torch.equal(s.z_of(end + 1), s.z_of(end)) == (mode == "last")


def test_block_interior_scope_is_the_papers_on_resnet20():
    g = fxprune.analyze(CifarResNet(20).eval(), (1, 3, 32, 32))
    pr = np.zeros(len(g.groups), bool)
    pr[[x.id for x in g.prunable_groups]] = True
    interior = acted_groups(g, pr, "block_interior")
    assert len(interior) == 9  # one per basic block: conv1's outputs and conv2's inputs
    for gid in interior:
        mods = g.groups[gid].modules()
        assert any(m.endswith("conv1") for m in mods) and any(m.endswith("conv2") for m in mods)
    assert len(acted_groups(g, pr, "all")) > 9


def test_budgets_it_cannot_bound_are_refused(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="sac.*channels budget"):
        fxprune.prune(scratch(), fxprune.Budget(channels=0.5), policy="sac", data=splits(), example_inputs=EXAMPLE,
                      progress=False, run_dir=tmp_path, policy_config=CFG)


def test_reward_curve_shows_the_epochs(from_scratch):
    import struct
    from pathlib import Path

    _, r = from_scratch
    png = Path(r.search["run_dir"]) / "reward_curve.png"
    w, h = struct.unpack(">II", png.read_bytes()[16:24])
    assert h > 900  # the candidate panel plus the per-epoch reward/decoder and kept-fraction panels
    epochs = [row for row in r.search["history"] if row["kind"] == "epoch" and row.get("kept")]
    assert epochs and all(len(row["kept"]) == len(r.search["info"]["acted_groups"]) for row in epochs)


def test_the_ablation_without_the_environment_code(tmp_path):
    r = fxprune.prune(scratch(), 0.5, policy="sac", data=splits(), example_inputs=EXAMPLE, progress=False,
                      run_dir=tmp_path, policy_config={**CFG, "scope": "all", "env_code": False})
    rows = [row for row in r.search["history"] if row["kind"] == "epoch" and "decoder_mse" in row]
    assert rows and all(row["decoder_mse"] == 0.0 for row in rows)
    assert r.report.flops_ratio <= 0.5 + 1e-9


@pytest.mark.parametrize("scope", ["block_interior", "all"])
def test_rollouts_land_just_under_the_budget(scope):
    """policies.md §4.3: after the clipped action of every step, a rollout's FLOPs lie in
    [F_des (1 - tol), F_des], whatever the actor does (here: untrained, stochastic)."""
    from fxprune.policies.base import make_context
    from fxprune.policies.sac import _Search
    from fxprune.policies.sac_config import SACConfig
    from fxprune.search import DataSplits

    g = fxprune.analyze(CifarResNet(20).eval(), (1, 3, 32, 32))
    x, y = torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)
    ctx = make_context(g, fxprune.Budget(flops=0.5), round_to=1, data=DataSplits(train=[(x, y)], reward=[(x, y)]),
                       config=SACConfig(scope=scope, epochs=4))
    s = _Search(ctx, ctx.config)
    imp = ctx.importance
    for _ in range(20):
        _, counts = s.rollout(None, torch.randn(ctx.config.z_dim), deterministic=False)
        ratio = ctx.alloc.ratio(counts)
        assert 0.5 * (1 - 0.03) <= ratio <= 0.5 + 1e-9, ratio
        assert ctx.alloc.keep_ratio(s.plan(counts, imp)) <= 0.5 + 1e-9


@pytest.mark.parametrize("augment", [True, False])
def test_an_array_dataset_trains_with_the_recipes_batch_and_augmentation(augment, tmp_path, monkeypatch):
    from fxprune.data import ArrayDataset, ArrayLoader
    from fxprune.search import trainer as trainer_mod

    seen = []
    real = trainer_mod.Trainer.train_epoch

    def spy(self, **kw):
        seen.append(self.data)
        return real(self, **kw)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", spy)
    rng = np.random.default_rng(0)
    ds = ArrayDataset(rng.integers(0, 256, (400, 16, 16, 3), dtype=np.uint8), np.arange(400) % 8)
    fxprune.prune(scratch(), 0.5, policy="sac", data=ds, example_inputs=EXAMPLE, progress=False, n_reward=100,
                  run_dir=tmp_path, policy_config={**CFG, "epochs": 2, "scope": "all", "augment": augment,
                                                   "train_batch": 48, "bn_recalib": 0})
    assert seen and all(isinstance(d, ArrayLoader) for d in seen)
    assert {(d.batch_size, d.augment, d.shuffle) for d in seen} == {(48, augment, True)}
    assert len(seen[0].ds) == 300  # the reward split stays out of training


def _resnet20_search(**cfg):
    from fxprune.policies.base import make_context
    from fxprune.policies.sac import _Search
    from fxprune.policies.sac_config import SACConfig
    from fxprune.search import DataSplits

    g = fxprune.analyze(CifarResNet(20).eval(), (1, 3, 32, 32))
    x, y = torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)
    ctx = make_context(g, fxprune.Budget(flops=0.5), round_to=1, data=DataSplits(train=[(x, y)], reward=[(x, y)]),
                       config=SACConfig(epochs=4, **cfg))
    return _Search(ctx, ctx.config), ctx


def test_action_init_uniform_spreads_the_budget_over_every_group():
    """On ResNet-20 over every group, the untrained actor's deterministic rollout spends the 50%
    FLOPs budget on the first groups and the upper bound zeroes the last ones (action_init
    'paper'); started at the uniform rate, every group is pruned at about that rate and the
    rollout still lands in [F_des (1 - tol), F_des]."""
    z = torch.zeros(8)
    paper, _ = _resnet20_search(scope="all", z_dim=8)
    acts = np.array([a for _, a in paper.rollout(None, z, deterministic=True)[0]])
    assert (acts[-3:] == 0).all() and acts[:3].min() > 0.3, acts
    s, ctx = _resnet20_search(scope="all", z_dim=8, action_init="uniform")
    r = s.uniform_rate()
    assert 0.05 < r < 0.5
    traj, counts = s.rollout(None, z, deterministic=True)
    acts = np.array([a for _, a in traj])
    # every group at the rate but the last, which the upper bound trims so as not to undershoot
    assert np.abs(acts[:-1] - r).max() < 0.05 and acts[-1] > 0, (acts, r)
    assert 0.5 * (1 - 0.03) <= ctx.alloc.ratio(counts) <= 0.5 + 1e-9


def test_uniform_rate_is_the_smallest_rate_that_meets_the_budget():
    s, ctx = _resnet20_search(scope="all", z_dim=8, action_init="uniform")
    r = s.uniform_rate()

    def ratio(rate):
        c = ctx.alloc.sizes.copy()
        for g in s.groups:
            c[g] = max(int(ctx.alloc.floor[g]), int(c[g]) - int(np.floor(rate * c[g] + 1e-9)))
        return ctx.alloc.ratio(c)

    assert ratio(r) <= 0.5 + 1e-9 < ratio(r - 0.01)
