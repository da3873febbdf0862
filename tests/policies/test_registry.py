"""The policy registry: built-in names and aliases, third-party policies by decorator and through
the ``fxprune.policies`` entry-point group."""
import importlib.metadata as md
import textwrap

import numpy as np
import pytest
import torchvision

import fxprune
from fxprune.policies import base


def test_builtin_names_and_aliases():
    names = fxprune.available_policies()
    assert {"uniform", "global", "global_magnitude", "mcq", "rl-pruner"} <= set(names)
    assert base.get_policy("rl-pruner").name == "mcq"


def _fake_entry_points(monkeypatch, tmp_path, body):
    module = f"fxprune_plugin_{tmp_path.name.replace('-', '_')}"  # a fresh module per test
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint(name="keep-first-half", value=f"{module}:KeepFirstHalf",
                       group=base.ENTRY_POINT_GROUP)
    real = md.entry_points

    def fake(**kw):
        return [ep] if kw.get("group") == base.ENTRY_POINT_GROUP else real(**kw)

    monkeypatch.setattr(md, "entry_points", fake)
    monkeypatch.delitem(base._POLICIES, "keep-first-half", raising=False)


def test_entry_point_policy_is_found_and_used(monkeypatch, tmp_path):
    _fake_entry_points(monkeypatch, tmp_path, """
        import numpy as np

        class KeepFirstHalf:
            def run(self, ctx):
                return np.where(ctx.prunable, np.maximum(ctx.sizes // 2, 1), ctx.sizes)
    """)
    assert "keep-first-half" in fxprune.available_policies()
    model = torchvision.models.resnet18()
    r = fxprune.prune(model, fxprune.Budget(channels=0.5), policy="keep-first-half")
    assert r.plan.policy == "keep-first-half"
    kept = [g.kept / g.size for g in r.report.groups if not g.pinned]
    assert kept and np.allclose(kept, 0.5, atol=0.02)


def test_broken_entry_point_is_a_clear_error(monkeypatch, tmp_path):
    _fake_entry_points(monkeypatch, tmp_path, "class KeepFirstHalf:\n    pass\n")
    with pytest.raises(fxprune.FxpruneError, match="no run\\(ctx\\) method"):
        fxprune.prune(torchvision.models.resnet18(), 0.5, policy="keep-first-half")


def test_decorator_registration(monkeypatch):
    monkeypatch.setattr(base, "_POLICIES", dict(base._POLICIES))

    @fxprune.register_policy("everything-uniform", "eu")
    class EU:
        def run(self, ctx):
            return base.get_policy("uniform").run(ctx)

    r = fxprune.prune(torchvision.models.resnet18(), 0.5, policy="eu")
    assert r.plan.policy == "everything-uniform" and r.report.flops_ratio <= 0.5 + 1e-9


def test_unknown_policy_lists_the_registered_ones():
    with pytest.raises(fxprune.FxpruneError, match="unknown policy 'nope'.*mcq"):
        fxprune.prune(torchvision.models.resnet18(), 0.5, policy="nope")
