"""``ppo`` on the tiny task: the environment's invariants on every sampled plan, the reward's
ordering, the logged update batches, the report's Jaccard and plots, the options the issue names
(no GAE pretraining, the Lagrangian reward, chunks), and the policy learning to meet the budget."""
import json

import numpy as np
import pytest
import torch

import fxprune
from fxprune.policies import ppo as ppo_mod
from tests.policies.tiny_task import EXAMPLE, splits, trained

CFG = {"episodes": 32, "batch_episodes": 8, "gae_epochs": 4, "ppo_epochs": 2}


def prune(tmp_path, budget=0.5, **cfg):
    return fxprune.prune(trained(), budget, policy="ppo", data=splits(), example_inputs=EXAMPLE, progress=False,
                         run_dir=tmp_path, policy_config={**CFG, **cfg})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One run, with every executed plan recorded."""
    plans, real = [], ppo_mod._Search.execute

    def execute(self, keep, logits):
        out = real(self, keep, logits)
        plans.append((out, self))
        return out

    ppo_mod._Search.execute = execute
    try:
        r = prune(tmp_path_factory.mktemp("ppo"))
    finally:
        ppo_mod._Search.execute = real
    return r, plans


def test_every_executed_plan_keeps_each_groups_floor_and_multiple(recorded):
    _, plans = recorded
    assert len(plans) >= CFG["episodes"]
    for keep, s in plans:
        for g, cls in zip(s.gids, s.classes):
            k = int(keep[cls].sum())
            assert k >= max(1, s.alloc.floor[g]), f"group {g} kept {k} < floor {s.alloc.floor[g]}"
            m = int(s.ctx.multiples[g])
            assert k == s.ctx.sizes[g] or k % m == 0 or k == s.alloc.floor[g]


def test_feasible_rewards_beat_infeasible_ones_and_only_feasible_plans_are_evaluated(recorded):
    r, _ = recorded
    rows = r.search["history"]
    sampled = [x for x in rows if x["kind"] in ("candidate", "screened")]
    feas = [x["reward"] for x in sampled if x["feasible"]]
    infeas = [x["reward"] for x in sampled if not x["feasible"]]
    assert feas and infeas, "the tiny run should sample both (the keep bias starts at the uniform ratio)"
    assert min(feas) >= max(infeas)
    assert all(x["feasible"] and x["cost_ratio"] <= 0.5 + 1e-9 for x in rows if x["kind"] == "candidate")
    assert all("acc" not in x for x in rows if x["kind"] == "screened")
    assert r.search["evaluations"] == sum(1 for x in rows if x["kind"] in ("baseline", "candidate", "final"))


def test_update_rows_summarise_each_batch(recorded):
    r, _ = recorded
    rows = r.search["history"]
    ups = [x for x in rows if x["kind"] == "update"]
    assert len(ups) == CFG["episodes"] // CFG["batch_episodes"] == r.search["info"]["updates"]
    for u in ups:
        batch = [x for x in rows if x["kind"] in ("candidate", "screened") and x["batch"] == u["update"]]
        assert len(batch) == CFG["batch_episodes"]
        assert u["infeasible_fraction"] == pytest.approx(np.mean([not x["feasible"] for x in batch]))
        accs = [x["acc"] for x in batch if "acc" in x]
        assert u["feasible_acc"] == (pytest.approx(np.mean(accs)) if accs else None)
        assert np.isfinite(u["policy_loss"]) and u["entropy"] > 0


def test_the_chosen_plan_is_the_best_scored_one(recorded):
    r, _ = recorded
    info, rows = r.search["info"], r.search["history"]
    scored = [x for x in rows if x["kind"] in ("candidate", "baseline", "final")]
    assert scored and all(x["score"] == pytest.approx(np.exp(-x["loss"])) for x in scored if "loss" in x)  # likelihood
    best = max(x["score"] for x in scored if x["kind"] != "final" and x.get("feasible"))
    assert info["best_sampled_score"] == pytest.approx(best)
    greedy = [x for x in rows if x["kind"] == "final"]
    if info["chosen"] == "greedy decode":
        assert greedy and greedy[0]["score"] > best
    else:
        assert info["chosen"] == "best sampled plan" and (not greedy or greedy[0]["score"] <= best
                                                          or not greedy[0]["feasible"])
    assert r.report.flops_ratio <= 0.5 + 1e-9


def test_report_shows_jaccard_per_group_and_the_plots(recorded, tmp_path):
    r, _ = recorded
    jac = r.report.jaccard()
    prunable = [g.id for g in r.report.groups if not g.pinned]
    assert set(jac) == set(prunable) and all(0.0 <= v <= 1.0 for v in jac.values())
    out = r.report.save(tmp_path / "rep")
    assert out["jaccard"].stat().st_size > 1000 and out["reward_curve"].stat().st_size > 1000
    md = out["markdown"].read_text()
    assert "Jaccard vs L1" in md and "policy updates" in md
    again = json.loads(out["json"].read_text())
    assert {int(k) for k in again["search"]["info"]["jaccard"]} == set(prunable)


@pytest.mark.parametrize("cfg", [{"gae_epochs": 0}, {"reward": "lagrangian"}, {"chunks": 2}, {"granularity": "channel"},
                                 {"baseline": "best", "final_decode": False}, {"keep_init": "global"},
                                 {"keep_init": "uniform", "chunks": 2}, {"group_shift": True},
                                 {"keep_init": "global", "group_shift": True, "chunks": 2}, {"select": "ranked"},
                                 {"fill": True}, {"keep_init": "global", "select": "ranked", "fill": True, "chunks": 2},
                                 {"group_noise": 0.2, "group_shift": True, "keep_init": "global", "chunks": 2},
                                 {"rank_sharpness_final": 3.0, "keep_init": "global", "anneal_episodes": 16}])
def test_options_run_and_meet_the_budget(cfg, tmp_path):
    r = prune(tmp_path, **cfg)
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.search["info"]["config"][next(iter(cfg))]["source"] == "user"
    if "gae_epochs" in cfg:
        assert next(x for x in r.search["history"] if x["kind"] == "baseline")["gae_loss"] is None


def test_group_noise_without_the_group_shift_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="group_noise.*group_shift=True"):
        prune(tmp_path, group_noise=0.1)


@pytest.mark.parametrize("cfg", [{"group_noise": 0.2, "group_shift": True, "keep_init": "global", "chunks": 2},
                                 {"group_noise": 0.2, "group_shift": True}, {"chunks": 2},
                                 {"group_noise": 0.2, "group_shift": True, "keep_init": "global",
                                  "rank_sharpness_final": 3.0, "anneal_episodes": 8}])
def test_the_update_recomputes_the_log_probabilities_it_sampled_with(cfg, tmp_path, monkeypatch):
    """Before the first gradient step of an update, the policy gives every stored row the
    log-probability it was sampled with (the PPO ratio starts at 1), group shifts included."""
    real, checked = ppo_mod._Search.update, []

    def update(self, buf):
        with torch.no_grad():
            for i in range(len(buf)):
                t, shift = buf.steps[i], buf.shifts[i]
                logits, _, mu = self.policy(buf.plans[i].astype(np.float64), t, shift)
                logp = ppo_mod.bernoulli_logprob(logits, buf.masks[i])
                if shift is not None:
                    logp = logp + self.shift_logprob(mu, shift, t)
                assert float(logp) == pytest.approx(buf.logps[i], rel=1e-5, abs=1e-4)
                checked.append(shift is not None)
        return real(self, buf)

    monkeypatch.setattr(ppo_mod._Search, "update", update)
    prune(tmp_path, episodes=16, **cfg)
    assert len(checked) >= 16 * cfg.get("chunks", 1)
    assert all(checked) == bool(cfg.get("group_noise"))


def test_group_noise_explores_the_kept_counts_by_larger_steps(tmp_path, monkeypatch):
    """With the same rank prior, the sampled group shifts spread each group's kept count across
    the samples far more than the channel bits alone."""
    counts, real = [], ppo_mod._Search.execute

    def execute(self, keep, logits):
        out = real(self, keep, logits)
        counts[-1].append([int(out[c].sum()) for c in self.classes])
        return out

    monkeypatch.setattr(ppo_mod._Search, "execute", execute)
    spread = {}
    for noise in (0.0, 0.25):
        counts.append([])
        extra = {"group_noise": noise} if noise else {}
        prune(tmp_path / str(noise), episodes=16, keep_init="global", group_shift=True, select="ranked",
              lr=1e-12, **extra)
        spread[noise] = float(np.mean(np.std(np.array(counts[-1][:16]), axis=0)))
    assert spread[0.25] > 2 * spread[0.0], spread


def test_too_many_chunks_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="chunks"):
        prune(tmp_path, chunks=50)


def test_the_policy_learns_to_meet_a_tight_budget(tmp_path):
    """At 30% FLOPs most first samples break the budget; the constraint phase of the reward must
    drive the infeasible fraction down."""
    r = prune(tmp_path, budget=0.3, episodes=160, batch_episodes=16, ppo_epochs=4, gae_epochs=4)
    ups = [x["infeasible_fraction"] for x in r.search["history"] if x["kind"] == "update"]
    assert np.mean(ups[:2]) >= 0.4, ups
    assert np.mean(ups[-3:]) <= 0.5 * np.mean(ups[:2]), ups


@pytest.mark.parametrize("init,shift", [("uniform", False), ("global", False), ("global", True)])
def test_the_rank_prior_starts_the_greedy_decode_at_the_baselines_plan(init, shift, tmp_path, monkeypatch):
    """keep_init='uniform'/'global': before learning (a vanishing learning rate), the greedy decode
    is that baseline's plan, and the samples scatter around it."""
    from fxprune.policies.global_rank import GlobalRank
    from fxprune.policies.uniform import Uniform

    seen, real = [], ppo_mod._Search.greedy

    def greedy(self):
        out = real(self)
        seen.append((out, self))
        return out

    monkeypatch.setattr(ppo_mod._Search, "greedy", greedy)
    r = prune(tmp_path, keep_init=init, lr=1e-12, episodes=16, group_shift=shift)
    keep, s = seen[-1]
    ref = s.ctx.keep_vector(np.asarray({"uniform": Uniform, "global": GlobalRank}[init]().run(s.ctx)))
    np.testing.assert_array_equal(keep, ref)
    sampled = [x for x in r.search["history"] if x["kind"] in ("candidate", "screened")]
    assert len({round(x["cost_ratio"], 6) for x in sampled}) > 1, "the samples should differ from each other"
    assert r.search["info"]["config"]["keep_init"]["value"] == init


def test_max_evals_keeps_one_evaluation_for_the_greedy_decode(tmp_path):
    r = fxprune.prune(trained(), 0.5, policy="ppo", data=splits(), example_inputs=EXAMPLE, progress=False,
                      run_dir=tmp_path, policy_config={**CFG, "episodes": 200}, max_evals=9)
    rows = r.search["history"]
    assert r.search["evaluations"] == 9 and r.search["info"]["episodes"] < 200
    assert [x["kind"] for x in rows if x["kind"] in ("baseline", "candidate", "final")][-1] == "final"


def _group_ratio_score(self, plan):
    """A synthetic reward: how close each group's keep ratio is to a target that keeps early
    groups wide and late groups narrow (no network is run)."""
    from fxprune.search.evaluate import Metrics

    kv = self.keep_vector(plan)
    g = self.graph
    n = np.bincount(g.group_of_class, minlength=len(g.groups)).astype(float)
    r = np.bincount(g.group_of_class, weights=kv, minlength=len(g.groups)) / np.maximum(n, 1)
    t = np.linspace(0.9, 0.2, r.size)
    score = 1.0 - float(np.mean((r[n > 1] - t[n > 1]) ** 2))
    fr = float(g.cost.flops(kv)) / g.cost.full_flops
    self.calls += 1
    return Metrics(score, 0.0, 0.0, 0.0, fr, 1.0, fr <= 0.5 + 1e-9, 0.0, 0, "masked", score)


def test_the_group_shift_learns_a_per_group_preference_faster(tmp_path, monkeypatch):
    """With a reward that depends only on each group's keep ratio, the per-group shift of the keep
    boundary (``group_shift``) raises the feasible reward within ten updates, clearly faster than
    the per-channel logits alone (seeded: both runs are deterministic)."""
    from fxprune.search.evaluate import Evaluator

    monkeypatch.setattr(Evaluator, "evaluate", _group_ratio_score)
    gains = {}
    for shift in (True, False):
        r = prune(tmp_path / str(shift), episodes=160, batch_episodes=16, ppo_epochs=4, keep_init="global",
                  group_shift=shift)
        acc = [b["feasible_acc"] for b in r.search["info"]["batches"]]
        assert len(acc) == 10 and None not in acc
        gains[shift] = np.mean(acc[-3:]) - np.mean(acc[:3])
    assert gains[True] >= 0.015, gains
    assert gains[True] > 2 * gains[False], gains


def test_fill_makes_every_feasible_plan_spend_its_budget(tmp_path, monkeypatch):
    """``fill``: in every executed plan within the budget, no group can take back another block of
    its channel multiple; and ``select="ranked"`` keeps the highest-logit channels of every group."""
    seen, real = [], ppo_mod._Search.execute

    def execute(self, keep, logits):
        out = real(self, keep, logits)
        seen.append((out, logits, self))
        return out

    monkeypatch.setattr(ppo_mod._Search, "execute", execute)
    prune(tmp_path, fill=True, select="ranked", episodes=16)
    feasible = 0
    for keep, logits, s in seen:
        if s.cost_ratio(keep) > s.budget:
            continue
        feasible += 1
        for g, cls in zip(s.gids, s.classes):
            off = cls[keep[cls] < 0.5]
            if off.size:  # the group's next block of its channel multiple no longer fits
                trial = keep.copy()
                trial[off[np.argsort(-logits[off], kind="stable")[:s.ctx.multiples[g]]]] = 1.0
                assert s.cost_ratio(trial) > s.budget, f"group {g} could take another block"
            on, dropped = logits[cls][keep[cls] > 0.5], logits[cls][keep[cls] < 0.5]
            assert not dropped.size or on.min() >= dropped.max(), f"group {g} kept a lower-logit channel"
    assert feasible >= 8


def test_prefer_decode_returns_the_greedy_decode_even_where_a_sample_scored_higher(tmp_path):
    default = prune(tmp_path / "a", keep_init="global")
    r = prune(tmp_path / "b", keep_init="global", prefer_decode=True)  # the same search; only the choice differs
    final = [x for x in r.search["history"] if x["kind"] == "final"]
    assert len(final) == 1 and final[0]["feasible"]
    best = r.search["info"]["best_sampled_score"]
    assert best == pytest.approx(default.search["info"]["best_sampled_score"])
    assert final[0]["score"] < best, "the tiny task's best sample outscores the decode (the case this option is for)"
    assert default.search["info"]["chosen"] == "best sampled plan"
    assert r.search["info"]["chosen"] == "greedy decode"
    assert r.report.flops_ratio == pytest.approx(final[0]["flops_ratio"])
    assert r.plan.to_dict() != default.plan.to_dict()


def test_prefer_decode_without_the_final_decode_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="prefer_decode=True.*final_decode=True"):
        prune(tmp_path, prefer_decode=True, final_decode=False)


def test_prior_center_mean_without_a_rank_prior_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="prior_center='mean'.*keep_init"):
        prune(tmp_path, prior_center="mean")


def test_prior_center_mean_centres_the_samples_kept_counts_on_the_reference(tmp_path, monkeypatch):
    """Under a flat rank prior (slope 3) and no learning, the boundary prior's samples keep fewer
    channels per group than global's plan; the centred prior's samples keep as many on average."""
    from fxprune.policies.global_rank import GlobalRank

    sampled, real = [], ppo_mod._Search.execute

    def execute(self, keep, logits):
        sampled[-1].append((keep.copy(), self))
        return real(self, keep, logits)

    monkeypatch.setattr(ppo_mod._Search, "execute", execute)
    gap = {}
    for centre in ("boundary", "mean"):
        sampled.append([])
        prune(tmp_path / centre, keep_init="global", rank_sharpness=3.0, prior_center=centre, lr=1e-12,
              episodes=64, batch_episodes=64, gae_epochs=0)
        s = sampled[-1][0][1]
        ref = np.asarray(GlobalRank().run(s.ctx))[s.gids]
        counts = np.array([[k[c].sum() for c in s.classes] for k, _ in sampled[-1]])
        gap[centre] = counts.mean(0) - ref
    assert gap["boundary"].sum() < -0.1 * len(gap["boundary"]), gap  # undershoots
    assert abs(gap["mean"].sum()) < 0.25 * abs(gap["boundary"].sum()), gap


def test_rank_sharpness_final_without_a_rank_prior_is_a_clear_error(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="rank_sharpness_final=3.0.*keep_init"):
        prune(tmp_path, rank_sharpness_final=3.0)


def test_the_slope_schedule_anneals_the_slope_of_each_batch(tmp_path):
    """With learning off (lr ~ 0) the slope each batch samples with is the schedule's: geometric
    from rank_sharpness to rank_sharpness_final over anneal_episodes, then constant; without a
    schedule it stays at rank_sharpness."""
    def slopes(**cfg):
        r = prune(tmp_path / str(len(cfg)), keep_init="global", lr=1e-12, episodes=40, batch_episodes=8,
                  gae_epochs=0, **cfg)
        return [u["slope"] for u in r.search["info"]["batches"]]

    annealed = slopes(rank_sharpness=10.0, rank_sharpness_final=2.5, anneal_episodes=16)
    assert annealed == pytest.approx([10.0, 5.0, 2.5, 2.5, 2.5], rel=1e-4)
    assert slopes(rank_sharpness=10.0) == pytest.approx([10.0] * 5, rel=1e-4)
