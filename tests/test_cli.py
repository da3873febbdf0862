"""The command line end to end on resnet18: exit codes, files written, report content, errors."""
import json
import struct
import subprocess
import sys

import pytest

from fxprune.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    code = main(["prune", "resnet18", "--budget", "0.5", "--input", "1,3,64,64", "--round-to", "8",
                 "--onnx", str(d / "r18.onnx"), "--report", str(d / "rep"), "--save", str(d / "r18.safetensors")])
    return code, d


def test_prune_writes_everything(pruned, capsys):
    code, d = pruned
    assert code == 0
    rep = json.loads((d / "rep" / "report.json").read_text())
    assert abs(rep["flops_ratio"] - 0.5) <= 0.01 and rep["flops_ratio"] <= 0.5
    assert rep["round_to"] == 8 and rep["policy"] == "global" and rep["budget"] == {"flops": 0.5}
    assert rep["latency_before_ms"] > 0 and rep["latency_after_ms"] > 0
    assert rep["speedup"] == pytest.approx(rep["latency_before_ms"] / rep["latency_after_ms"])
    conv1 = next(layer for layer in rep["layers"] if layer["name"] == "layer1.0.conv1")
    assert conv1["weight_before"] == [64, 64, 3, 3] and conv1["weight_after"][0] % 8 == 0
    assert conv1["flops_before"] == 64 * 64 * 9 * 16 * 16  # MACs at 16x16 output
    assert sum(layer["flops_after"] for layer in rep["layers"]) == pytest.approx(rep["flops_after"], rel=1e-6)
    md = (d / "rep" / "report.md").read_text()
    for needle in ("## Pinned groups", "reaches the model output", "## Layers", "layer1.0.conv1", "latency (ms",
                   "kept_channels.png"):
        assert needle in md
    for png in ("kept_channels.png", "flops_share.png"):
        w, h = _png_size(d / "rep" / png)
        assert w > 100 and h > 100
    assert (d / "r18.onnx").stat().st_size > 1000 and (d / "r18.safetensors").is_file()


def test_saved_model_feeds_export_analyze_and_bench(pruned, capsys):
    _, d = pruned
    capsys.readouterr()
    assert main(["export", str(d / "r18.safetensors"), str(d / "again.onnx")]) == 0
    assert "ONNX Runtime parity" in capsys.readouterr().out
    assert main(["analyze", str(d / "r18.safetensors")]) == 0
    assert "pinned" in capsys.readouterr().out
    assert main(["bench", str(d / "r18.onnx"), "--runs", "5", "--warmup", "1", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)
    assert lat["median_ms"] > 0 and lat["p90_ms"] >= lat["median_ms"] and lat["spinning"] is True
    assert main(["bench", str(d / "r18.onnx"), "--runs", "3", "--warmup", "1", "--json", "--no-spinning"]) == 0
    assert json.loads(capsys.readouterr().out)["spinning"] is False
    assert main(["bench", str(d / "rep" / "original.onnx"), str(d / "r18.onnx"), "--runs", "6", "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["speedup"] == pytest.approx(cmp["a"]["median_ms"] / cmp["b"]["median_ms"])
    assert main(["bench", str(d / "rep" / "original.onnx"), str(d / "r18.onnx"), "--runs", "4",
                 "--min-speedup", "1000"]) == 1
    assert "latency check failed" in capsys.readouterr().err


def test_analyze_lists_groups(capsys):
    assert main(["analyze", "resnet18", "--input", "1,3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "model input" in out and "reaches the model output" in out


@pytest.mark.parametrize("argv,needle", [
    (["bench", "missing.onnx"], "no ONNX file"),
    (["prune", "resnet18", "--budget", "abc"], "budget 'abc'"),
    (["prune", "resnet18", "--budget", "latency=2"], "outside (0, 1]"),
    (["prune", "no_such_net"], "unknown model 'no_such_net'"),
    (["analyze", "resnet18", "--input", "1,3,x"], "--input"),
    (["export", "missing.safetensors", "out.onnx"], "no saved fxprune model"),
])
def test_bad_input_is_one_line_error(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="unknown model"):
        main(["--debug", "prune", "no_such_net"])


def test_console_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "fxprune", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "examples:" in out.stdout and "bench" in out.stdout


def _npz_folder(folder, n=640, seed=0):
    """A CIFAR-layout folder: train.npz with uint8 NxHxWxC images whose label is a bright quadrant."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 120, (n, 32, 32, 3)).astype(np.uint8)
    for c in range(4):
        qy, qx = divmod(c, 2)
        x[y == c, qy * 16:(qy + 1) * 16, qx * 16:(qx + 1) * 16, :] += 120
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=x, y=y)
    return folder


def test_ppo_search_from_the_command_line(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from fxprune.models import cifar_resnet

    torch.manual_seed(0)
    net = cifar_resnet(20)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r20.safetensors"))
    data = _npz_folder(tmp_path / "data")
    code = main(["prune", "cifar_resnet20", "--weights", str(tmp_path / "r20.safetensors"), "--policy", "ppo",
                 "--data", str(data), "--normalize", "cifar10", "--n-reward", "128", "--run-dir", str(tmp_path / "run"),
                 "--policy-config", '{"episodes": 8, "batch_episodes": 4, "gae_epochs": 2, "ppo_epochs": 1, '
                 '"bn_recalib": 2, "bn_batch": 32, "activation_samples": 32}',
                 "--report", str(tmp_path / "rep"), "--no-latency", "--save", str(tmp_path / "out.safetensors")])
    assert code == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["policy"] == "ppo" and rep["flops_ratio"] <= 0.5 + 1e-9
    assert rep["search"]["info"]["episodes"] == 8 and rep["search"]["info"]["jaccard"]
    assert (tmp_path / "rep" / "jaccard.png").is_file() and (tmp_path / "run" / "reward_curve.png").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "update" for r in rows) == 2
    # the weights given were the ones pruned: the saved model reloads and its unpruned layers match
    import fxprune

    again = fxprune.load(tmp_path / "out.safetensors")
    assert torch.equal(again.model.linear.bias, net.linear.bias)


def test_weights_that_do_not_fit_are_named(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    assert main(["prune", "cifar_resnet20", "--weights", str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "bad.safetensors" in err and "does not fit" in err


def test_weights_for_a_saved_model_are_refused(pruned, capsys):
    _, d = pruned
    capsys.readouterr()
    assert main(["prune", str(d / "r18.safetensors"), "--weights", str(d / "r18.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--weights is for a model built by name" in err and err.count("\n") == 1
