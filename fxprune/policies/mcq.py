"""``mcq``: Monte-Carlo sampling + Q-learning over a pruning distribution (RL-Pruner, Wang &
Kindratenko, arXiv 2411.06463), as specified in policies.md §1.

The policy is a distribution ``p`` over the prunable groups: the share of each step's channel quota
``M`` taken from each group. Every step samples noisy copies ``p̃``, turns them into removal counts,
removes each group's least important live channels, scores the candidates with ``evaluate``
(reward ``acc + α(1-F/F0) + β(1-P/P0)``, optionally with a discounted lookahead), keeps the best
in a replay buffer, moves ``p`` towards the best ``p̃`` inside a trust region, commits one
candidate (ε-greedy), and distils the pruned working model from a teacher before the next step.

Budgets: for ``channels`` the run removes the fraction ``s = 1 - value`` of all prunable channels in
``round(s/ρ)`` steps. For ``flops``/``params`` it steps until the committed plan meets the budget;
the last step's quota shrinks so the plan lands on it, and a plan still over it is repaired
(lowest normalised importance first) and the repair logged.
"""
from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import torch

from ..errors import FxpruneError
from ..finetune import FinetuneConfig
from .allocation import align_removals
from .base import PolicyContext, PolicyResult, register_policy
from .mcq_config import MCQConfig
from .mcq_math import counts, epsilon, project, sample, trust_region_step

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Cand:
    q: float
    pt: np.ndarray
    keep: np.ndarray
    acc: float
    ratio: float
    row: dict


@register_policy("mcq", "rl-pruner")
class MCQ:
    needs_data = True

    def run(self, ctx: PolicyContext) -> PolicyResult:
        if ctx.evaluator is None or ctx.run is None:
            raise FxpruneError("policy 'mcq' needs data= (its candidates are scored on a reward split)")
        cfg = MCQConfig.from_dict(ctx.config)
        return _Search(ctx, cfg).run()


class _Search:
    def __init__(self, ctx: PolicyContext, cfg: MCQConfig):
        self.ctx, self.cfg, self.ev, self.rl = ctx, cfg, ctx.evaluator, ctx.run
        g = ctx.graph
        self.gids = np.flatnonzero(ctx.prunable)
        self.sizes = ctx.sizes[self.gids]
        self.floor = ctx.floor_counts()[self.gids]
        self.classes = [g.groups[i].classes for i in self.gids]
        self.alpha, self.beta = cfg.weights(ctx.budget.metric)
        self.metric = ctx.budget.metric
        self.n0 = int(self.sizes.sum())
        self.quota = max(1, int(np.floor(self.n0 * cfg.step_ratio)))
        self.rng = np.random.default_rng(ctx.seed)
        self.teacher = None
        self.bar = None
        self._global: np.ndarray | None = None

    # ---- plan arithmetic ---------------------------------------------------------------------
    def alive_counts(self, keep: np.ndarray) -> np.ndarray:
        return np.array([int(keep[c].sum()) for c in self.classes], np.int64)

    def room(self, keep: np.ndarray) -> np.ndarray:
        return np.maximum(self.alive_counts(keep) - self.floor, 0)

    def remove(self, keep: np.ndarray, n: np.ndarray, imp: np.ndarray) -> np.ndarray:
        """Drop the ``n[i]`` least important live channels of every prunable group."""
        out = keep.copy()
        mult = self.ctx.multiples[self.gids]
        if (mult > 1).any():  # land kept counts on the groups' channel multiples
            n = align_removals(n, self.alive_counts(keep), self.floor, mult)
        for i in np.flatnonzero(n):
            cls = self.classes[i][keep[self.classes[i]] > 0.5]
            k = int(n[i])
            out[cls[np.argsort(imp[cls], kind="stable")[:k]]] = 0.0
        return out

    def ratio(self, keep: np.ndarray) -> float:
        if self.metric == "channels":
            return float(sum(keep[c].sum() for c in self.classes)) / self.n0
        return self.ctx._metric(keep) / max(self.ctx.full, 1e-12)

    def target(self) -> float:
        return self.ctx.budget.value

    def step_quota(self, keep: np.ndarray, p: np.ndarray, imp: np.ndarray) -> int:
        """``M``, or less on the last step so that the mean plan just meets the budget."""
        room = self.room(keep)

        def meets(m: int) -> bool:
            return self.ratio(self.remove(keep, counts(p, m, room), imp)) <= self.target() + 1e-12

        if self.metric == "channels" or not meets(self.quota):
            return self.quota
        lo, hi = 1, self.quota
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if meets(mid) else (mid + 1, hi)
        return lo

    def init_p(self) -> np.ndarray:
        if self.cfg.init == "global":  # not RL-Pruner: warm start from the `global` policy's allocation
            return project(self.global_shares(), self.cfg.p_min)
        w = self.sizes.astype(np.float64)
        if self.cfg.quota_weighting == "producer_filters":
            g = self.ctx.graph
            w = w * np.array([max(1, len({m.param for m in g.groups[i].members if m.role == "out"}))
                              for i in self.gids])
        if self.cfg.init == "gat":  # not RL-Pruner: p0 ∝ C_g·softmax(w·h_g) with a fixed random w
            enc, feats = self.ctx.encoder
            with torch.no_grad():
                h = enc(feats).group[torch.as_tensor(self.gids)]
                wv = torch.randn(h.shape[1], generator=torch.Generator().manual_seed(self.ctx.seed))
                w = w * torch.softmax(h @ wv, 0).double().numpy()
        return project(w / w.sum(), self.cfg.p_min)

    def global_shares(self) -> np.ndarray:
        """Each prunable group's share of the channels that the ``global`` policy removes at this
        budget (ranked on the initial importance), so the quota is first spent where it would cut."""
        if self._global is None:
            from .global_rank import GlobalRank

            kept = np.asarray(GlobalRank().run(self.ctx), np.int64)
            removed = (self.ctx.sizes - kept)[self.gids].astype(np.float64)
            if removed.sum() <= 0:  # nothing to cut: fall back to the size-proportional start
                removed = self.sizes.astype(np.float64)
            self._global = removed / removed.sum()
            log.info("mcq: init='global' starts from %d groups that global cuts (of %d)",
                     int((removed > 0).sum()), removed.size)
        return self._global

    def estimate_steps(self, p: np.ndarray, imp: np.ndarray) -> int:
        if self.metric == "channels":
            return max(1, int(round((1 - self.target()) / self.cfg.step_ratio)))
        keep, t = np.ones(self.ctx.graph.n_classes), 0
        while self.ratio(keep) > self.target() and t < self.cfg.max_steps:
            room = self.room(keep)
            if not room.any():
                break
            keep, t = self.remove(keep, counts(p, self.quota, room), imp), t + 1
        return max(t, 1)

    # ---- evaluation --------------------------------------------------------------------------
    def score(self, keep: np.ndarray, **info) -> tuple[float, object, dict]:
        m = self.ev(keep)
        q = m.acc + self.alpha * (1 - m.flops_ratio) + self.beta * (1 - m.params_ratio)
        row = self.rl.log({**info, "reward": q, "acc": m.acc, "loss": m.loss, "flops_ratio": m.flops_ratio,
                           "params_ratio": m.params_ratio, "feasible": m.feasible, "seconds": m.seconds})
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(step=info.get("step"), reward=f"{q:.3f}", flops=f"{m.flops_ratio:.2f}")
        return q, m, row

    def search(self, keep, imp, p, quota, depth, buffer, step, rnd) -> float:
        cfg, qs = self.cfg, []
        for _ in range(cfg.samples):
            if self.rl.exhausted:
                break
            pt = sample(p, cfg.noise, self.rng, cfg.p_min)
            cand = self.remove(keep, counts(pt, quota, self.room(keep)), imp)
            q, m, row = self.score(cand, kind="candidate" if depth == 0 else "lookahead", step=step,
                                   round=rnd, depth=depth)
            if depth + 1 < cfg.depth:
                q += cfg.gamma * max(self.search(cand, imp, p, quota, depth + 1, None, step, rnd), 0.0)
            if buffer is not None:
                c = _Cand(q, pt, cand, m.acc, self.ratio(cand), row)
                if len(buffer) < cfg.samples:
                    buffer.append(c)
                else:
                    worst = min(range(len(buffer)), key=lambda i: (buffer[i].q, -buffer[i].ratio))
                    if q >= buffer[worst].q:
                        buffer[worst] = c
            qs.append(q)
        return max(qs) if qs else -np.inf

    # ---- the loop ----------------------------------------------------------------------------
    def state(self, t, p, keep, acc_prev, teacher_acc, steps, t_est, trained, swapped):
        return {"t": t, "p": p.tolist(), "keep": np.flatnonzero(keep < 0.5).tolist(), "acc_prev": acc_prev,
                "teacher_acc": teacher_acc, "steps": steps, "t_est": t_est, "trained": trained,
                "swapped": swapped, "rng": self.rng.bit_generator.state}

    def run(self) -> PolicyResult:
        ctx, cfg, ev = self.ctx, self.cfg, self.ev
        from tqdm.auto import tqdm

        n_cls = ctx.graph.n_classes
        ckpt = self.rl.load_checkpoint()
        ev.restore()
        self.teacher = copy.deepcopy(ev.model).eval()
        if ckpt is None:
            keep = np.ones(n_cls)
            p = self.init_p()
            imp0 = ctx.importance_of(ev.model)
            t_est = self.estimate_steps(p, imp0)
            _, m0, _ = self.score(keep, kind="baseline", step=0)
            t, acc_prev, teacher_acc, steps, trained, swapped = 1, m0.acc, m0.acc, [], False, False
        else:
            st, tensors = ckpt
            keep = np.ones(n_cls)
            keep[np.asarray(st["keep"], np.int64)] = 0.0
            p, t, acc_prev, teacher_acc = np.asarray(st["p"]), st["t"], st["acc_prev"], st["teacher_acc"]
            steps, t_est, trained, swapped = st["steps"], st["t_est"], st["trained"], st["swapped"]
            self.rng.bit_generator.state = st["rng"]
            if trained:
                ev.load_state_dict(tensors["model"])
            if swapped:
                self.teacher.load_state_dict(tensors["teacher"])
        per_step = cfg.rounds * sum(cfg.samples ** d for d in range(1, cfg.depth + 1)) + int(cfg.kd)
        self.bar = tqdm(total=t_est * per_step + 1, initial=self.rl.n_evals, desc="mcq search", unit="eval",
                        disable=not ctx.progress, leave=False)
        log.info("mcq: %d prunable groups, %d channels, quota %d per step, ~%d steps; config %s",
                 self.gids.size, self.n0, self.quota, t_est, cfg.described())
        while t <= cfg.max_steps and not self.rl.exhausted:
            if self.metric == "channels" and t > t_est:
                break
            if self.metric != "channels" and self.ratio(keep) <= self.target() + 1e-12:
                break
            if not self.room(keep).any():
                log.warning("mcq: every group is at its floor; stopping at ratio %.3f", self.ratio(keep))
                break
            ev._apply(keep)
            imp = ctx.importance_of(ev.model)
            quota = self.step_quota(keep, p, imp)
            eps_t = epsilon(cfg.eps_schedule, cfg.eps0, t, t_est)
            for attempt in range(2):  # the collapse guard redoes a step once
                buffer: list[_Cand] = []
                best_q = -np.inf
                for rnd in range(cfg.rounds):
                    q_top = self.search(keep, imp, p, quota, 0, buffer, t, rnd)
                    if q_top > best_q and buffer:
                        best_q = q_top
                        best = max(buffer, key=lambda c: (c.q, -c.ratio))
                        p = trust_region_step(p, best.pt, cfg.step_length, cfg.clip, cfg.p_min)
                if not buffer:
                    break
                explore = self.rng.random() < eps_t
                cand = (buffer[int(self.rng.integers(len(buffer)))] if explore
                        else max(buffer, key=lambda c: (c.q, -c.ratio)))
                drop = (acc_prev - cand.acc) / acc_prev if acc_prev > 0 else 0.0
                if attempt == 0 and drop > cfg.collapse_threshold:
                    log.warning("mcq step %d: accuracy fell %.1f%% (> %.0f%%); resetting p and redoing the step",
                                t, 100 * drop, 100 * cfg.collapse_threshold)
                    p = self.init_p()
                    continue
                break
            if not buffer:
                break
            keep, acc_prev = cand.keep, cand.acc
            step = {"t": t, "eval": cand.row["eval"], "reward": cand.q, "acc": cand.acc, "ratio": cand.ratio,
                    "explore": bool(explore), "eps": eps_t, "quota": quota}
            if cfg.kd and t % cfg.kd_period == 0 and ctx.trainer is not None and not self.rl.exhausted:
                self.distill(keep, t)
                trained = True
                _, mk, _ = self.score(keep, kind="kd", step=t)
                step["acc_after_kd"] = mk.acc
                if mk.acc > teacher_acc:  # teacher swap
                    ev._apply(keep)
                    self.teacher = copy.deepcopy(ev.model).eval()
                    teacher_acc, swapped = mk.acc, True
            steps.append(step)
            t += 1
            tensors = {}
            if trained:
                tensors["model"] = ev.state_dict()
            if swapped:
                tensors["teacher"] = self.teacher.state_dict()
            self.rl.save_checkpoint(self.state(t, p, keep, acc_prev, teacher_acc, steps, t_est, trained, swapped),
                                    tensors)
        self.bar.close()
        keep, repaired = self.repair(keep)
        ev.restore()
        info = {"steps": steps, "evaluations": self.rl.n_evals, "p": p.tolist(), "repaired": repaired,
                "reward_weights": [self.alpha, self.beta], "quota": self.quota, "trained": trained,
                "config": cfg.described()}
        return PolicyResult(keep, ev.model if trained else None, list(self.rl.rows), info)

    def distill(self, keep: np.ndarray, t: int) -> None:
        """KD-fine-tune the working model with the dropped channels held at zero."""
        ev, cfg = self.ev, self.cfg
        ev._apply(keep)
        kd = FinetuneConfig(epochs=cfg.kd_epochs, max_steps=cfg.kd_max_steps, lr=cfg.kd_lr, lr_min=cfg.kd_lr_min,
                            temperature=cfg.temperature, student_weight=cfg.student_weight)
        trainer = dataclasses.replace(self.ctx.trainer, config=kd)
        trainer(ev.model, self.teacher, seed=self.ctx.seed * 1_000_003 + t, epoch=t,
                         step_hook=lambda m: ev.zero_dead(keep, m))
        ev.model.eval()
        ev.rebase()

    def repair(self, keep: np.ndarray) -> tuple[np.ndarray, int]:
        """Remove the lowest normalised-importance live channels until the budget holds (0.2 rule 4)."""
        if self.metric == "channels" or self.ratio(keep) <= self.target() + 1e-12:
            return keep, 0
        self.ev._apply(keep)
        imp = self.ctx.importance_of(self.ev.model)
        g = self.ctx.graph
        gmax = np.zeros(len(g.groups))
        np.maximum.at(gmax, g.group_of_class, imp)
        norm = imp / np.maximum(gmax[g.group_of_class], 1e-30)
        removed = 0
        while self.ratio(keep) > self.target() + 1e-12:
            room = self.room(keep)
            live = [c[keep[c] > 0.5] for c in self.classes]
            cands = [cl[np.argsort(norm[cl], kind="stable")[:r]] for cl, r in zip(live, room) if r > 0]
            if not cands:
                raise FxpruneError(f"mcq could not repair the plan to the budget {self.ctx.budget}: "
                                   f"every group is at its floor (ratio {self.ratio(keep):.3f})")
            chunk = max(1, sum(cl.size for cl, r in zip(live, room) if r > 0) // 200)
            drop = np.concatenate(cands)
            drop = drop[np.argsort(norm[drop], kind="stable")[:chunk]]
            keep = keep.copy()
            keep[drop] = 0.0
            removed += drop.size
        log.info("mcq: repaired the plan to the budget by removing %d more channels", removed)
        return keep, removed
