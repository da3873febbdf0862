"""The `mcq` policy on a tiny learnable task: feasible plans that beat `uniform`, reproducible,
resumable after a kill, honouring max_evals, with its log, curve and report."""
import json

import numpy as np
import pytest
import torch

import fxprune
from fxprune.search import Evaluator
from tests.policies.tiny_task import EXAMPLE, splits, trained

# RL-Pruner's own set-up (its starting distribution, distillation between steps), on a small scale;
# tests of fxprune's defaults (init "global", no distillation) say so
FAST = {"samples": 6, "rounds": 2, "step_ratio": 0.1, "init": "size", "kd": True, "reward_score": "accuracy"}


def run(tmp_path, name="run", **kw):
    """mcq on the tiny task; channel counts unrounded (``round_to=1``) so that the search's own
    arithmetic is what the assertions see (rounding is tested on its own)."""
    cfg = {**FAST, **kw.pop("policy_config", {})}
    kw.setdefault("round_to", 1)
    return fxprune.prune(trained(), kw.pop("budget", 0.5), policy="mcq", data=kw.pop("data", None) or splits(),
                         example_inputs=EXAMPLE, run_dir=tmp_path / name, policy_config=cfg, progress=False, **kw)


def reward(plan, alpha=0.25):
    g = fxprune.analyze(trained(), EXAMPLE)
    m = Evaluator(g, splits().reward)(plan)
    return m.acc + alpha * (1 - m.flops_ratio), m


def test_mcq_plan_is_feasible_and_beats_uniform(tmp_path):
    r = run(tmp_path, policy_config={"kd": False, "bn_recalib": 0})  # the plain Evaluator below: no recalibration
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.report.flops_ratio > 0.45  # the last step's quota lands near the budget
    uni = fxprune.prune(trained(), 0.5, policy="uniform", example_inputs=EXAMPLE, round_to=1)
    q_mcq, m_mcq = reward(r.plan)
    q_uni, m_uni = reward(uni.plan)
    assert q_mcq > q_uni + 0.02, (m_mcq, m_uni)
    # the same reward as the search logged for the committed candidate (masked == logged)
    steps = r.search["info"]["steps"]
    assert steps and r.search["info"]["repaired"] == 0
    assert steps[-1]["reward"] == pytest.approx(q_mcq, abs=1e-9)
    p = np.array(r.search["info"]["p"])
    assert p.sum() == pytest.approx(1.0) and p.min() >= 1e-5 - 1e-15


def test_mcq_with_distillation_returns_the_trained_model(tmp_path):
    model = trained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = splits()
    r = fxprune.prune(model, 0.5, policy="mcq", data=data, example_inputs=EXAMPLE, run_dir=tmp_path / "kd",
                      policy_config={**FAST, "kd_max_steps": 4}, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "user model modified"
    assert r.search["info"]["trained"]
    # the pruned model carries the distilled weights: it differs from the plan on the original weights
    plain = fxprune.apply_plan(trained(), r.plan, EXAMPLE).model
    x = data.reward[0][0][:64]
    with torch.no_grad():
        assert not torch.allclose(r.model(x), plain(x), atol=1e-4)
    # and it scores what the search measured for its last committed, distilled plan
    acc = float((r.model(data.reward[0][0]).argmax(1) == data.reward[0][1]).float().mean())
    assert acc == pytest.approx(r.search["info"]["steps"][-1]["acc_after_kd"], abs=1e-9)


def test_mcq_is_reproducible_and_seed_dependent(tmp_path):
    a = run(tmp_path, "a", policy_config={"kd": False})
    b = run(tmp_path, "b", policy_config={"kd": False})
    c = run(tmp_path, "c", policy_config={"kd": False}, seed=3)
    assert a.plan.keep == b.plan.keep
    ra = [row["reward"] for row in a.search["history"]]
    assert ra == [row["reward"] for row in b.search["history"]]  # bitwise, row by row
    assert ra != [row["reward"] for row in c.search["history"]]


def test_log_curve_and_report(tmp_path):
    r = run(tmp_path, policy_config={"kd": False})
    folder = tmp_path / "run"
    rows = [json.loads(line) for line in (folder / "evals.jsonl").read_text().splitlines()]
    assert len(rows) == len(r.search["history"])
    assert [row["eval"] for row in rows] == list(range(len(rows)))
    commits = [row for row in rows if row["kind"] == "commit"]
    assert len(rows) - len(commits) == r.search["evaluations"]
    assert len(commits) == len(r.search["info"]["steps"])  # one committed candidate per step ...
    assert all(rows[c["of_eval"]]["reward"] == c["reward"] for c in commits)  # ... copied from its row
    assert {"reward", "acc", "flops_ratio", "params_ratio", "step", "kind"} <= set(rows[1])
    assert (folder / "reward_curve.png").stat().st_size > 1000
    out = r.report.save(tmp_path / "report")
    assert out["reward_curve"].exists()
    md = out["markdown"].read_text()
    assert "reward_curve.png" in md and f"{len(rows) - len(commits)} evaluations" in md


def test_max_evals_is_honoured_and_the_plan_repaired(tmp_path):
    r = run(tmp_path, max_evals=8, policy_config={"kd": False})
    assert r.search["evaluations"] == 8
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.search["info"]["repaired"] > 0


def test_kill_and_resume_ends_with_the_same_plan(tmp_path, monkeypatch):
    full = run(tmp_path, "full", policy_config={"kd_max_steps": 3})
    n_total = full.search["evaluations"]
    calls = {"n": 0}
    real = Evaluator.evaluate

    def dying(self, plan):
        calls["n"] += 1
        if calls["n"] == n_total - 5:  # well into the search, after some checkpoints
            raise KeyboardInterrupt("killed")
        return real(self, plan)

    monkeypatch.setattr(Evaluator, "evaluate", dying)
    monkeypatch.setattr(Evaluator, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "killed", policy_config={"kd_max_steps": 3})
    ckpt = json.loads((tmp_path / "killed" / "checkpoint.json").read_text())
    assert ckpt["n_rows"] > 0 and ckpt["tensors"]  # weights were checkpointed (KD ran)
    monkeypatch.setattr(Evaluator, "evaluate", real)
    monkeypatch.setattr(Evaluator, "__call__", real)
    counted = {"n": 0}

    def counting(self, plan):
        counted["n"] += 1
        return real(self, plan)

    monkeypatch.setattr(Evaluator, "evaluate", counting)
    resumed = run(tmp_path, "killed", policy_config={"kd_max_steps": 3})
    assert resumed.plan.keep == full.plan.keep
    rows = [json.loads(line) for line in (tmp_path / "killed" / "evals.jsonl").read_text().splitlines()]
    done = sum(1 for row in rows[:ckpt["n_rows"]] if row["kind"] != "commit")
    assert counted["n"] == n_total - done  # it continued, it did not start over
    with torch.no_grad():
        torch.testing.assert_close(resumed.model(EXAMPLE + 1), full.model(EXAMPLE + 1))
    # a finished search is returned as it is
    counted["n"] = 0
    again = run(tmp_path, "killed", policy_config={"kd_max_steps": 3})
    assert counted["n"] == 0 and again.plan.keep == full.plan.keep


def test_gat_initialisation_changes_the_starting_distribution(tmp_path):
    r = run(tmp_path, policy_config={"kd": False, "init": "gat"})
    size = run(tmp_path, "size", policy_config={"kd": False})
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert r.search["info"]["config"]["init"]["value"] == "gat"
    first = [row["reward"] for row in r.search["history"] if row.get("step") == 1]
    assert first != [row["reward"] for row in size.search["history"] if row.get("step") == 1]


def test_global_initialisation_starts_from_the_global_allocation(tmp_path):
    g = fxprune.analyze(trained(), EXAMPLE)
    glob = fxprune.prune(trained(), 0.5, policy="global", example_inputs=EXAMPLE).plan.kept_counts(g)
    sizes = np.array([grp.size for grp in g.groups])
    cut = sizes - glob
    plans = {init: run(tmp_path, init, policy_config={"kd": False, "init": init, "noise": 0.0, "eps0": 0.0})
             for init in ("global", "size")}
    for r in plans.values():
        assert r.report.flops_ratio <= 0.5 + 1e-9
    assert plans["global"].search["info"]["config"]["init"]["value"] == "global"
    dist = {k: np.abs(r.plan.kept_counts(g) - glob).sum() for k, r in plans.items()}
    assert dist["global"] < dist["size"], dist
    # without noise or exploration it removes channels only where global cuts
    removed = sizes - plans["global"].plan.kept_counts(g)
    assert removed.sum() > 0 and np.all(removed[cut == 0] == 0), (removed, cut)


@pytest.mark.parametrize("kw, match", [
    ({"data": None}, "needs data|pass data="),
    ({"policy_config": {"nosuch": 1}}, "unknown MCQConfig option.*nosuch"),
    ({"policy_config": {"step_ratio": 2}}, "step_ratio"),
    ({"policy_config": {"precision": "fp16"}}, "precision"),
    ({"policy_config": {"init": "greedy"}}, "init"),
    ({"n_reward": 0}, "n_reward"),
])
def test_bad_input_gives_clear_errors(tmp_path, kw, match):
    data = kw.pop("data", "keep")
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.prune(trained(), 0.5, policy="mcq", example_inputs=EXAMPLE, run_dir=tmp_path / "x",
                      data=splits() if data == "keep" else data, progress=False, **kw)


def test_a_run_dir_holding_another_search_is_refused(tmp_path):
    run(tmp_path, policy_config={"kd": False}, max_evals=3)
    with pytest.raises(fxprune.FxpruneError, match="holds another search"):
        run(tmp_path, policy_config={"kd": False}, max_evals=3, seed=1)


def test_mcq_config_labels_every_default():
    from fxprune.policies.mcq_config import MCQConfig
    from fxprune.search.config import described

    options = described(MCQConfig())
    assert all(v["source"] for v in options.values()), [k for k, v in options.items() if not v["source"]]
    unknown = [k for k, v in options.items() if "[U]" in v["source"]]
    assert unknown and all("fxprune default" in options[k]["source"] for k in unknown)
    assert options["post_training.lr"] == {"value": 1e-3, "source": options["post_training.epochs"]["source"]}


def test_a_plain_loader_works_as_data(tmp_path):
    s = splits()
    loader = s.train + s.reward  # any iterable of (inputs, targets) batches
    r = fxprune.prune(trained(), 0.5, policy="mcq", data=loader, n_reward=256, example_inputs=EXAMPLE,
                      run_dir=tmp_path / "plain", policy_config={**FAST, "kd_max_steps": 2}, progress=False)
    assert r.report.flops_ratio <= 0.5 + 1e-9 and r.search["evaluations"] > 1


def test_the_defaults_start_from_global_and_leave_the_weights_alone(tmp_path):
    """fxprune's defaults (not RL-Pruner's): init "global", no distillation, the likelihood score;
    the report says they are fxprune defaults, and the pruned model is the plan on the original
    weights (up to the norm statistics the final recalibration re-estimates)."""
    cfg = {k: v for k, v in FAST.items() if k not in ("init", "kd", "reward_score")}
    r = fxprune.prune(trained(), 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config=cfg, progress=False, round_to=1)
    opts = r.search["info"]["config"]
    values = (opts["init"]["value"], opts["kd"]["value"], opts["reward_score"]["value"])
    assert values == ("global", False, "likelihood")
    assert all("fxprune default" in opts[k]["source"] for k in ("init", "kd", "reward_score"))
    assert not r.search["info"]["trained"] and not any("acc_after_kd" in s for s in r.search["info"]["steps"])
    plain = fxprune.apply_plan(trained(), r.plan, EXAMPLE).model
    conv = {k: v for k, v in r.model.state_dict().items() if "running" not in k and "num_batches" not in k}
    for k, v in conv.items():
        torch.testing.assert_close(v, plain.state_dict()[k])
