"""The run folder's checkpoints hold optimizer, generator and module state exactly."""
import numpy as np
import pytest
import torch

from fxprune.finetune import FinetuneConfig
from fxprune.search import SearchRun, Trainer
from fxprune.search.runlog import RowKind


def test_checkpoint_round_trip_of_modules_optimizers_and_generators(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(4)
    rng.random(), torch.rand(2, generator=gen)
    run = SearchRun(tmp_path, {"k": 1})
    run.log({"kind": RowKind.CANDIDATE, "reward": 1.0})
    run.save_checkpoint({"t": 2}, modules={"m": model.state_dict()}, optimizers={"adam": opt.state_dict()},
                        generators={"rng": rng, "gen": gen}, tensors={"buf": torch.arange(5)})
    want_r, want_g = rng.random(), torch.rand(2, generator=gen)
    ck = SearchRun(tmp_path, {"k": 1}).load_checkpoint()
    assert ck.state == {"t": 2} and ck.n_rows == 1 and torch.equal(ck.tensors["buf"], torch.arange(5))
    m2 = torch.nn.Linear(4, 3)
    m2.load_state_dict(ck.modules["m"])
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.01)
    opt2.load_state_dict(ck.optimizer("adam"))
    a, b = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    r2, g2 = np.random.default_rng(), torch.Generator()
    ck.restore_generator("rng", r2)
    ck.restore_generator("gen", g2)
    assert r2.random() == want_r and torch.equal(torch.rand(2, generator=g2), want_g)


def test_commit_and_epoch_rows_do_not_count_as_evaluations(tmp_path):
    run = SearchRun(tmp_path, {"k": 1}, max_evals=2)
    run.log({"kind": RowKind.CANDIDATE})
    run.log({"kind": RowKind.COMMIT, "of_eval": 0})
    run.log({"kind": RowKind.EPOCH})
    assert run.n_evals == 1 and not run.exhausted
    run.log({"kind": RowKind.CANDIDATE})
    assert run.exhausted


def test_trainer_state_resumes_training_exactly():
    torch.manual_seed(0)
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(4)]
    cfg = FinetuneConfig(epochs=3, lr=0.1)

    def fresh():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))

    a = fresh()
    ta = Trainer(data, cfg, progress=False)
    ta.start(a, epochs=3)
    for e in range(3):
        ta.train_epoch(epoch=e)
    b = fresh()
    tb = Trainer(data, cfg, progress=False)
    tb.start(b, epochs=3)
    tb.train_epoch(epoch=0)
    state, weights = tb.state_dict(), {k: v.clone() for k, v in b.state_dict().items()}
    c = fresh()
    c.load_state_dict(weights)
    tc = Trainer(data, cfg, progress=False)
    tc.start(c, epochs=3)
    tc.load_state_dict(state)
    for e in (1, 2):
        tc.train_epoch(epoch=e)
    for (k, v), (_, w) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(v, w), k
    assert ta.step == tc.step == 12


def test_extra_loss_is_added_to_every_step():
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,)))] * 4
    cfg = FinetuneConfig(epochs=1, lr=0.05, momentum=0.0, weight_decay=0.0, warmup_ratio=0.0, lr_min=0.05)
    norms, seen = [], []
    for penalty in (0.0, 5.0):
        torch.manual_seed(0)
        m = torch.nn.Linear(6, 3)
        t = Trainer(data, cfg, progress=False)
        t.start(m, epochs=1)
        t.train_epoch(epoch=0, extra_loss=lambda model, k=penalty: seen.append(1) or k * model.weight.pow(2).sum())
        norms.append(float(m.weight.norm()))
    assert len(seen) == 8 and norms[1] < 0.5 * norms[0]  # the penalty shrank the weights
    with pytest.raises(Exception, match="Trainer.start"):
        Trainer(data, FinetuneConfig(), progress=False).train_epoch(epoch=0)
