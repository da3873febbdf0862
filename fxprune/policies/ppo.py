"""``ppo``: graph-based reinforcement learning over binary channel masks (Balemans et al.,
"Resource-aware neural network pruning using graph-based RL", arXiv 2509.10526), as specified in
policies.md §3; the paper published no code, so this is fxprune's reference implementation.

The network is a graph (op nodes, one node per channel group; §0.3) encoded by a GATv2 encoder,
pre-trained as a graph autoencoder on graphs of the same network under random plans. A PPO agent
reads, for every channel of every prunable group, the group's embedding, the channel's own
features and the graph embedding, and samples a keep bit (a Bernoulli head whose bias starts at
the uniform baseline's keep ratio). The channels are decided in ``chunks`` steps (1: one shot).
The environment switches the most wanted channels back on where a group would fall below its
floor and lands every group on its channel multiple; the plan's cost is screened with the cost
model, and only feasible plans are evaluated (``evaluate_many``, one batch of episodes at a time).
The reward is the self-competition reward of the constrained MDP (phase 1: meet the constraint;
phase 2: the sign of the improvement over an EMA of its own accuracy), or a Lagrangian. PPO with
the clipped objective, normalised advantages, an entropy bonus and a clipped gradient norm updates
encoder, actor and critic after every batch; a checkpoint follows every update. At the end the
best feasible sampled plan and the repaired greedy decode are compared on the reward split.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from torch import nn

from ..errors import FxpruneError
from ..search.config import described
from ..search.encoder import GraphEncoder, pretrain_gae
from ..search.features import channel_features, graph_features, with_channel_nodes
from ..search.heads import BernoulliHead, mlp
from ..search.buffers import RolloutBuffer
from ..search.runlog import RowKind
from .base import PolicyContext, PolicyResult, get_policy, register_policy
from .ppo_config import PPOConfig
from .ppo_math import (Competition, bernoulli_entropy, bernoulli_logprob, centre_prior, clipped_surrogate,
                       executed_mask, fill_to_budget, jaccard, lagrangian, normalise, rank_prior, ranked_mask,
                       self_competition, slope_factor)

log = logging.getLogger(__name__)


class Agent(nn.Module):
    """GAT encoder + Bernoulli keep head per channel + value head."""

    def __init__(self, feat_dim: int, chan_dim: int, chunks: int, hidden: int, k0: float, seed: int,
                 channel_nodes: bool = False, sharpness: float | None = None, group_shift: bool = False):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = GraphEncoder(feat_dim, hidden=hidden, seed=seed)
            extra = hidden if channel_nodes else 0
            # with a rank prior the prior carries the keep ratio and the head starts at logit 0
            self.actor = BernoulliHead(hidden + extra + chan_dim + 2 * hidden + chunks, hidden,
                                       k0 if sharpness is None else 0.5)
            self.critic = mlp([2 * hidden + 1 + chunks, hidden, hidden, 1])
            # one logit shift per group from its embedding (zero at the start): moves a group's keep boundary
            self.shift = nn.Linear(hidden, 1) if group_shift else None
            if self.shift is not None:
                nn.init.zeros_(self.shift.weight)
                nn.init.zeros_(self.shift.bias)
        # the prior's slope is learned (in log space, so it stays positive)
        self.log_sharpness = None if sharpness is None else nn.Parameter(torch.tensor(float(np.log(sharpness))))
        self.factor = 1.0  # the slope schedule's factor (ppo_math.slope_factor), set before each batch
        self.chunks, self.channel_nodes = chunks, channel_nodes

    def slope(self) -> torch.Tensor | float:
        """The rank prior's learned slope times the schedule's factor (1 without a prior): the unit of
        the group shifts."""
        return 1.0 if self.log_sharpness is None else self.log_sharpness.exp() * self.factor

    def forward(self, feats, chan: torch.Tensor, group_of: torch.Tensor, t: int, cost: float,
                nodes: torch.Tensor | None = None, prior: torch.Tensor | None = None,
                shift: torch.Tensor | None = None):
        """Logits of the channels ``chan`` (rows: channel features; ``group_of``: their group ids;
        ``nodes``: their graph nodes in the channel-granularity graph; ``prior``: their rank prior,
        ``ppo_math.rank_prior``) decided at chunk ``t``, the state value, and the mean group shifts
        (one per group; None without ``group_shift``). ``shift`` (one per group) replaces the mean
        shifts in the logits: a sampled shift under ``group_noise``."""
        enc = self.encoder(feats)
        onehot = torch.zeros(self.chunks)
        onehot[t] = 1.0
        n = chan.shape[0]
        own = [enc.node[nodes]] if self.channel_nodes else []
        inp = torch.cat([enc.group[group_of], *own, chan, enc.graph.expand(n, -1), onehot.expand(n, -1)], 1)
        value = self.critic(torch.cat([enc.graph, torch.tensor([float(cost)], dtype=torch.float32), onehot]))
        logits = self.actor(inp)
        # under a rank prior the prior and the group shift are in group widths, scaled by the learned slope
        slope = self.slope()
        mu = self.shift(enc.group).squeeze(-1) if self.shift is not None else None
        applied = mu if shift is None else shift
        if applied is not None:
            logits = logits + slope * applied[group_of]
        if prior is not None:
            logits = logits + slope * prior
        return logits, value.squeeze(-1), mu


@dataclasses.dataclass
class PPOState:
    """What a checkpoint holds besides the modules, optimizer and generators (JSON-able)."""

    episodes: int = 0
    updates: int = 0
    a_ref: float = 0.0
    c_ema: float = 1.0
    lam: float = 0.0
    best_acc: float = -1.0  # the best feasible Metrics.score (reward_score: the likelihood by default)
    best_dropped: list = dataclasses.field(default_factory=list)
    batches: list = dataclasses.field(default_factory=list)  # per update: infeasible fraction, accuracy ...


@register_policy("ppo", "graph-rl", config=PPOConfig)
class PPO:
    needs_data = True

    def run(self, ctx: PolicyContext) -> PolicyResult:
        ctx.require_search("ppo", "its episodes are scored on a reward split")
        return _Search(ctx, ctx.config).run()


class _Search:
    def __init__(self, ctx: PolicyContext, cfg: PPOConfig):
        self.ctx, self.cfg, self.ev, self.rl, self.alloc = ctx, cfg, ctx.evaluator, ctx.run, ctx.alloc
        g = ctx.graph
        self.gids = np.flatnonzero(ctx.prunable)
        self.classes = [g.groups[i].classes for i in self.gids]
        self.budget = ctx.budget.value
        self.rng = np.random.default_rng(ctx.seed)
        self.gen = torch.Generator().manual_seed(ctx.seed)
        # chunks: contiguous runs of prunable groups with about equal channel counts (policies.md §3.2)
        sizes = np.array([c.size for c in self.classes])
        edges = np.searchsorted(np.cumsum(sizes), np.linspace(0, sizes.sum(), cfg.chunks + 1)[1:-1])
        self.chunk_groups = np.split(np.arange(len(self.gids)), edges)
        if any(len(c) == 0 for c in self.chunk_groups):
            raise FxpruneError(f"ppo: {cfg.chunks} chunks for {len(self.gids)} prunable groups leaves a chunk empty; "
                               "use fewer chunks")
        self.chunk_classes = [np.concatenate([self.classes[i] for i in ch]) for ch in self.chunk_groups]
        if cfg.group_noise and not cfg.group_shift:
            raise FxpruneError(f"ppo: group_noise={cfg.group_noise} samples around the learned group shifts; "
                               "set group_shift=True with it")
        if cfg.prefer_decode and not cfg.final_decode:
            raise FxpruneError("ppo: prefer_decode=True returns the greedy decode, which final_decode=False "
                               "switches off; set final_decode=True with it")
        if cfg.rank_sharpness_final and cfg.keep_init == "bias":
            raise FxpruneError(f"ppo: rank_sharpness_final={cfg.rank_sharpness_final} anneals the rank prior's slope, "
                               "which keep_init='bias' does not have; set keep_init to 'uniform' or 'global' with it")
        if cfg.prior_center != "boundary" and cfg.keep_init == "bias":
            raise FxpruneError(f"ppo: prior_center={cfg.prior_center!r} moves the rank prior, which keep_init='bias' "
                               "does not have; set keep_init to 'uniform' or 'global' with it")

    # ---- the environment --------------------------------------------------------------------------
    def cost_ratio(self, keep: np.ndarray) -> float:
        return self.alloc.keep_ratio(keep)

    def execute(self, keep: np.ndarray, logits_full: np.ndarray) -> np.ndarray:
        """The executed plan of a sampled keep vector (``ppo_math``: ``ranked_mask`` under
        ``select="ranked"``, then ``executed_mask``, then ``fill_to_budget`` under ``fill``)."""
        sub_floor, mult, sizes = self.alloc.floor[self.gids], self.ctx.multiples[self.gids], self.ctx.sizes[self.gids]
        if self.cfg.select == "ranked":
            keep = ranked_mask(keep, logits_full, self.classes)
        keep = executed_mask(keep, logits_full, self.classes, sub_floor, mult, sizes)
        if self.cfg.fill:
            keep = fill_to_budget(keep, logits_full, self.classes, mult, sizes, self.cost_ratio, self.budget)
        return keep

    def reference_counts(self, name: str) -> np.ndarray:
        """Channels per group of the registered baseline policy ``name`` at this budget."""
        return np.asarray(get_policy(name).run(self.ctx), np.int64)

    def uniform_keep(self) -> tuple[float, np.ndarray]:
        keep = self.ctx.keep_vector(self.reference_counts("uniform"))
        mask = self.ctx.prunable[self.ctx.graph.group_of_class]
        return float(keep[mask].mean()), keep

    # ---- set-up -------------------------------------------------------------------------------------
    def build(self) -> None:
        ctx, cfg = self.ctx, self.cfg
        g = ctx.graph
        self.static = graph_features(g)
        act_data = None
        if cfg.activation_samples and ctx.data is not None:
            act_data = getattr(ctx.data, "calibration", None) or getattr(ctx.data, "train", None)
        chan = channel_features(g, self.ev.model, act_data, cfg.activation_samples) if act_data is not None \
            else channel_features(g, self.ev.model)
        self.chan = torch.from_numpy(chan).float()
        self.group_of = torch.from_numpy(g.group_of_class).long()
        k0, self.uniform = self.uniform_keep()
        self.chan_nodes = cfg.granularity == "channel"
        # channel nodes follow the op and group nodes, whatever the plan: their indices are fixed
        self.nodes = torch.arange(self.static.num_nodes, self.static.num_nodes + g.n_classes)
        feat_dim = self.graph_of(self.static).x.shape[1]
        self.prior = None
        if cfg.keep_init != "bias":
            ref = self.reference_counts(cfg.keep_init)
            prior = rank_prior(ctx.rank, g.group_of_class, ref, ctx.sizes)
            if cfg.prior_center == "mean":
                prior = centre_prior(prior, g.group_of_class, ref, cfg.rank_sharpness)
            self.prior = torch.from_numpy(prior).float()
        self.agent = Agent(feat_dim, self.chan.shape[1], cfg.chunks, cfg.hidden, k0, ctx.seed, self.chan_nodes,
                           None if self.prior is None else cfg.rank_sharpness, cfg.group_shift)
        self.opt = torch.optim.Adam(self.agent.parameters(), lr=cfg.lr, eps=1e-5)

    def pretrain(self) -> list[float]:
        """GAE pretraining on graphs of the network under random plans (random keep ratios per group)."""
        cfg = self.cfg
        if not cfg.gae_epochs:
            return []
        n = self.ctx.graph.n_classes
        graphs = []
        for _ in range(min(cfg.gae_graphs, cfg.gae_epochs)):
            ratios = self.rng.uniform(0.1, 1.0, len(self.ctx.sizes))
            keep = (self.rng.random(n) < ratios[self.ctx.graph.group_of_class]).astype(np.float64)
            keep[~self.ctx.prunable[self.ctx.graph.group_of_class]] = 1.0
            graphs.append(self.graph_of(self.static.with_plan(keep, self.ev.model)))
        return pretrain_gae(self.agent.encoder, graphs, epochs=cfg.gae_epochs, lr=cfg.gae_lr, seed=self.ctx.seed)

    def graph_of(self, feats):
        """The encoder's input: the group graph, or (granularity "channel") with channel nodes."""
        if self.cfg.granularity != "channel":
            return feats
        return with_channel_nodes(feats, self.chan, self.ctx.graph.group_of_class)[0]

    # ---- episodes -----------------------------------------------------------------------------------
    def policy(self, keep: np.ndarray, t: int, shift: torch.Tensor | None = None):
        """``(logits, value, mean group shifts)`` of chunk ``t`` in the partial plan ``keep``."""
        cls = self.chunk_classes[t]
        feats = self.graph_of(self.static.with_plan(keep, self.ev.model) if t else self.static)
        nodes = self.nodes[cls] if self.chan_nodes else None
        prior = None if self.prior is None else self.prior[cls]
        return self.agent(feats, self.chan[cls], self.group_of[cls], t, self.cost_ratio(keep), nodes, prior, shift)

    def shift_logprob(self, mu: torch.Tensor, shift: torch.Tensor, t: int) -> torch.Tensor:
        """Log-density of the sampled shifts of chunk ``t``'s groups under ``N(mu, group_noise²)``."""
        g = torch.from_numpy(self.gids[self.chunk_groups[t]])
        return torch.distributions.Normal(mu[g], self.cfg.group_noise).log_prob(shift[g]).sum()

    @torch.no_grad()
    def sample_batch(self, n: int) -> tuple[list[np.ndarray], list[np.ndarray], RolloutBuffer]:
        """``n`` episodes: (executed plans, logits of every decided channel, the rollout rows)."""
        buf = RolloutBuffer()
        plans, all_logits = [], []
        cached = self.policy(np.ones(self.ctx.graph.n_classes), 0)  # chunk 0 always starts from the full plan
        for _ in range(n):
            keep = np.ones(self.ctx.graph.n_classes)
            logits_full = np.zeros(self.ctx.graph.n_classes)
            for t in range(self.cfg.chunks):
                logits, value, mu = cached if t == 0 else self.policy(keep, t)
                shift, logp = None, 0.0
                if self.cfg.group_noise:  # one Gaussian shift of the keep boundary per group, then the bits
                    shift = mu + self.cfg.group_noise * torch.randn(mu.shape, generator=self.gen)
                    logits = logits + self.agent.slope() * (shift - mu)[self.group_of[self.chunk_classes[t]]]
                    logp = float(self.shift_logprob(mu, shift, t))
                p = torch.sigmoid(logits)
                mask = (torch.rand(p.shape, generator=self.gen) < p).to(torch.uint8)
                buf.add(mask, logp + float(bernoulli_logprob(logits, mask)), float(value), t, keep, shift)
                cls = self.chunk_classes[t]
                keep = keep.copy()
                keep[cls] = mask.double().numpy()
                logits_full[cls] = logits.numpy()
            plans.append(self.execute(keep, logits_full))
            all_logits.append(logits_full)
        return plans, all_logits, buf

    def rewards(self, plans: list[np.ndarray], st: PPOState, batch: int) -> tuple[list[float], list[dict]]:
        """Feasibility screened with the cost model; the feasible plans scored as one batch."""
        costs = [self.cost_ratio(k) for k in plans]
        feasible = [c <= self.budget + 1e-9 for c in costs]
        idx = [i for i, f in enumerate(feasible) if f]
        if self.rl.max_evals is not None:
            idx = idx[:self.room()]
        metrics = dict(zip(idx, self.ev.evaluate_many([plans[i] for i in idx]) if idx else []))
        rewards, rows = [], []
        for i, (keep, c) in enumerate(zip(plans, costs)):
            m = metrics.get(i)
            acc = m.score if m is not None else None  # the reward's score term (reward_score)
            if feasible[i] and m is None:  # over max_evals: not scored, no reward signal
                r = 0.0
            elif self.cfg.reward == "lagrangian":
                r, st.lam = lagrangian(c, self.budget, acc, st.lam, self.cfg.lagrange_lr)
            else:
                ref = Competition(st.a_ref, st.c_ema)
                r, ref = self_competition(c, self.budget, acc, ref, self.cfg.mu, self.cfg.baseline)
                st.a_ref, st.c_ema = ref.a_ref, ref.c_ema
            row = {"kind": RowKind.CANDIDATE if m is not None else RowKind.SCREENED, "episode": st.episodes + i,
                   "batch": batch, "reward": r, "cost_ratio": c, "feasible": bool(feasible[i])}
            if m is not None:
                row.update(score=m.score, acc=m.acc, loss=m.loss, flops_ratio=m.flops_ratio,
                           params_ratio=m.params_ratio, seconds=m.seconds, bn_recalib=m.bn_recalib, mode=m.mode)
                if m.score > st.best_acc:
                    st.best_acc, st.best_dropped = m.score, np.flatnonzero(keep < 0.5).tolist()
            rows.append(self.rl.log(row))
            rewards.append(r)
        return rewards, rows

    def room(self) -> int:
        """Evaluations left for sampled plans under ``max_evals``: one stays for the final greedy decode."""
        return max(self.rl.max_evals - self.rl.n_evals - int(self.cfg.final_decode), 0)

    # ---- learning -----------------------------------------------------------------------------------
    def update(self, buf: RolloutBuffer) -> dict[str, float]:
        cfg = self.cfg
        adv, ret = buf.advantages(cfg.gamma, cfg.gae_lambda)
        adv = torch.as_tensor(normalise(adv), dtype=torch.float32)
        ret = torch.as_tensor(ret, dtype=torch.float32)
        old = torch.as_tensor(buf.logps, dtype=torch.float32)
        n = len(buf)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "updates": 0}
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(n, generator=self.gen)
            for s in range(0, n, cfg.minibatch):
                mb = perm[s:s + cfg.minibatch].tolist()
                logps, values, ents = [], [], []
                cache: dict[tuple, tuple] = {}
                for i in mb:
                    t, shift = buf.steps[i], buf.shifts[i]
                    key = (t, buf.plans[i].tobytes() if t else b"", b"" if shift is None else shift.numpy().tobytes())
                    if key not in cache:
                        cache[key] = self.policy(buf.plans[i].astype(np.float64), t, shift)
                    logits, value, mu = cache[key]
                    logp = bernoulli_logprob(logits, buf.masks[i])
                    logps.append(logp if shift is None else logp + self.shift_logprob(mu, shift, t))
                    values.append(value)
                    ents.append(bernoulli_entropy(logits) / logits.numel())
                logp, v, ent = torch.stack(logps), torch.stack(values), torch.stack(ents)
                pg = clipped_surrogate(logp, old[mb], adv[mb], cfg.clip)
                vf = (v - ret[mb]).pow(2).mean()
                loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ent.mean()
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), cfg.max_grad_norm)
                self.opt.step()
                stats["policy_loss"] += float(pg.detach())
                stats["value_loss"] += float(vf.detach())
                stats["entropy"] += float(ent.mean().detach())
                stats["updates"] += 1
        k = max(stats.pop("updates"), 1)
        return {name: v / k for name, v in stats.items()}

    # ---- the loop -------------------------------------------------------------------------------------
    def checkpoint(self, st: PPOState) -> None:
        self.rl.save_checkpoint(dataclasses.asdict(st), modules={"agent": self.agent.state_dict()},
                                optimizers={"adam": self.opt.state_dict()},
                                generators={"rng": self.rng, "gen": self.gen})

    def start(self) -> PPOState:
        self.build()
        ckpt = self.rl.load_checkpoint()
        if ckpt is None:
            losses = self.pretrain()
            st = PPOState()
            m0 = self.ev.evaluate_many([self.uniform])[0]  # the reference accuracy starts at the uniform baseline's
            self.rl.log({"kind": RowKind.BASELINE, "reward": m0.score, "score": m0.score, "acc": m0.acc,
                         "flops_ratio": m0.flops_ratio, "params_ratio": m0.params_ratio, "feasible": m0.feasible,
                         "bn_recalib": m0.bn_recalib, "mode": m0.mode,
                         "gae_loss": [losses[0], losses[-1]] if losses else None})
            st.a_ref = m0.score
            if m0.feasible:
                st.best_acc, st.best_dropped = m0.score, np.flatnonzero(self.uniform < 0.5).tolist()
            return st
        st = PPOState(**ckpt.state)
        self.agent.load_state_dict(ckpt.modules["agent"])
        self.opt.load_state_dict(ckpt.optimizer("adam"))
        ckpt.restore_generator("rng", self.rng)
        ckpt.restore_generator("gen", self.gen)
        return st

    def run(self) -> PolicyResult:
        from tqdm.auto import tqdm

        cfg, ctx = self.cfg, self.ctx
        st = self.start()
        bar = tqdm(total=cfg.episodes, initial=st.episodes, desc="ppo", unit="episode", disable=not ctx.progress)
        while st.episodes < cfg.episodes and (self.rl.max_evals is None or self.room() > 0):
            n = min(cfg.batch_episodes, cfg.episodes - st.episodes)
            self.schedule(st)  # the slope of this batch's samples and of its update
            plans, _, buf = self.sample_batch(n)
            rewards, rows = self.rewards(plans, st, st.updates)
            self._assign(buf, rewards)
            stats = self.update(buf)
            feas = [row for row in rows if row["feasible"]]
            summary = {"update": st.updates, "episodes": st.episodes + n,
                       "infeasible_fraction": 1.0 - len(feas) / max(len(rows), 1),
                       "feasible_acc": float(np.mean([r["acc"] for r in feas if "acc" in r])) if feas else None,
                       "mean_reward": float(np.mean(rewards)), "a_ref": st.a_ref, "lam": st.lam,
                       "slope": float(torch.as_tensor(self.agent.slope()).detach()), **stats}
            st.batches.append(summary)
            self.rl.log({"kind": RowKind.UPDATE, **summary})
            st.episodes += n
            st.updates += 1
            bar.update(n)
            bar.set_postfix(infeasible=f"{summary['infeasible_fraction']:.2f}", best=f"{st.best_acc:.3f}")
            self.checkpoint(st)
        bar.close()
        keep, info = self.finish(st)
        return PolicyResult(keep, None, list(self.rl.rows), info)

    def schedule(self, st: PPOState) -> None:
        """Set the slope schedule's factor for the episodes that follow ``st.episodes``."""
        cfg = self.cfg
        self.agent.factor = slope_factor(st.episodes, cfg.rank_sharpness, cfg.rank_sharpness_final,
                                         cfg.anneal_episodes)

    @staticmethod
    def _assign(buf: RolloutBuffer, rewards: list[float]) -> None:
        """Each episode's reward to its last step (the buffer's rows come episode by episode)."""
        ends = [i for i, t in enumerate(buf.steps) if i + 1 == len(buf.steps) or buf.steps[i + 1] == 0]
        for i, r in zip(ends, rewards):
            buf.rewards[i], buf.dones[i] = float(r), True

    @torch.no_grad()
    def greedy(self) -> np.ndarray:
        keep = np.ones(self.ctx.graph.n_classes)
        logits_full = np.zeros(self.ctx.graph.n_classes)
        for t in range(self.cfg.chunks):
            logits, _, _ = self.policy(keep, t)
            cls = self.chunk_classes[t]
            keep = keep.copy()
            keep[cls] = (logits > 0).double().numpy()
            logits_full[cls] = logits.numpy()
        return self.alloc.repair(self.execute(keep, logits_full))[0]

    def finish(self, st: PPOState) -> tuple[np.ndarray, dict]:
        n = self.ctx.graph.n_classes
        self.schedule(st)  # the greedy decode reads the slope reached at the end
        best = np.ones(n)
        best[np.asarray(st.best_dropped, np.int64)] = 0.0
        chosen, source = best, "best sampled plan"
        if st.best_acc < 0:  # no feasible plan was ever sampled: the greedy decode, repaired
            chosen, source = self.greedy(), "greedy decode (no feasible sample)"
        elif self.cfg.final_decode and not self.rl.exhausted:
            greedy = self.greedy()
            m = self.ev.evaluate_many([greedy])[0]
            self.rl.log({"kind": RowKind.FINAL, "reward": m.score, "score": m.score, "acc": m.acc,
                         "flops_ratio": m.flops_ratio, "params_ratio": m.params_ratio, "feasible": m.feasible,
                         "bn_recalib": m.bn_recalib, "mode": m.mode, "decode": "greedy"})
            if m.feasible and (m.score > st.best_acc or self.cfg.prefer_decode):
                chosen, source = greedy, "greedy decode"
        chosen, repaired = self.alloc.repair(chosen)
        info = {"evaluations": self.rl.n_evals, "episodes": st.episodes, "updates": st.updates,
                "best_sampled_score": st.best_acc, "chosen": source, "repaired": repaired, "batches": st.batches,
                "jaccard": self.jaccard(chosen), "config": described(self.cfg)}
        return chosen, info

    def jaccard(self, keep: np.ndarray) -> dict[int, float]:
        """Per prunable group: overlap of the learned mask with the L1 mask of the same size."""
        from ..importance import class_importance

        l1 = class_importance(self.ctx.graph, "l1", model=self.ev.model)
        out = {}
        for gid, cls in zip(self.gids, self.classes):
            k = int(keep[cls].sum())
            ref = np.zeros(cls.size)
            ref[np.argsort(-l1[cls], kind="stable")[:k]] = 1.0
            out[int(gid)] = jaccard(keep[cls], ref)
        return out
