"""The bad-input battery: every public entry point gives a clear error that names the problem
(the budget, the argument, the file, the node), raised before any work where possible, and leaves
the user's model bit-identical. Families: budget, model, inputs, options, data, files, ONNX,
finetune, CLI, run folder. Every case pins its message."""
import json
import os
import stat

import numpy as np
import pytest
import torch
import torch.nn as nn

import fxprune
from fxprune import Budget, Plan
from fxprune.__main__ import main as cli
from fxprune.data import ArrayDataset
from fxprune.search import DataSplits
from tests.conftest import assert_untouched, snapshot
from tests.ir.test_rules import Head, cbr
from tests.policies.tiny_task import EXAMPLE, splits, trained

X = torch.randn(1, 3, 16, 16)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8), cbr(8, 16), Head(16)

    def forward(self, x):
        return self.head(self.b(self.a(x)))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = Small().eval()
    snap = snapshot(m)
    yield m
    assert_untouched(m, snap)  # every case: the user's model is left exactly as it was


# ---- budget ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget, match", [
    (0, r"flops=0.0 is outside \(0, 1\]"), (-0.1, r"outside \(0, 1\]"), (1.5, r"flops=1.5 is outside"),
    (float("nan"), "not a finite number"), (float("inf"), "not a finite number"),
    ("half", r"must be a number in \(0, 1\], got str"), (None, "got NoneType"), (True, "got bool"),
    ([0.5], "got list"), (1j, "got complex"), ({"flops": 2.0}, r"flops=2.0 is outside"),
    ({"speed": 0.5}, "unknown budget field"), ({"latency_ms": -3}, "latency_ms=-3 must be a positive"),
    ({"latency_ms": "x"}, "milliseconds, got str"), ({"channels": 0}, r"channels=0.0 is outside"),
    ({"params": float("nan")}, "not a finite number"), ({}, "exactly one of"),
    ({"flops": 0.5, "params": 0.5}, "exactly one of"),
])
def test_budget(model, budget, match):
    with pytest.raises(fxprune.BudgetError, match=match):
        fxprune.prune(model, budget, example_inputs=X)


def test_budget_that_pinned_groups_make_impossible(model):
    with pytest.raises(fxprune.BudgetError, match="best achievable flops ratio is 0.") as ei:
        fxprune.prune(model, 0.01, example_inputs=X)
    assert 0.01 < ei.value.best < 1


# ---- model -----------------------------------------------------------------------------------------
class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x * 2 if x.mean() > 0 else x)


@pytest.mark.parametrize("bad, match", [
    (None, "expected a torch.nn.Module, got NoneType"), ("resnet18", "expected a torch.nn.Module, got str"),
    (lambda x: x, "expected a torch.nn.Module, got function"), (torch.randn(3), "got Tensor"),
    (nn.Conv2d, "got type"),
])
def test_not_a_model(bad, match):
    for call in (lambda: fxprune.prune(bad, 0.5), lambda: fxprune.analyze(bad)):
        with pytest.raises(fxprune.FxpruneError, match=match):
            call()


def test_meta_device_model():
    with torch.device("meta"):
        m = Small()
    for call in (lambda: fxprune.prune(m, 0.5, example_inputs=X), lambda: fxprune.analyze(m, X)):
        with pytest.raises(fxprune.FxpruneError, match=r"'a.0.weight' is on the meta device"):
            call()


def test_untraceable_with_nothing_to_prune_names_the_line():
    m = Untraceable()
    snap = snapshot(m)
    with pytest.raises(fxprune.NothingToPrune, match=r"test_bad_input.py:\d+ in forward"):
        fxprune.prune(m, 0.5, example_inputs=X)
    assert_untouched(m, snap)


# ---- example inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("inputs, match", [
    ("big", "example_inputs must be a tensor, a tuple of tensors or a shape"),
    ((1, 3, -4, 4), r"shape \(1, 3, -4, 4\) has a non-positive size"), ((0, 3, 8, 8), "non-positive size"),
    (3.5, "got float"), ([1, "a"], r"example_inputs\[0\] is a int"), ((), "got tuple"),
    ((X, X), r"Small.forward takes 1 input\(s\) \(x\); example_inputs gives 2"),
    ((1, 4, 16, 16), r"forward failed at node 'a_0'.*\(1, 4, 16, 16\)"),
    ((1, 3, 16), r"forward failed at node"), ({"x": X}, "got dict"),
    ((X, "b"), r"example_inputs\[1\] is a str"), ((torch.randn(1, 3, 16, 16), [X, 2]), r"example_inputs\[1\] is a list"),
])
def test_example_inputs(model, inputs, match):
    with pytest.raises(fxprune.AnalysisError, match=match):
        fxprune.prune(model, 0.5, example_inputs=inputs)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 8)

    def forward(self, x, y):
        return self.a(x) + self.a(y)


def test_too_few_inputs():
    with pytest.raises(fxprune.AnalysisError, match=r"TwoInputs.forward needs 2 input\(s\) \(x, y\)"):
        fxprune.analyze(TwoInputs(), X)


# ---- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"policy": "nope"}, "unknown policy 'nope'; registered: .*global"), ({"policy": 3}, "unknown policy 3"),
    ({"importance": "l3"}, "unknown importance 'l3'"), ({"importance": None}, "unknown importance None"),
    ({"round_to": 0}, "round_to=0 must be a positive integer, 'auto' or None"), ({"round_to": -4}, "round_to=-4"),
    ({"round_to": 2.5}, "round_to=2.5"), ({"round_to": "fast"}, "round_to='fast'"), ({"round_to": True}, "round_to=True"),
    ({"ignore": [3]}, "ignore= takes module names or submodules of the model; got 3"),
    ({"ignore": ["no.such"]}, "ignore= names 'no.such', which owns no channel group"),
    ({"ignore": [nn.Conv2d(3, 3, 1)]}, "ignore= takes module names or submodules of the model"),
    ({"max_prune_ratio": 0}, r"max_prune_ratio=0 must be a number in \(0, 1\)"),
    ({"max_prune_ratio": 1}, r"max_prune_ratio=1 must be"), ({"max_prune_ratio": 1.5}, "max_prune_ratio=1.5"),
    ({"max_prune_ratio": "x"}, "max_prune_ratio='x'"), ({"max_prune_ratio": float("nan")}, "max_prune_ratio=nan"),
    ({"seed": -1}, "seed=-1 must be a non-negative integer"), ({"seed": "0"}, "seed='0'"), ({"seed": 1.5}, "seed=1.5"),
    ({"n_reward": 0}, "n_reward=0 must be a positive integer"), ({"n_reward": -5}, "n_reward=-5"),
    ({"n_reward": "a"}, "n_reward='a'"), ({"policy_config": {"rounds": 2}}, "policy 'global' takes no policy_config"),
    ({"policy": "uniform", "policy_config": {"x": 1}}, "policy 'uniform' takes no policy_config"),
])
def test_options(model, kw, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.prune(model, 0.5, example_inputs=X, **kw)


# every mcq option with a value of the wrong type or out of range: the key is named
MCQ_BAD = [("step_ratio", "x"), ("step_ratio", 0), ("step_ratio", 1), ("samples", 0), ("samples", 1.5),
           ("depth", "1"), ("rounds", "two"), ("rounds", True), ("step_length", 0), ("step_length", 2.0),
           ("noise", -1.0), ("clip", 1.0), ("p_min", 0.0), ("gamma", 1.5), ("eps0", -0.1), ("eps_schedule", "exp"),
           ("reward", "speed"), ("alpha", "x"), ("beta", []), ("quota_weighting", "layers"), ("kd", "yes"),
           ("kd_period", 0), ("collapse_threshold", -1), ("init", "greedy"), ("max_steps", 0), ("batch_size", 0),
           ("batch_size", "big"), ("precision", "fp16"), ("eval_mode", "fast"), ("bn_recalib", -1),
           ("bn_recalib", 1.5), ("bn_batch", 0), ("taylor_samples", 0), ("kd_max_steps", 0), ("kd_lr", "x"),
           ("kd_epochs", float("inf")), ("temperature", None), ("student_weight", "w")]


@pytest.mark.parametrize("key, value", MCQ_BAD, ids=[f"{k}={v!r}" for k, v in MCQ_BAD])
def test_search_options_name_the_key(key, value, tmp_path):
    m = trained()
    snap = snapshot(m)
    named = {"kd_max_steps": "post_training.max_steps", "kd_lr": "post_training.lr", "kd_epochs": "post_training.epochs",
             "temperature": "post_training.temperature", "student_weight": "post_training.student_weight"}
    with pytest.raises(fxprune.OptionError, match=f"'{named.get(key, key)}'"):
        fxprune.prune(m, 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config={key: value})
    assert_untouched(m, snap)
    assert not any(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("config, match", [
    ("rounds=2", "options must be a dict"), ({"nosuch": 1}, r"unknown MCQConfig option\(s\) \['nosuch'\]"),
    ({"post_training": {"bogus": 1}}, r"\['post_training.bogus'\]"), ({"post_training": 3}, "takes a dict"),
])
def test_search_option_structure(config, match, tmp_path):
    with pytest.raises(fxprune.OptionError, match=match):
        fxprune.prune(trained(), 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path,
                      policy_config=config)


# ---- data for searches ------------------------------------------------------------------------------
def _imgs(n, labels=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 8, (n,), generator=g) if labels is None else labels
    return x, y


@pytest.mark.parametrize("data, match", [
    (None, "pass data="), (3, "data must be a DataLoader or an iterable"), ([], "data yielded no batches"),
    ([("x", "y")], "a data batch must be a tensor or"), ([(_imgs(8)[0], _imgs(8)[1].float())], "1-D integer tensor"),
    ([(_imgs(8)[0], torch.full((8,), 36))], r"labels must lie in \[0, 7\].*36"),
    ([(_imgs(8)[0], torch.full((8,), -1))], r"labels must lie in \[0, 7\]"),
    ([(_imgs(8)[0], torch.zeros(8, 2, dtype=torch.long))], "1-D integer tensor"),
    ([(torch.randn(8, 4, 16, 16), _imgs(8)[1])], r"reward data has samples of shape \(4, 16, 16\), but the model"),
    (DataSplits(train=None, reward=None), "DataSplits.reward is None"),
    ({"train": 1}, r"a data batch must be a tensor or \(inputs, targets\); got str"),
])
def test_search_data(data, match, tmp_path):
    m = trained()
    snap = snapshot(m)
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.prune(m, 0.5, policy="mcq", data=data, example_inputs=EXAMPLE, run_dir=tmp_path, n_reward=8,
                      policy_config={"bn_recalib": 0})
    assert_untouched(m, snap)


def test_dataset_smaller_than_the_reward_split(tmp_path):
    ds = ArrayDataset(np.zeros((10, 16, 16, 3), np.uint8), np.zeros(10, np.int64))
    with pytest.raises(fxprune.FxpruneError, match="has 10 samples: at most n_reward=1000"):
        fxprune.prune(trained(), 0.5, policy="mcq", data=ds, example_inputs=EXAMPLE, run_dir=tmp_path)


def test_no_calibration_samples_left(tmp_path):
    x, y = _imgs(16)
    with pytest.raises(fxprune.FxpruneError, match="none left after the 16 reward samples for the calibration"):
        fxprune.prune(trained(), 0.5, policy="mcq", data=[(x, y)], example_inputs=EXAMPLE, run_dir=tmp_path,
                      n_reward=16)


@pytest.mark.parametrize("x, y, match", [
    (np.zeros((4, 8, 8, 3), np.float32), np.zeros(4), "images must be uint8"),
    (np.zeros((4, 8, 8), np.uint8), np.zeros(4), "uint8 N×H×W×C"),
    (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5), "4 images but labels of shape"),
])
def test_array_dataset(x, y, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        ArrayDataset(x, y)


# ---- files -------------------------------------------------------------------------------------------
@pytest.fixture
def result(model):
    return fxprune.prune(model, 0.5, example_inputs=X)


def _readonly(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(ro, os.W_OK):  # root ignores permissions
        pytest.skip("the test runs as a user who can write anywhere")
    return ro


def test_save_into_missing_or_unwritable_folders(result, tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="folder '.*nowhere' does not exist"):
        fxprune.save(result, tmp_path / "nowhere" / "m.safetensors")
    with pytest.raises(fxprune.FxpruneError, match="is a folder; give a file name"):
        fxprune.save(result, tmp_path)
    with pytest.raises(fxprune.FxpruneError, match="save\\(\\) takes a PruneResult, got Small"):
        fxprune.save(result.model.__class__ and Small(), tmp_path / "m.safetensors")
    with pytest.raises(fxprune.OptionError, match="arch='resnet18' must be 'torchvision:NAME'"):
        fxprune.save(result, tmp_path / "m.safetensors", arch="resnet18")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "f").write_text("x")
    with pytest.raises(fxprune.FxpruneError, match="does not exist"):
        fxprune.save(result, tmp_path / "plain" / "f" / "m.safetensors")


def test_save_into_a_read_only_folder(result, tmp_path):
    ro = _readonly(tmp_path)
    with pytest.raises(fxprune.FxpruneError, match="is not writable"):
        fxprune.save(result, ro / "m.safetensors")


def test_load_errors(result, tmp_path, model):
    with pytest.raises(fxprune.FxpruneError, match="no saved fxprune model at"):
        fxprune.load(tmp_path / "missing.safetensors", model)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(fxprune.FxpruneError, match="is not a readable safetensors file"):
        fxprune.load(bad, model)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(fxprune.FxpruneError, match="not one written by fxprune.save"):
        fxprune.load(other, model)
    good = tmp_path / "good.safetensors"
    fxprune.save(result, good)
    with pytest.raises(fxprune.FxpruneError, match="does not record its architecture"):
        fxprune.load(good)
    with pytest.raises(fxprune.FxpruneError, match=r"TwoInputs.forward needs 2 input\(s\)"):
        fxprune.load(good, TwoInputs())
    with pytest.raises(fxprune.PlanError, match="plan was made for another architecture"):
        fxprune.load(good, nn.Sequential(cbr(3, 8), Head(8)))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-64])
    with pytest.raises(fxprune.FxpruneError, match="is not a readable safetensors file"):
        fxprune.load(truncated, model)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(keep={"0": [0, 1]}), "prunes group 0, which is pinned"),
    (lambda d: d.update(keep={"1": [0, 0, 1]}), "duplicate indices in group 1"),
    (lambda d: d.update(keep={"1": [0, 99]}), "index out of range for group 1 of size 8"),
    (lambda d: d.update(keep={"1": []}), "keeps 0 channels of group 1; at least 1 must stay"),
    (lambda d: d.update(keep={"77": [0]}), "plan names group 77, but the graph has"),
    (lambda d: d.update(signature="0000"), "plan was made for another architecture"),
    (lambda d: d.pop("keep"), "'keep' and 'signature' are required"),
    (lambda d: d.update(keep={"x": [0]}), "malformed plan"),
    (lambda d: d.update(version=99), "plan version 99 is newer"),
])
def test_bad_plans(result, model, edit, match):
    d = json.loads(result.plan.to_json())
    edit(d)
    with pytest.raises(fxprune.PlanError, match=match):
        fxprune.apply_plan(model, Plan.from_dict(d), X)


def test_plan_files(tmp_path):
    with pytest.raises(fxprune.PlanError, match="no plan file at"):
        Plan.load(tmp_path / "none.json")
    (tmp_path / "p.json").write_text("{oops")
    with pytest.raises(fxprune.PlanError, match="plan is not valid JSON"):
        Plan.load(tmp_path / "p.json")


def test_report_save_errors(result, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(fxprune.FxpruneError, match="it is a file, not a folder"):
        result.report.save(tmp_path / "file")
    with pytest.raises(fxprune.FxpruneError, match="cannot write the report into"):
        result.report.save("/proc/fxprune-report")


# ---- ONNX export and latency --------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"opset": 3}, r"opset=3 must be an integer in \[9, 23\]"), ({"opset": "18"}, "opset='18'"),
    ({"opset": True}, "opset=True"), ({"opset": 99}, "opset=99"), ({"checks": 0}, "checks=0 must be a positive"),
    ({"exporter": "x"}, "exporter='x' is not one of"), ({"example_inputs": "big"}, "example_inputs must be"),
    ({"example_inputs": (1, 5, 16, 16)}, "the model fails on example input"),
])
def test_export_options(model, tmp_path, kw, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.export_onnx(model, tmp_path / "m.onnx", **{"example_inputs": X, **kw})


def test_export_paths(model, tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="export_onnx\\(\\) takes an nn.Module or a PruneResult"):
        fxprune.export_onnx("model", tmp_path / "m.onnx")
    with pytest.raises(fxprune.FxpruneError, match="it is a folder"):
        fxprune.export_onnx(model, tmp_path, X)
    with pytest.raises(fxprune.FxpruneError, match="folder '.*nowhere' does not exist"):
        fxprune.export_onnx(model, tmp_path / "nowhere" / "m.onnx", X)


def test_export_reports_the_opset_in_the_file(model, tmp_path):
    import onnx

    res = fxprune.export_onnx(model, tmp_path / "m.onnx", X, opset=13, checks=1)
    assert res.opset == 13 == max(o.version for o in onnx.load(str(res.path)).opset_import if o.domain in ("", "ai.onnx"))


@pytest.mark.parametrize("kw, match", [
    ({"runs": 0}, "runs"), ({"threads": 0}, "threads"), ({"batch": 0}, "batch"), ({"warmup": -1}, "warmup"),
])
def test_latency_options(model, tmp_path, kw, match):
    path = fxprune.export_onnx(model, tmp_path / "m.onnx", X, checks=1).path
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.measure_latency(path, **kw)


def test_latency_of_a_missing_file(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="(no ONNX file|does not exist|missing)"):
        fxprune.measure_latency(tmp_path / "missing.onnx")


# ---- finetune ---------------------------------------------------------------------------------------
DATA = [(torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,)))]


@pytest.mark.parametrize("kw, match", [
    ({"lr": float("nan")}, "lr=nan must be a finite number"), ({"lr": -1.0}, "lr and temperature must be > 0"),
    ({"lr": 0.0}, "lr and temperature must be > 0"), ({"epochs": 0}, "needs epochs > 0 or max_steps"),
    ({"epochs": float("nan")}, "epochs=nan must be a finite"), ({"max_steps": 0}, "max_steps=0 must be a positive"),
    ({"max_steps": "10"}, "max_steps='10'"), ({"temperature": 0}, "lr and temperature must be > 0"),
    ({"student_weight": 2.0}, r"student_weight in \[0, 1\]"), ({"momentum": -1.0}, "momentum and weight_decay"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio in \[0, 1\)"), ({"bogus": 1}, r"unknown finetune option\(s\) \['bogus'\]"),
    ({"lr": "fast"}, "lr='fast' must be a finite number"), ({"weight_decay": float("inf")}, "weight_decay=inf"),
])
def test_finetune_options(model, kw, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.finetune(model, DATA, progress=False, **kw)


@pytest.mark.parametrize("data, match", [
    ([], "data yielded no batches"), ([(torch.randn(4, 3, 16, 16), torch.full((4,), 9))], r"labels must be class indices in \[0, 4\]"),
    (["x"], "a training batch must be"), (iter(DATA), "data has no len"),
    ([(torch.randn(4, 3, 16, 16), torch.zeros(4))], "labels must be class indices"),
])
def test_finetune_data(model, data, match):
    with pytest.raises(fxprune.FxpruneError, match=match):
        fxprune.finetune(model, data, progress=False)


def test_finetune_not_a_model():
    with pytest.raises(fxprune.FxpruneError, match="finetune\\(\\) takes a torch.nn.Module"):
        fxprune.finetune("model", DATA)


def test_a_diverging_finetune_stops_with_a_clear_error(model):
    with pytest.raises(fxprune.FxpruneError, match="the training loss became (nan|inf)"):
        fxprune.finetune(model, DATA * 4, lr=1e30, progress=False)


# ---- the command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, match", [
    (["bogus"], "invalid choice"), (["prune", "--bogus"], "unrecognized arguments: --bogus"),
    (["prune", "resnet18", "--budget", "2"], r"outside \(0, 1\]"), (["prune", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["prune", "resnet18", "--input", "a,b"], "--input 'a,b' is not a shape"),
    (["prune", "resnet18", "--input", "1,3,-2,2"], "must list positive sizes"),
    (["prune", "resnet18", "--round-to", "x"], "invalid int value"),
    (["prune", "resnet18", "--save", "/proc/fx/m.safetensors"], "cannot write the folder of"),
    (["prune", "resnet18", "--report", "/proc/fx-report"], "cannot write --report"),
    (["prune", "resnet18", "--onnx", "/proc/fx/m.onnx"], "cannot write the folder of"),
    (["prune", "resnet18", "--policy-config", "{oops"], "--policy-config is not valid JSON"),
    (["prune", "resnet18", "--policy-config", "[1]"], "--policy-config must be a JSON object"),
    (["prune", "resnet18", "--policy", "mcq", "--data", "/nonexistent"], "no data file at"),
    (["prune", "resnet18", "--policy", "nope"], "unknown policy 'nope'"),
    (["prune", "resnet18", "--importance", "l7"], "unknown importance 'l7'"),
    (["bench", "/nonexistent.onnx"], "nonexistent.onnx"), (["export", "resnet18", "/proc/fx.onnx"], "cannot write"),
    (["export", "resnet18", "out.onnx", "--opset", "3"], r"opset=3 must be an integer"),
    (["analyze", "nosuchmodel"], "unknown model"), (["prune", "timm:nosuch"], "unknown timm model 'nosuch'"),
    (["prune", "x:resnet18"], "unknown model source 'x'"), (["bench", "a.onnx", "--runs", "zero"], "invalid int value"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, match, capsys, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    try:
        rc = cli(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1 and lines[0].startswith("fxprune"), err
    assert re.search(match, lines[0]), lines[0]


# ---- run folders --------------------------------------------------------------------------------
def _search(folder, **kw):
    return fxprune.prune(trained(), 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=folder,
                         policy_config={"samples": 3, "rounds": 1, "step_ratio": 0.2, "kd": False}, progress=False, **kw)


def test_run_dir_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(fxprune.FxpruneError, match="run_dir '.*f' is a file, not a folder"):
        _search(tmp_path / "f")


def test_run_dir_that_cannot_be_written(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="cannot write into run_dir '/proc/fxprune-run'"):
        _search("/proc/fxprune-run")


def test_run_dir_of_another_search(tmp_path):
    _search(tmp_path / "r", max_evals=3)
    with pytest.raises(fxprune.FxpruneError, match=r"holds another search \(differs in \['seed'\]\)"):
        _search(tmp_path / "r", max_evals=3, seed=1)


@pytest.mark.parametrize("name", ["result.json", "run.json"])
def test_corrupt_result_or_run_file(tmp_path, name):
    _search(tmp_path / "r", max_evals=3)
    (tmp_path / "r" / name).write_text("{broken")
    with pytest.raises(fxprune.FxpruneError, match=f"'.*{name}' is corrupt .*resume=False"):
        _search(tmp_path / "r", max_evals=3)
    _search(tmp_path / "r", max_evals=3, resume=False)  # the way out works


def test_max_evals_values(tmp_path):
    for bad in (0, -1, "3", 2.5):
        with pytest.raises(fxprune.FxpruneError, match=f"max_evals={bad!r} must be a positive integer"):
            _search(tmp_path / "r", max_evals=bad)
