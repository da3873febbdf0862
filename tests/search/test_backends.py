"""Plan evaluation on worker processes and on Ray: the same plan and the same logged metrics as
the local backend for every search policy, a killed worker or actor mid-search changes nothing,
a simulated two-node Ray cluster, clear errors for bad backend options, CUDA end to end."""
import os
import signal

import pytest
import torch

import fxprune
from fxprune.search import backends
from tests.policies.test_search_contract import FAST
from tests.policies.tiny_task import EXAMPLE, splits, trained


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def run(policy, folder, **kw):
    return fxprune.prune(trained(), 0.5, policy=policy, data=splits(), example_inputs=EXAMPLE, run_dir=folder,
                         policy_config=FAST[policy], progress=False, **kw)


_LOCAL: dict = {}


def same_as_local(policy, r, tmp_path_factory):
    """The run ``r`` gave the plan and the log of the local backend (run once per policy and worker)."""
    if policy not in _LOCAL:
        ref = run(policy, tmp_path_factory.mktemp(f"local-{policy}"))
        _LOCAL[policy] = ref.plan.keep, _strip(ref.search["history"])
    keep, rows = _LOCAL[policy]
    assert r.plan.keep == keep
    assert _strip(r.search["history"]) == rows


@pytest.mark.parametrize("policy", ["mcq", "ppo", "sac"])
def test_processes_give_the_local_result(policy, tmp_path, tmp_path_factory):
    r = run(policy, tmp_path, backend="processes", workers=2)
    same_as_local(policy, r, tmp_path_factory)
    assert r.search["info"]["backend"] == {"name": "processes", "workers": 2, "retried": 0, "workers_replaced": 0}
    assert (tmp_path / "workers.jsonl").read_text().count("\n") >= 1  # per-batch plans done per worker


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


def test_a_simulated_two_node_cluster(tmp_path, tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        r = run("mcq", tmp_path, backend="ray", workers=2)
        same_as_local("mcq", r, tmp_path_factory)
        assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()


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
