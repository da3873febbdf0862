"""Typed policy options: unknown keys and wrong types are OptionErrors that name the key, nested
groups and legacy aliases parse, every default states its source."""
import dataclasses

import pytest

import fxprune
from fxprune.policies.mcq_config import MCQConfig
from fxprune.policies.ppo_config import PPOConfig
from fxprune.search.config import SearchConfig, config_from_dict, described
from tests.policies.tiny_task import EXAMPLE, splits, trained


@pytest.mark.parametrize("data, match", [
    ({"rounds": "two"}, r"'rounds'='two' must be an integer \(got str\)"),
    ({"rounds": 2.5}, r"'rounds'=2.5 must be an integer"),
    ({"rounds": True}, r"'rounds'=True must be an integer"),
    ({"rounds": 0}, r"'rounds'=0 must be >= 1"),
    ({"noise": float("nan")}, r"'noise'=nan must be a finite number"),
    ({"step_ratio": 1.0}, r"'step_ratio'=1.0 must be < 1"),
    ({"eps_schedule": "exp"}, r"'eps_schedule'='exp' must be one of"),
    ({"kd": "yes"}, r"'kd'='yes' must be a bool"),
    ({"alpha": "high"}, r"'alpha'='high' must be a finite number or None"),
    ({"nosuch": 1}, r"unknown MCQConfig option\(s\) \['nosuch'\]"),
    ({"post_training": {"lr": "big"}}, r"'post_training.lr'='big' must be a finite number"),
    ({"post_training": {"nope": 1}}, r"unknown FinetuneConfig option\(s\) \['post_training.nope'\]"),
    ({"post_training": 3}, r"'post_training' takes a dict"),
    ({"kd_max_steps": "many"}, r"'post_training.max_steps'='many' must be an integer or None"),
    ({"bn_recalib": -1}, r"'bn_recalib'=-1 must be >= 0"),
    ({"precision": "fp16"}, r"'precision'='fp16' must be one of \['fp32', 'bf16'\]"),
    ({"eval_mode": "fast"}, r"'eval_mode'='fast' must be one of"),
    ("rounds=2", r"options must be a dict"),
])
def test_bad_options_name_the_key(data, match):
    with pytest.raises(fxprune.OptionError, match=match):
        config_from_dict(MCQConfig, data)


def test_nested_groups_and_aliases():
    cfg = config_from_dict(MCQConfig, {"rounds": 2, "kd_max_steps": 40, "post_training": {"lr": 0.01}, "noise": 0})
    assert cfg.rounds == 2 and cfg.post_training.max_steps == 40 and cfg.post_training.lr == 0.01
    assert cfg.noise == 0.0 and isinstance(cfg.noise, float)
    assert cfg.post_training.temperature == 2.0  # mcq's post-training default, not finetune's
    assert config_from_dict(MCQConfig, None) == MCQConfig() == config_from_dict(MCQConfig, {})
    assert config_from_dict(MCQConfig, cfg) is cfg


def test_every_search_option_states_its_source():
    for cls in (SearchConfig, MCQConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("source"), f"{cls.__name__}.{f.name} has no source"
    d = described(MCQConfig())
    assert d["bn_recalib"]["value"] == 8 and "fxprune default" in d["bn_recalib"]["source"]
    for cls in (MCQConfig, PPOConfig):  # every default keeps its provenance, nested ones included
        assert all(v["source"] != "user" for v in described(cls()).values()), cls


def test_options_the_user_set_are_reported_as_theirs():
    cfg = config_from_dict(MCQConfig, {"bn_recalib": 2, "post_training": {"epochs": 3}})
    d = described(cfg)
    assert d["bn_recalib"] == {"value": 2, "source": "user"}
    assert d["post_training.epochs"] == {"value": 3, "source": "user"}
    assert d["precision"]["source"] != "user" and d["post_training.lr"]["source"] != "user"


def test_prune_rejects_bad_options_before_any_work(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fxprune.api, "analyze", lambda *a, **k: calls.append(1))
    with pytest.raises(fxprune.OptionError, match="policy 'mcq'.*'rounds'='two'"):
        fxprune.prune(trained(), 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"rounds": "two"})
    with pytest.raises(fxprune.OptionError, match="policy 'ppo'.*unknown preset 'nope'"):
        fxprune.prune(trained(), 0.5, policy="ppo", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={"preset": "nope"})
    with pytest.raises(fxprune.OptionError, match="policy 'global' takes no policy_config"):
        fxprune.prune(trained(), 0.5, policy_config={"rounds": 2})
    assert not calls


def test_a_preset_expands_and_the_users_keys_win():
    tuned = PPOConfig.PRESETS["tuned"]
    cfg = config_from_dict(PPOConfig, {"preset": "tuned", "fill": False, "lr": 1e-3})
    for key, value in tuned.items():
        assert getattr(cfg, key) == (False if key == "fill" else value), key
    assert cfg.lr == 1e-3 and cfg.episodes == PPOConfig().episodes
    assert config_from_dict(PPOConfig, {"preset": "tuned"}) != PPOConfig()
    d = described(cfg)
    assert d["keep_init"] == {"value": tuned["keep_init"], "source": "user"}


def test_sacs_tuned_preset_is_the_benchmarks_row():
    from fxprune.policies.sac_config import SACConfig

    cfg = config_from_dict(SACConfig, {"preset": "tuned", "epochs": 12})
    assert (cfg.scope, cfg.align_fade, cfg.fade_end_frac, cfg.epochs) == ("all", True, 0.8, 12)
    assert cfg.beta_align == SACConfig().beta_align and cfg.env_code  # the rest stays the paper's


@pytest.mark.parametrize("cls, data, match", [
    (PPOConfig, {"preset": "fast"}, r"PPOConfig: unknown preset 'fast'; known: \['annealed', 'tuned'\]"),
    (PPOConfig, {"preset": 3}, r"unknown preset 3"),
    (MCQConfig, {"preset": "tuned"}, r"MCQConfig has no presets \(option 'preset'='tuned'\)"),
    (PPOConfig, {"preset": "tuned", "group_noise": -1}, r"'group_noise'=-1 must be >= 0"),
])
def test_bad_presets_name_the_preset(cls, data, match):
    with pytest.raises(fxprune.OptionError, match=match):
        config_from_dict(cls, data)


def test_every_preset_is_a_valid_set_of_options():
    for cls in (MCQConfig, PPOConfig):
        for name, values in cls.PRESETS.items():
            assert config_from_dict(cls, dict(values)) == config_from_dict(cls, {"preset": name})
