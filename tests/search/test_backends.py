"""Plan evaluation on worker processes and on Ray: the same plan and the same logged metrics as
the local backend for every search policy, a killed worker or actor mid-search changes nothing,
a simulated two-node Ray cluster, clear errors for bad backend options, CUDA end to end."""
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import fxprune
from fxprune.search import backends
from tests.conftest import exclusive
from tests.policies.test_search_contract import FAST
from tests.policies.tiny_task import EXAMPLE, splits, trained

ROOT = Path(__file__).resolve().parents[2]


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def run(policy, folder, **kw):
    return fxprune.prune(trained(), 0.5, policy=policy, data=splits(), example_inputs=EXAMPLE, run_dir=folder,
                         policy_config=FAST[policy], progress=False, **kw)


_LOCAL: dict = {}


def local(policy, tmp_path_factory):
    """The local backend's plan and log (run once per policy and test worker)."""
    if policy not in _LOCAL:
        ref = run(policy, tmp_path_factory.mktemp(f"local-{policy}"))
        _LOCAL[policy] = ref.plan.keep, _strip(ref.search["history"])
    return _LOCAL[policy]


def same_as_local(policy, r, tmp_path_factory):
    """The run ``r`` gave the plan and the log of the local backend."""
    keep, rows = local(policy, tmp_path_factory)
    assert r.plan.keep == keep
    assert _strip(r.search["history"]) == rows


@pytest.mark.parametrize("policy", ["mcq", "ppo", "sac"])
def test_processes_give_the_local_result(policy, tmp_path, tmp_path_factory):
    r = run(policy, tmp_path, backend="processes", workers=2)
    same_as_local(policy, r, tmp_path_factory)
    assert r.search["info"]["backend"] == {"name": "processes", "workers": 2, "retried": 0, "workers_replaced": 0}
    lines = [json.loads(x) for x in (tmp_path / "workers.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert last["backend"] == "processes" and last["in_flight"] == 0 and last["retried"] == 0
    per = last["workers"]
    assert sum(w["done"] for w in per.values()) == last["done"] > 0
    assert all(k.startswith("pid ") for k, w in per.items() if w["done"])  # done counted per process
    assert per["pool"]["peak_in_flight"] > 0  # a batch's plans were in flight on the pool


def test_a_killed_worker_process_is_replaced_and_its_plans_retried(tmp_path, tmp_path_factory, monkeypatch):
    calls = {"n": 0}
    real_run = backends.ProcessBackend.run

    def run_and_kill(self, ev, plans):
        calls["n"] += 1
        if calls["n"] == 2 and self._pool is not None:  # kill one worker while the batch is in flight
            pid = next(iter(self._pool._processes))
            os.kill(pid, signal.SIGKILL)
        return real_run(self, ev, plans)

    monkeypatch.setattr(backends.ProcessBackend, "run", run_and_kill)
    r = run("mcq", tmp_path, backend="processes", workers=2)
    same_as_local("mcq", r, tmp_path_factory)
    assert r.search["info"]["backend"]["workers_replaced"] > 0
    last = json.loads((tmp_path / "workers.jsonl").read_text().splitlines()[-1])
    assert last["workers"]["pool"]["retried"] > 0 and last["retried"] == r.search["info"]["backend"]["retried"]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=150 * 2**20)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("policy", ["mcq", "ppo"])
def test_ray_gives_the_local_result(policy, ray_local, tmp_path, tmp_path_factory):
    r = run(policy, tmp_path, backend="ray", workers=2)
    same_as_local(policy, r, tmp_path_factory)
    assert r.search["info"]["backend"]["name"] == "ray"
    per = json.loads((tmp_path / "workers.jsonl").read_text().splitlines()[-1])["workers"]
    assert set(per) == {"actor 0", "actor 1"} and all(w["done"] > 0 and w["in_flight"] == 0 for w in per.values())


def test_a_killed_ray_actor_changes_nothing(ray_local, tmp_path, tmp_path_factory, monkeypatch):
    real_run, calls, killed = backends.RayBackend.run, {"n": 0}, []

    def run_and_kill(self, ev, plans):
        calls["n"] += 1
        if calls["n"] == 2 and self.actors:  # the actor restarts; its tasks are retried
            ray_local.kill(self.actors[0], no_restart=False)
            killed.append(1)
        return real_run(self, ev, plans)

    monkeypatch.setattr(backends.RayBackend, "run", run_and_kill)
    r = run("mcq", tmp_path, backend="ray", workers=2)
    assert killed
    same_as_local("mcq", r, tmp_path_factory)


def _two_node_child(out: str) -> None:
    """Run in a child process: mcq on a simulated two-node Ray cluster; write plan, log and nodes."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        r = run("mcq", tempfile.mkdtemp(), backend="ray", workers=2)
        nodes = len({n["NodeID"] for n in ray.nodes() if n["Alive"]})
    finally:
        ray.shutdown()
        cluster.shutdown()
    Path(out).write_text(json.dumps({"keep": sorted(r.plan.keep.items()), "history": _strip(r.search["history"]),
                                     "nodes": nodes}))


def test_a_simulated_two_node_cluster(tmp_path, tmp_path_factory):
    """In a child process, so that Ray's processes (two raylets, GCS, actors) never share the test
    worker: when Ray's driver aborts (it exits the process when it loses its GCS) the test reports
    Ray's own error instead of taking the xdist worker down. It holds the memory lock so that it
    never runs beside the giant zoo models on this 2-core machine."""
    pytest.importorskip("ray")
    out = tmp_path / "two_node.json"
    code = f"from tests.search.test_backends import _two_node_child; _two_node_child({str(out)!r})"
    with exclusive("zoo-giant"):
        try:
            p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                               timeout=600, check=False)
        except subprocess.TimeoutExpired as e:  # say where Ray stood, not only that it took too long
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            pytest.fail(f"the Ray child ran past 600 s (it takes about 70 s on an idle 2-core machine); "
                        f"its stderr ends:\n{err[-4000:]}")
    assert p.returncode == 0, f"the Ray child exited with {p.returncode}:\n{p.stderr[-4000:]}"
    got = json.loads(out.read_text())
    assert got["nodes"] == 2
    keep, rows = local("mcq", tmp_path_factory)
    assert got["keep"] == [[k, v] for k, v in sorted(keep.items())]
    assert got["history"] == rows


@pytest.mark.parametrize("kw, match", [({"backend": "gpu"}, "unknown backend 'gpu'"),
                                       ({"backend": "processes", "workers": 0}, "workers=0"),
                                       ({"workers": 3}, 'workers=3 needs backend="processes"'),
                                       ({"backend": "processes", "workers": 1.5}, "workers=1.5")])
def test_bad_backend_options_are_named(kw, match, tmp_path):
    model = trained()
    with pytest.raises(fxprune.OptionError, match=match):
        fxprune.prune(model, 0.5, policy="mcq", data=splits(), example_inputs=EXAMPLE, run_dir=tmp_path, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("policy", ["mcq", "ppo", "sac"])
def test_cuda_end_to_end(policy, tmp_path):
    r = run(policy, tmp_path, device="cuda")
    assert r.report.flops_ratio <= 0.5 + 1e-9
    assert next(r.model.parameters()).device.type == "cpu"  # the pruned model comes back on the CPU
    assert r.search["info"]["eval_mode"] == "masked"  # 'auto' is the faster mode on a GPU


def test_backend_stats_count_plans_per_worker():
    st, seen = backends.BackendStats(), []
    st.on_change = lambda s: seen.append(s.short())
    st.submit("actor 0", 3)
    st.submit("actor 1", 2)
    assert st.in_flight == 5 and seen[-1] == "actor0:3/0/0 actor1:2/0/0"
    st.finish("actor 1", 2, retried=True)  # actor 1 died: its plans go back to the queue
    st.submit("actor 0", 2)
    st.finish("actor 0", 5)
    assert st.done == {"actor 0": 5} and st.retried == 2 and st.in_flight == 0
    d = st.to_dict()
    assert d["workers"]["actor 0"] == {"in_flight": 0, "done": 5, "retried": 0, "peak_in_flight": 5}
    assert d["workers"]["actor 1"]["retried"] == 2 and d["done"] == 5
    st.new_batch()
    assert st.workers["actor 0"].peak_in_flight == 0


@pytest.mark.parametrize("mode", ["compact", "masked"])
def test_an_evaluator_sent_to_workers_scores_like_the_head(mode):
    """The evaluator travels pickled; a GraphModule pickles as code and loses its nodes' shapes,
    which surgery needs (the CIFAR ResNet's option-A shortcut slices with ``x[:, :, ::2, ::2]``)."""
    import pickle

    import numpy as np

    from fxprune.data import ArrayDataset
    from fxprune.models import cifar_resnet

    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    data = ArrayDataset(images, np.arange(64) % 10)
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    ev = fxprune.Evaluator(graph, data, n_samples=64, batch_size=32, mode=mode)
    plan = fxprune.prune(model, 0.5, example_inputs=(1, 3, 32, 32), progress=False).plan
    worker = pickle.loads(ev.for_workers())
    assert all("tensor_meta" in n.meta for n in worker.graph.gm.graph.nodes if n.op == "call_module")
    a, b = ev.evaluate(plan), worker.evaluate(plan)
    assert (a.acc, a.loss, a.flops) == (b.acc, b.loss, b.flops)
