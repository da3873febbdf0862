"""``random``: random plans meet the budget and sit just under it, vary from draw to draw, keep
floors and multiples; the search scores exactly ``evaluations`` plans and returns the best one."""
import numpy as np
import pytest
import torchvision

import fxprune
from fxprune.policies.allocation import Allocation
from fxprune.policies.random_search import random_counts
from tests.policies.tiny_task import EXAMPLE, splits, trained


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("metric", ["flops", "params"])
def test_random_plans_meet_the_budget_tightly(budget, metric):
    graph = fxprune.analyze(torchvision.models.resnet18(weights=None), (1, 3, 64, 64))
    imp = fxprune.policies.class_importance(graph, "l1")
    alloc = Allocation(graph, fxprune.Budget(**{metric: budget}), imp, "auto")
    rng = np.random.default_rng(0)
    draws = [random_counts(alloc, rng) for _ in range(6)]
    for c in draws:
        r = alloc.ratio(c)
        assert r <= budget + 1e-12
        # no group can take one more multiple back (the hand-back loop ran to the end)
        for g in np.flatnonzero(alloc.prunable & (c < alloc.sizes)):
            trial = c.copy()
            trial[g] = min(c[g] + alloc.multiples[g], alloc.sizes[g])
            assert alloc.ratio(trial) > budget
        assert (c >= alloc.floor).all() and (c <= alloc.sizes).all()
        on_multiple = (c % alloc.multiples == 0) | (c == alloc.sizes) | (c == alloc.floor)
        assert on_multiple[alloc.prunable].all()
        assert (c[~alloc.prunable] == alloc.sizes[~alloc.prunable]).all()
    assert len({tuple(c) for c in draws}) == len(draws)  # every draw differs


def test_the_search_scores_the_evaluations_asked_and_returns_the_best(tmp_path):
    r = fxprune.prune(trained(), 0.5, policy="random", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"evaluations": 10, "batch": 3, "bn_recalib": 0, "reward_score": "accuracy"},
                      progress=False)
    rows = [x for x in r.search["history"] if x["kind"] == "candidate"]
    assert len(rows) == 10 == r.search["evaluations"]
    best = max(rows, key=lambda x: x["acc"])
    assert r.search["info"]["best_eval"] == best["eval"] and r.search["info"]["best_reward"] == best["acc"]
    commits = [x for x in r.search["history"] if x["kind"] == "commit"]
    assert [c["acc"] for c in commits] == sorted(c["acc"] for c in commits) and commits[-1]["of_eval"] == best["eval"]
    # the returned plan is the best candidate: scoring it again gives the same accuracy
    assert r.report.flops_ratio <= 0.5 + 1e-9
    ev = fxprune.Evaluator(fxprune.analyze(trained(), EXAMPLE), splits().reward, n_samples=512)
    assert ev.evaluate(r.plan).acc == pytest.approx(best["acc"])


def test_the_likelihood_score_picks_the_plan_of_least_loss(tmp_path):
    r = fxprune.prune(trained(), 0.5, policy="random", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"evaluations": 10, "batch": 5, "bn_recalib": 0, "reward_score": "likelihood"},
                      progress=False)
    rows = [x for x in r.search["history"] if x["kind"] == "candidate"]
    assert [x["reward"] for x in rows] == pytest.approx([np.exp(-x["loss"]) for x in rows], rel=1e-12)
    best = min(rows, key=lambda x: x["loss"])
    assert r.search["info"]["best_eval"] == best["eval"]
    assert r.search["info"]["reward_score"] == "likelihood"


def test_bad_options_are_named(tmp_path):
    with pytest.raises(fxprune.OptionError, match="evaluations"):
        fxprune.prune(trained(), 0.5, policy="random", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"evaluations": 0}, progress=False)
    with pytest.raises(fxprune.OptionError, match="reward_score"):
        fxprune.prune(trained(), 0.5, policy="random", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"reward_score": "top5"}, progress=False)
