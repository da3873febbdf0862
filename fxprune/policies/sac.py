"""``sac``: joint training and pruning with a learnable agent (RLAL: Ganjdanesh, Gao and Huang,
"Jointly Training and Pruning CNNs via Learnable Agent Guidance and Alignment", CVPR 2024), as
specified in policies.md §2; the paper published no code.

The CNN trains (from scratch or from the weights it has) while a SAC agent learns per-group
pruning rates. An episode is one pass over the acted groups in model order: the 9-d state of
Eq. 1 (position, channels in/out, stride, kernel, the group's FLOPs, FLOPs already spent by
earlier groups, FLOPs of later ones, previous action) plus an environment code ``z`` sets a rate
``a`` (a tanh-Gaussian squashed to [0, 1]), clipped to the bounds of Eq. 12-13 so every plan meets
the budget; the group keeps its largest-norm channels (current weights). The reward, given to
every transition of the episode, is the reward-split accuracy of the pruned working copy.
Because the weights change every epoch, ``z`` = a GRU over learnable epoch embeddings, trained
through a reward decoder (Eq. 3; the SAC losses see a detached ``z``). Twin critics with Polyak
targets and a fixed entropy coefficient (Eq. 7-9). Each epoch the weights train on
``CE + β_align L_align``, which pulls the channels the best policy so far removes towards zero
(Eq. 10-11). App. B's schedule is scaled to ``epochs``: weights only, then episodes, then agent
updates, then weights only. At the end the best policy's plan is cut out and fine-tuned
(``finetune_epochs``, the same recipe). A checkpoint follows every epoch (weights, trainer,
agent, optimizers, buffer, best policy, generators).
"""
from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import torch
from torch import nn

from ..data import ArrayLoader
from ..errors import FxpruneError
from ..ir.context import tensor_at
from ..search.buffers import ReplayBuffer
from ..search.config import described
from ..search.heads import TanhGaussian, mlp
from ..search.runlog import RowKind
from ..search.trainer import Trainer
from .base import PolicyContext, PolicyResult, register_policy
from .sac_config import SACConfig
from .sac_math import (Schedule, actor_loss, align_loss, bisect_count, clip_action, closed_form_bounds,
                       critic_target, fade_factor, kept_count, polyak, pre_tanh_of_rate, to_unit)

log = logging.getLogger(__name__)
STATE_DIM = 9
_ALIGN_ROLES = {"producers": ("out",), "all": ("out", "norm_w", "norm_b", "in")}


class EnvCode(nn.Module):
    """Learnable epoch embeddings ``ψ_e``, a GRU over them (``z_k`` = its output at epoch k,
    Eq. 2) and the reward decoder ``f_D(s, a, z)`` that trains both (Eq. 3-5)."""

    def __init__(self, epochs: int, emb_dim: int, z_dim: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(epochs, emb_dim)
        self.gru = nn.GRU(emb_dim, z_dim, batch_first=True)
        self.decoder = mlp([STATE_DIM + 1 + z_dim, hidden, hidden, 1], act=nn.ReLU)

    def codes(self, upto: int) -> torch.Tensor:
        """``[upto, z_dim]``: row ``k-1`` is ``z_k`` (h_0 = 0)."""
        out, _ = self.gru(self.emb.weight[:upto].unsqueeze(0))
        return out[0]


class Critic(nn.Module):
    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.q = mlp([STATE_DIM + 1 + z_dim, hidden, hidden, 1], act=nn.ReLU)

    def forward(self, s: torch.Tensor, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.q(torch.cat([s, a, z], -1)).squeeze(-1)


class Agent(nn.Module):
    def __init__(self, cfg: SACConfig, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = TanhGaussian(STATE_DIM + cfg.z_dim, 1, hidden=cfg.hidden)
            self.q1, self.q2 = Critic(cfg.z_dim, cfg.hidden), Critic(cfg.z_dim, cfg.hidden)
            self.env = EnvCode(cfg.epochs, cfg.emb_dim, cfg.z_dim, cfg.hidden)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in [*self.q1_t.parameters(), *self.q2_t.parameters()]:
            p.requires_grad_(False)

    def act(self, s: torch.Tensor, z: torch.Tensor, gen: torch.Generator | None, deterministic: bool = False):
        a, logp = self.actor.sample(torch.cat([s, z], -1), gen, deterministic)
        return to_unit(a, logp)


def acted_groups(graph, prunable: np.ndarray, scope: str) -> list[int]:
    """The groups sac acts on, in model order: every prunable group (``"all"``), or only block
    interiors (``"block_interior"``, the paper's): groups whose channels one producer creates, so
    no residual sum (whose stream the paper keeps whole) runs through them."""
    gids = [int(g) for g in np.flatnonzero(prunable)]
    if scope == "block_interior":
        gids = [g for g in gids if len(graph.groups[g].sources) == 1]
    return gids


@dataclasses.dataclass
class SACState:
    """The JSON part of a checkpoint."""

    epoch: int = 0  # epochs done
    trainer_step: int = 0
    best_r: float = -1.0
    best_epoch: int = 0
    best_dropped: list = dataclasses.field(default_factory=list)
    faded: list | None = None  # the plan the fade ended on (its dropped classes): frozen from then on
    epochs: list = dataclasses.field(default_factory=list)  # per epoch: loss, best reward, episodes ...


@register_policy("sac", "rlal", config=SACConfig)
class SAC:
    needs_data = True

    def run(self, ctx: PolicyContext) -> PolicyResult:
        ctx.require_search("sac", "it trains on it and scores episodes on a reward split")
        if ctx.budget.metric not in ("flops", "params"):
            raise FxpruneError(f"policy 'sac' bounds its actions by FLOPs or params; a {ctx.budget.metric} "
                               "budget is not supported (use global or uniform)")
        if getattr(ctx.data, "train", None) is None:
            raise FxpruneError("policy 'sac' trains the network: data= must include training batches")
        return _Search(ctx, ctx.config).run()


class _Search:
    def __init__(self, ctx: PolicyContext, cfg: SACConfig):
        self.ctx, self.cfg, self.ev, self.rl, self.alloc = ctx, cfg, ctx.evaluator, ctx.run, ctx.alloc
        self.graph = ctx.graph
        if cfg.fade_end_frac < 1.0 and not cfg.align_fade:
            raise FxpruneError(f"sac: fade_end_frac={cfg.fade_end_frac} sets when the fade of align_fade ends, but "
                               "align_fade is off (set align_fade=True, or leave fade_end_frac at 1.0)")
        if cfg.fade_end_frac < cfg.agent_end_frac:
            raise FxpruneError(f"sac: fade_end_frac={cfg.fade_end_frac} is before the agent phase ends "
                               f"(agent_end_frac={cfg.agent_end_frac}); the fade must not end before the agent's "
                               "last episodes")
        self.sched = Schedule.scaled(cfg.epochs, cfg.warmup_frac, cfg.fill_frac, cfg.agent_end_frac,
                                     cfg.fade_end_frac)
        self.rng = np.random.default_rng(ctx.seed)
        self.gen = torch.Generator().manual_seed(ctx.seed)
        self.groups = self.acted_groups()
        if not self.groups:
            raise FxpruneError(f"policy 'sac' (scope={cfg.scope!r}) found no group to act on in "
                               f"{self.graph.model_name}" + ("; try scope='all'" if cfg.scope != "all" else ""))
        self.static_state()
        self.agent = Agent(cfg, ctx.seed)
        if cfg.action_init == "uniform":  # every action starts at the rate that spreads the budget evenly
            with torch.no_grad():
                self.agent.actor.mu.weight.zero_()
                self.agent.actor.mu.bias.fill_(pre_tanh_of_rate(self.uniform_rate()))
        self.opt_actor = torch.optim.Adam(self.agent.actor.parameters(), lr=cfg.lr_actor)
        self.opt_critic = torch.optim.Adam([*self.agent.q1.parameters(), *self.agent.q2.parameters()], lr=cfg.lr_critic)
        self.opt_env = torch.optim.Adam(self.agent.env.parameters(), lr=cfg.lr_env)
        self.buffer = ReplayBuffer(cfg.buffer_size, STATE_DIM, 1)
        device = ctx.trainer.device if ctx.trainer else None
        self.trainer = Trainer(self.train_data(device), cfg.train, device, ctx.progress)
        self.best_actor: dict | None = None

    def train_data(self, device):
        """The training batches: a loader fxprune built from an ArrayDataset gets the recipe's batch
        and augmentation (and keeps its images on ``device``); a user's loader is used as given."""
        train = self.ctx.data.train
        if isinstance(train, ArrayLoader):
            return train.ds.loader(self.cfg.train_batch, shuffle=True, augment=self.cfg.augment, seed=train.seed,
                                   device=device)
        return train

    # ---- the groups and their static state ------------------------------------------------------------
    def acted_groups(self) -> list[int]:
        return acted_groups(self.graph, self.ctx.prunable, self.cfg.scope)

    def static_state(self) -> None:
        sizes, full = self.alloc.sizes, self.alloc.sizes.copy()
        self.f0 = float(self.alloc.full)
        self.f_group = np.zeros(len(self.groups))  # FLOPs that depend on each acted group (the rest full)
        for i, g in enumerate(self.groups):
            c = full.copy()
            c[g] = 0
            self.f_group[i] = self.f0 - float(self.alloc.metric(self.alloc.keep_vector(c)))
        self.const = self.f0 - self.f_group.sum()  # what no acted group changes (stem, fc, shortcuts ...)
        self.min_frac = np.array([self.alloc.floor[g] / sizes[g] for g in self.groups])
        rows = []
        for g in self.groups:
            mod = self._producer_module(g)
            cin = getattr(mod, "in_channels", getattr(mod, "in_features", sizes[g]))
            ks = getattr(mod, "kernel_size", (1,))
            st = getattr(mod, "stride", (1,))
            rows.append((float(cin), float(sizes[g]), float(st[0] if isinstance(st, tuple) else st),
                         float(ks[0] if isinstance(ks, tuple) else ks)))
        self.layer = np.array(rows)
        self.cmax = max(float(self.layer[:, :2].max()), 1.0)
        self.kmax = max(float(self.layer[:, 3].max()), 1.0)

    def uniform_rate(self) -> float:
        """The smallest prune rate that, applied to every acted group (rounded as a rollout rounds:
        ``kept_count``), keeps the cost within the budget (bisection on the cost model)."""
        f_des, al = self.ctx.budget.value * self.f0, self.alloc

        def cost(r: float) -> float:
            c = al.sizes.copy()
            for g in self.groups:
                c[g] = kept_count(r, int(al.sizes[g]), int(al.floor[g]), int(al.multiples[g]))
            return float(al.metric(al.keep_vector(c)))

        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if cost(mid) <= f_des else (mid, hi)
        return hi

    def _producer_module(self, g: int):
        for m in self.graph.groups[g].producers:
            if m.role == "out" and "." in m.param:
                try:
                    return self.graph.gm.get_submodule(m.param.rsplit(".", 1)[0])
                except AttributeError:
                    continue
        return None

    # ---- one episode --------------------------------------------------------------------------------
    def bounds(self, i: int, counts: np.ndarray, f_prev: float, f_des: float) -> tuple[float, float]:
        """(a_min, a_max) of acted group ``i``: the closed forms in the paper's scope (each block
        interior's FLOPs are linear in its kept fraction), bisection on the cost model otherwise."""
        g, size = self.groups[i], int(self.alloc.sizes[self.groups[i]])
        if self.cfg.scope == "block_interior":
            f_next = float(self.f_group[i + 1:].sum())
            f_next_min = float((self.f_group[i + 1:] * self.min_frac[i + 1:]).sum())  # later groups at their floors
            return closed_form_bounds(f_des - self.const, f_prev, float(self.f_group[i]), f_next, f_next_min)
        later = self.groups[i + 1:]
        floor = int(self.alloc.floor[g])

        def cost(k: int, later_at: np.ndarray) -> float:
            c = counts.copy()
            c[g] = k
            c[later] = later_at
            return float(self.alloc.metric(self.alloc.keep_vector(c)))

        k_hi = bisect_count(lambda k: cost(k, self.alloc.floor[later]), floor, size, f_des)
        k_hi = floor if k_hi is None else k_hi  # must lose at least this much
        k_lo = bisect_count(lambda k: cost(k, self.alloc.sizes[later]), floor, size, f_des)
        if k_lo is None:
            k_lo = floor
        elif k_lo < size and cost(k_lo, self.alloc.sizes[later]) < f_des:
            k_lo += 1  # the fewest channels that do not undershoot with every later group intact
        return 1.0 - k_hi / size, 1.0 - k_lo / size

    def state(self, i: int, f_prev: float, a_prev: float) -> np.ndarray:
        cin, cout, stride, k = self.layer[i]
        n = len(self.groups)
        return np.array([i / max(n - 1, 1), cin / self.cmax, cout / self.cmax, stride / 2.0, k / self.kmax,
                         self.f_group[i] / self.f0, f_prev / self.f0, self.f_group[i + 1:].sum() / self.f0, a_prev],
                        np.float32)

    @torch.no_grad()
    def rollout(self, actor_state: dict | None, z: torch.Tensor, deterministic: bool) -> tuple[list, np.ndarray]:
        """One pass over the acted groups: ``[(state, executed action)]`` and kept counts."""
        actor = self.agent.actor
        if actor_state is not None:  # the best snapshot, re-run on the current weights
            actor = copy.deepcopy(actor)
            actor.load_state_dict(actor_state)
        counts = self.alloc.sizes.copy()
        f_des = self.ctx.budget.value * self.f0
        f_prev, a_prev, traj = 0.0, 0.0, []
        for i, g in enumerate(self.groups):
            s = self.state(i, f_prev, a_prev)
            u, _ = actor.sample(torch.cat([torch.from_numpy(s), z]), None if deterministic else self.gen,
                                deterministic)
            a = float((u[0] + 1.0) / 2.0)
            size, floor, m = int(self.alloc.sizes[g]), int(self.alloc.floor[g]), int(self.alloc.multiples[g])
            a_min, a_max = self.bounds(i, counts, f_prev, f_des)
            a = clip_action(a, a_min, a_max, 1.0 - floor / size)
            # rounding never breaks a_min
            keep = kept_count(a, size, floor, m, most=int(np.floor((1.0 - max(a_min, 0.0)) * size + 1e-9)))
            counts[g] = keep
            f_prev += self.f_group[i] * keep / size
            traj.append((s, a))
            a_prev = a
        return traj, counts

    def plan(self, counts: np.ndarray, imp: np.ndarray) -> np.ndarray:
        """Keep the ``counts[g]`` largest-importance channels of each group (current weights),
        repaired if rounding left it over the budget (policies.md §2.7)."""
        keep = np.zeros(self.graph.n_classes)
        for g, cls in enumerate(self.alloc.classes):
            keep[cls[np.argsort(-imp[cls], kind="stable")[:int(counts[g])]]] = 1.0
        return self.alloc.repair(keep, imp)[0]

    def z_of(self, e: int) -> torch.Tensor:
        """The environment code of epoch ``e`` (zeros in the ablation without it); past the agent
        phase, that of its last epoch unless ``z_after_agent='current'``."""
        if not self.cfg.env_code:
            return torch.zeros(self.cfg.z_dim)
        if self.cfg.z_after_agent == "last":
            e = min(e, self.sched.agent_end)
        with torch.no_grad():
            return self.agent.env.codes(e)[e - 1]

    # ---- the agent's updates --------------------------------------------------------------------------
    def update(self, n: int, upto: int) -> dict[str, float]:
        cfg, ag = self.cfg, self.agent
        stats = {"decoder_mse": 0.0, "critic_loss": 0.0, "actor_loss": 0.0, "actor_std": 0.0}
        for _ in range(n):
            b = self.buffer.sample(cfg.batch, self.rng)
            s, a, r, s2, done = b["s"], b["a"], b["r"], b["s2"], b["done"]
            idx = b["epoch"] - 1
            if cfg.env_code:
                pred = ag.env.decoder(torch.cat([s, a, ag.env.codes(upto)[idx]], -1)).squeeze(-1)
                mse = (pred - r).pow(2).mean()
                self.opt_env.zero_grad()
                mse.backward()
                self.opt_env.step()
            else:
                mse = torch.zeros(())
            with torch.no_grad():
                z = ag.env.codes(upto)[idx] if cfg.env_code else torch.zeros(len(idx), cfg.z_dim)
                a2, logp2 = ag.act(s2, z, self.gen)
                y = critic_target(r, done, ag.q1_t(s2, a2, z), ag.q2_t(s2, a2, z), logp2, cfg.gamma, cfg.alpha)
            closs = (ag.q1(s, a, z) - y).pow(2).mean() + (ag.q2(s, a, z) - y).pow(2).mean()
            self.opt_critic.zero_grad()
            closs.backward()
            self.opt_critic.step()
            a_new, logp = ag.act(s, z, self.gen)
            aloss = actor_loss(ag.q1(s, a_new, z), ag.q2(s, a_new, z), logp, cfg.alpha)
            self.opt_actor.zero_grad()
            aloss.backward()
            self.opt_actor.step()
            polyak(ag.q1_t, ag.q1, cfg.tau)
            polyak(ag.q2_t, ag.q2, cfg.tau)
            with torch.no_grad():
                std = ag.actor(torch.cat([s, z], -1))[1].exp().mean()
            for k, v in (("decoder_mse", mse), ("critic_loss", closs), ("actor_loss", aloss), ("actor_std", std)):
                stats[k] += float(v.detach()) / n
        return stats

    # ---- the weights ----------------------------------------------------------------------------------
    def align_slices(self, keep: np.ndarray) -> list[tuple[str, int, torch.Tensor]]:
        """(parameter, dim, removed positions) of every tensor the alignment loss covers."""
        roles = _ALIGN_ROLES[self.cfg.align_scope]
        alive = self.graph.atom_keep(keep)
        out = []
        for name, dims in self.graph.params.items():
            for d, pd in dims.items():
                if pd.role not in roles:
                    continue
                dead = np.flatnonzero(~alive[pd.labels])
                if dead.size:
                    out.append((name, d, torch.from_numpy(dead).long()))
        return out

    def target_keep(self, st: SACState, imp: np.ndarray, z: torch.Tensor) -> np.ndarray | None:
        """The plan of the best policy so far on the current weights (or its frozen plan)."""
        if st.best_r < 0:
            return None
        if st.faded is not None or self.cfg.align_target == "frozen_plan" or self.best_actor is None:
            keep = np.ones(self.graph.n_classes)
            keep[np.asarray(st.best_dropped if st.faded is None else st.faded, np.int64)] = 0.0
            return keep
        return self.plan(self.rollout(self.best_actor, z, deterministic=True)[1], imp)

    def removed_norm_ratio(self, keep: np.ndarray) -> float | None:
        """Mean L2 norm of the removed channels over that of the kept ones, on the trained weights
        before surgery: how far the alignment loss has already pulled the cut channels to zero."""
        from ..importance import class_importance

        norms = class_importance(self.graph, "l2", model=self.ev.model)
        acted = np.isin(self.graph.group_of_class, self.groups)
        gone, kept = norms[acted & (keep < 0.5)], norms[acted & (keep > 0.5)]
        return float(gone.mean() / max(kept.mean(), 1e-12)) if gone.size and kept.size else None

    def train_weights(self, e: int, keep: np.ndarray | None) -> dict[str, float]:
        if self.cfg.align_fade and keep is not None and e > self.sched.fade_end:
            # past the fade's end (``keep`` is the frozen plan): the pruned sub-network trains, as after surgery
            with self.ev.training(keep) as model:
                return self.trainer.train_epoch(epoch=e, seed=self.ctx.seed,
                                                step_hook=lambda m: self.ev.zero_dead(keep, m))
        extra = None
        if keep is not None and self.cfg.beta_align > 0:
            slices = self.align_slices(keep)
            beta, form = self.cfg.beta_align, self.cfg.align_form

            def extra(model):  # noqa: F811 - the alignment term of Eq. 11
                return beta * align_loss([(tensor_at(model, n), d, i) for n, d, i in slices], form)

        with self.ev.training(np.ones(self.graph.n_classes)) as model:
            stats = self.trainer.train_epoch(epoch=e, seed=self.ctx.seed, extra_loss=extra)
            if keep is not None and self.cfg.align_fade:  # scale the removed channels' producers; 0 at the end
                self.ev.zero_dead(keep, model, scale=fade_factor(e, self.sched.fade_end))
        return stats

    # ---- the loop ---------------------------------------------------------------------------------------
    def checkpoint(self, st: SACState) -> None:
        st.trainer_step = self.trainer.step
        ag = self.agent
        modules = {"model": self.ev.state_dict(), "actor": ag.actor.state_dict(), "q1": ag.q1.state_dict(),
                   "q2": ag.q2.state_dict(), "q1_t": ag.q1_t.state_dict(), "q2_t": ag.q2_t.state_dict(),
                   "env": ag.env.state_dict()}
        if self.best_actor is not None:
            modules["best_actor"] = self.best_actor
        buf = self.buffer.state_dict()
        state = {**dataclasses.asdict(st), "buffer": {"n": buf["n"], "pos": buf["pos"]}}
        self.rl.save_checkpoint(state, modules=modules,
                                optimizers={"actor": self.opt_actor.state_dict(), "critic": self.opt_critic.state_dict(),
                                            "env": self.opt_env.state_dict(), "sgd": self.trainer.state_dict()["optimizer"]},
                                generators={"rng": self.rng, "gen": self.gen}, tensors=buf["tensors"])

    def start(self) -> SACState:
        with self.ev.training(np.ones(self.graph.n_classes)) as model:
            self.trainer.start(model, self.cfg.epochs)
        ckpt = self.rl.load_checkpoint()
        if ckpt is None:
            return SACState()
        raw = dict(ckpt.state)
        buf = raw.pop("buffer")
        st = SACState(**raw)
        ag = self.agent
        self.ev.load_state_dict(ckpt.modules["model"])
        for name in ("actor", "q1", "q2", "q1_t", "q2_t", "env"):
            getattr(ag, name).load_state_dict(ckpt.modules[name])
        self.best_actor = ckpt.modules.get("best_actor")
        self.opt_actor.load_state_dict(ckpt.optimizer("actor"))
        self.opt_critic.load_state_dict(ckpt.optimizer("critic"))
        self.opt_env.load_state_dict(ckpt.optimizer("env"))
        self.trainer.load_state_dict({"optimizer": ckpt.optimizer("sgd"), "step": st.trainer_step,
                                      "total": self.trainer.total})
        self.buffer.load_state_dict(buf, ckpt.tensors)
        ckpt.restore_generator("rng", self.rng)
        ckpt.restore_generator("gen", self.gen)
        return st

    def episodes(self, e: int, st: SACState, z: torch.Tensor, imp: np.ndarray) -> list[float]:
        trajs, plans = [], []
        for _ in range(self.cfg.episodes_per_epoch):
            traj, counts = self.rollout(None, z, deterministic=False)
            trajs.append(traj)
            plans.append(self.plan(counts, imp))
        if self.rl.max_evals is not None:
            room = max(self.rl.max_evals - self.rl.n_evals, 0)
            trajs, plans = trajs[:room], plans[:room]
        metrics = self.ev.evaluate_many(plans) if plans else []
        rewards = []
        for traj, keep, m in zip(trajs, plans, metrics):
            r = m.score
            for j, (s, a) in enumerate(traj):
                last = j == len(traj) - 1
                self.buffer.add(s, [a], r, s if last else traj[j + 1][0], last, epoch=e)
            self.rl.log({"kind": RowKind.CANDIDATE, "epoch": e, "reward": r, "acc": m.acc, "loss": m.loss,
                         "flops_ratio": m.flops_ratio, "params_ratio": m.params_ratio, "feasible": m.feasible,
                         "actions": [round(a, 4) for _, a in traj], "seconds": m.seconds,
                         "bn_recalib": m.bn_recalib, "mode": m.mode})
            if m.feasible and r > st.best_r:
                st.best_r, st.best_epoch = r, e
                st.best_dropped = np.flatnonzero(keep < 0.5).tolist()
                self.best_actor = {k: v.clone() for k, v in self.agent.actor.state_dict().items()}
            rewards.append(r)
        return rewards

    def run(self) -> PolicyResult:
        from tqdm.auto import tqdm

        cfg, sched = self.cfg, self.sched
        st = self.start()
        bar = tqdm(total=cfg.epochs, initial=st.epoch, desc="sac", unit="epoch", disable=not self.ctx.progress)
        while st.epoch < cfg.epochs and not self.rl.exhausted:
            e = st.epoch + 1
            z = self.z_of(e)
            imp = self.ctx.importance_of(self.ev.model)
            summary: dict = {"epoch": e, "phase": "weights"}
            if sched.collects(e):
                rewards = self.episodes(e, st, z, imp)
                summary.update(phase="episodes", mean_reward=float(np.mean(rewards)) if rewards else None)
                if sched.updates(e) and len(self.buffer):
                    n = cfg.updates_per_epoch or cfg.episodes_per_epoch * len(self.groups)
                    summary.update(phase="agent", **self.update(n, e))
            target = self.target_keep(st, imp, z)
            summary.update(self.train_weights(e, target))
            if cfg.align_fade and target is not None and e == sched.fade_end:  # the plan the fade zeroed: frozen
                st.faded = np.flatnonzero(target < 0.5).tolist()
            summary.update(best_reward=st.best_r, aligned=target is not None)
            if target is not None:  # the kept fraction per acted group of the plan the weights align to
                alive = self.alloc.alive(target)
                summary["kept"] = [round(float(alive[g] / self.alloc.sizes[g]), 4) for g in self.groups]
                summary["removed_norm_ratio"] = self.removed_norm_ratio(target)
            st.epochs.append(summary)
            self.rl.log({"kind": RowKind.EPOCH, **summary})
            st.epoch = e
            bar.update(1)
            bar.set_postfix(best=f"{st.best_r:.3f}", loss=f"{summary['loss']:.3f}")
            self.checkpoint(st)
        bar.close()
        return self.finish(st)

    def finish(self, st: SACState) -> PolicyResult:
        imp = self.ctx.importance_of(self.ev.model)
        z = self.z_of(max(st.epoch, 1))
        keep = self.target_keep(st, imp, z)
        source = ("" if keep is None else f"the plan the fade ended on (epoch {self.sched.fade_end})"
                  if st.faded is not None else "best policy, re-run on the final weights")
        if keep is None:  # no episode was scored: the deterministic actor
            keep, source = self.plan(self.rollout(None, z, deterministic=True)[1], imp), "final actor (no episode)"
        keep, repaired = self.alloc.repair(keep, imp)
        ratio = self.removed_norm_ratio(keep)
        # what the cut costs the trained weights, on the reward split (not logged as candidates)
        before, after = self.ev.evaluate(np.ones(self.graph.n_classes)), self.ev.evaluate(keep)
        tuned = {}
        if self.cfg.finetune_epochs:
            ft = Trainer(self.trainer.data, self.cfg.train, self.trainer.device, self.ctx.progress)
            with self.ev.training(keep) as model:
                ft.start(model, self.cfg.finetune_epochs)
                for k in range(self.cfg.finetune_epochs):
                    tuned = ft.train_epoch(epoch=self.cfg.epochs + k + 1, seed=self.ctx.seed,
                                           step_hook=lambda m: self.ev.zero_dead(keep, m))
        info = {"evaluations": self.rl.n_evals, "epochs": st.epoch, "best_reward": st.best_r,
                "best_epoch": st.best_epoch, "chosen": source, "repaired": repaired, "acted_groups": self.groups,
                "schedule": dataclasses.asdict(self.sched), "epoch_log": st.epochs,
                "finetune_loss": tuned.get("loss"), "removed_norm_ratio": ratio, "config": described(self.cfg),
                "reward_before_cut": {"acc": before.acc, "loss": before.loss},
                "reward_after_cut": {"acc": after.acc, "loss": after.loss}}
        return PolicyResult(keep, self.ev.model, list(self.rl.rows), info)
