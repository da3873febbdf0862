"""``mcq``: Monte-Carlo sampling + Q-learning over a pruning distribution (RL-Pruner, Wang &
Kindratenko, arXiv 2411.06463), as specified in policies.md §1.

The policy is a distribution ``p`` over the prunable groups: the share of each step's channel quota
``M`` taken from each group. Every step samples noisy copies ``p̃``, turns them into removal counts,
removes each group's least important live channels, scores the candidates (reward
``acc + α(1-F/F0) + β(1-P/P0)``, optionally with a discounted lookahead), keeps the best in a
replay buffer, moves ``p`` towards the best ``p̃`` inside a trust region, commits one candidate
(ε-greedy), and distils the pruned working model from a teacher before the next step.

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
from ..search.config import described
from ..search.runlog import RowKind
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


@dataclasses.dataclass
class MCQState:
    """What a checkpoint holds besides the weights and the generator (JSON-able)."""

    t: int
    p: list
    dropped: list  # class ids dropped by the committed plan
    acc_prev: float
    teacher_acc: float
    steps: list
    t_est: int
    trained: bool = False
    swapped: bool = False


@register_policy("mcq", "rl-pruner", config=MCQConfig)
class MCQ:
    needs_data = True

    def run(self, ctx: PolicyContext) -> PolicyResult:
        ctx.require_search("mcq", "its candidates are scored on a reward split")
        return _Search(ctx, ctx.config).run()


class _Search:
    def __init__(self, ctx: PolicyContext, cfg: MCQConfig):
        self.ctx, self.cfg, self.ev, self.rl, self.alloc = ctx, cfg, ctx.evaluator, ctx.run, ctx.alloc
        self.gids = np.flatnonzero(ctx.prunable)
        self.sizes = ctx.sizes[self.gids]
        self.alpha, self.beta = cfg.weights(ctx.budget.metric)
        self.metric = ctx.budget.metric
        self.n0 = int(self.sizes.sum())
        self.quota = max(1, int(np.floor(self.n0 * cfg.step_ratio)))
        self.rng = np.random.default_rng(ctx.seed)
        self.teacher = None
        self.bar = None

    # ---- plan arithmetic on the prunable groups -------------------------------------------------
    def room(self, keep: np.ndarray) -> np.ndarray:
        return self.alloc.room(keep)[self.gids]

    def remove(self, keep: np.ndarray, n: np.ndarray, imp: np.ndarray) -> np.ndarray:
        full = np.zeros(len(self.ctx.sizes), np.int64)
        full[self.gids] = n
        return self.alloc.remove(keep, full, imp)

    def ratio(self, keep: np.ndarray) -> float:
        return self.alloc.keep_ratio(keep)

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
        from .global_rank import GlobalRank

        kept = np.asarray(GlobalRank().run(self.ctx), np.int64)
        removed = (self.ctx.sizes - kept)[self.gids].astype(np.float64)
        if removed.sum() <= 0:  # nothing to cut: fall back to the size-proportional start
            removed = self.sizes.astype(np.float64)
        log.info("mcq: init='global' starts from %d groups that global cuts (of %d)", int((removed > 0).sum()),
                 removed.size)
        return removed / removed.sum()

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

    # ---- evaluation -----------------------------------------------------------------------------
    def score_many(self, keeps: list[np.ndarray], infos: list[dict]) -> list[tuple[float, object, dict]]:
        """Score candidates through ``evaluate_many`` (at most what ``max_evals`` still allows)."""
        if self.rl.max_evals is not None:
            keeps = keeps[:max(self.rl.max_evals - self.rl.n_evals, 0)]
        out = []
        for keep, info, m in zip(keeps, infos, self.ev.evaluate_many(keeps) if keeps else []):
            q = m.score + self.alpha * (1 - m.flops_ratio) + self.beta * (1 - m.params_ratio)
            row = self.rl.log({**info, "reward": q, "acc": m.acc, "loss": m.loss, "flops_ratio": m.flops_ratio,
                               "params_ratio": m.params_ratio, "feasible": m.feasible, "seconds": m.seconds,
                               "bn_recalib": m.bn_recalib, "mode": m.mode})
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(step=info.get("step"), reward=f"{q:.3f}", flops=f"{m.flops_ratio:.2f}")
            out.append((q, m, row))
        return out

    def score(self, keep: np.ndarray, **info) -> tuple[float, object, dict]:
        res = self.score_many([keep], [info])
        if not res:
            raise FxpruneError("max_evals was reached before the search could score its baseline")
        return res[0]

    def search(self, keep, imp, p, quota, depth, buffer, step, rnd) -> float:
        """One level of the Monte-Carlo search: ``samples`` candidates scored as one batch, then
        (depth > 1) the discounted best of each candidate's own children."""
        cfg = self.cfg
        pts = [sample(p, cfg.noise, self.rng, cfg.p_min) for _ in range(cfg.samples)]
        room = self.room(keep)
        cands = [self.remove(keep, counts(pt, quota, room), imp) for pt in pts]
        kind = RowKind.CANDIDATE if depth == 0 else RowKind.LOOKAHEAD
        scored = self.score_many(cands, [{"kind": kind, "step": step, "round": rnd, "depth": depth}] * len(cands))
        qs = []
        for pt, cand, (q, m, row) in zip(pts, cands, scored):
            if depth + 1 < cfg.depth and not self.rl.exhausted:
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

    # ---- the loop --------------------------------------------------------------------------------
    def checkpoint(self, st: MCQState) -> None:
        modules = {}
        if st.trained:
            modules["model"] = self.ev.state_dict()
        if st.swapped:
            modules["teacher"] = self.teacher.state_dict()
        self.rl.save_checkpoint(dataclasses.asdict(st), modules=modules, generators={"rng": self.rng})

    def start(self) -> MCQState:
        ckpt = self.rl.load_checkpoint()
        self.ev.restore()
        self.teacher = copy.deepcopy(self.ev.model).eval()
        if ckpt is None:
            p = self.init_p()
            t_est = self.estimate_steps(p, self.ctx.importance_of(self.ev.model))
            _, m0, _ = self.score(np.ones(self.ctx.graph.n_classes), kind=RowKind.BASELINE, step=0)
            st = MCQState(1, p.tolist(), [], m0.acc, m0.acc, [], t_est)
            log.info("mcq: quota %d channels/step, about %d steps, config %s", self.quota, t_est, self.cfg)
            return st
        st = MCQState(**ckpt.state)
        ckpt.restore_generator("rng", self.rng)
        if "model" in ckpt.modules:  # the teacher stays the original model unless it was swapped
            self.ev.load_state_dict(ckpt.modules["model"])
        if "teacher" in ckpt.modules:
            self.teacher.load_state_dict(ckpt.modules["teacher"])
        return st

    def run(self) -> PolicyResult:
        from tqdm.auto import tqdm

        ctx, cfg, ev = self.ctx, self.cfg, self.ev
        st = self.start()
        p = np.asarray(st.p)
        keep = np.ones(ctx.graph.n_classes)
        keep[np.asarray(st.dropped, np.int64)] = 0.0
        total = ctx.max_evals or max(1, st.t_est * cfg.rounds * cfg.samples)
        self.bar = tqdm(total=total, initial=self.rl.n_evals, desc="mcq", unit="eval", disable=not ctx.progress)
        while st.t <= cfg.max_steps and not self.rl.exhausted:
            if self.metric == "channels" and st.t > st.t_est:
                break
            if self.metric != "channels" and self.ratio(keep) <= self.target() + 1e-12:
                break
            if not self.room(keep).any():
                log.warning("mcq: every group is at its floor; stopping at ratio %.3f", self.ratio(keep))
                break
            ev.apply(keep)
            imp = ctx.importance_of(ev.model)
            quota = self.step_quota(keep, p, imp)
            eps_t = epsilon(cfg.eps_schedule, cfg.eps0, st.t, st.t_est)
            cand, explore, p = self.step(keep, imp, p, quota, eps_t, st)
            if cand is None:
                break
            keep, st.acc_prev = cand.keep, cand.acc
            commit = self.rl.log({"kind": RowKind.COMMIT, "step": st.t, "of_eval": cand.row["eval"],
                                  "reward": cand.q, "acc": cand.acc, "flops_ratio": cand.row["flops_ratio"],
                                  "params_ratio": cand.row["params_ratio"], "explore": bool(explore)})
            step = {"t": st.t, "eval": cand.row["eval"], "commit_row": commit["eval"], "reward": cand.q,
                    "acc": cand.acc, "ratio": cand.ratio, "explore": bool(explore), "eps": eps_t, "quota": quota}
            if cfg.kd and st.t % cfg.kd_period == 0 and ctx.trainer is not None and not self.rl.exhausted:
                self.distill(keep, st.t)
                st.trained = True
                _, mk, _ = self.score(keep, kind=RowKind.AFTER_TRAINING, step=st.t)
                step["acc_after_kd"] = mk.acc
                if mk.acc > st.teacher_acc:  # teacher swap
                    ev.apply(keep)
                    self.teacher = copy.deepcopy(ev.model).eval()
                    st.teacher_acc, st.swapped = mk.acc, True
            st.steps.append(step)
            st.t += 1
            st.p, st.dropped = p.tolist(), np.flatnonzero(keep < 0.5).tolist()
            self.checkpoint(st)
        self.bar.close()
        ev.apply(keep)
        keep, repaired = self.alloc.repair(keep, ctx.importance_of(ev.model))
        if repaired:
            log.info("mcq: repaired the plan to the budget by removing %d more channels", repaired)
        ev.restore()
        info = {"steps": st.steps, "evaluations": self.rl.n_evals, "p": p.tolist(), "repaired": repaired,
                "reward_weights": [self.alpha, self.beta], "quota": self.quota, "trained": st.trained,
                "config": described(cfg)}
        return PolicyResult(keep, ev.model if st.trained else None, list(self.rl.rows), info)

    def step(self, keep, imp, p, quota, eps_t, st: MCQState):
        """Rounds of search, the trust-region updates of ``p``, the ε-greedy commit and the
        collapse guard (a step redone once from a reset ``p``). Returns (candidate, explored, p)."""
        cfg = self.cfg
        for attempt in range(2):
            buffer: list[_Cand] = []
            best_q = -np.inf
            for rnd in range(cfg.rounds):
                if self.rl.exhausted:
                    break
                q_top = self.search(keep, imp, p, quota, 0, buffer, st.t, rnd)
                if q_top > best_q and buffer:
                    best_q = q_top
                    best = max(buffer, key=lambda c: (c.q, -c.ratio))
                    p = trust_region_step(p, best.pt, cfg.step_length, cfg.clip, cfg.p_min)
            if not buffer:
                return None, False, p
            explore = self.rng.random() < eps_t
            cand = (buffer[int(self.rng.integers(len(buffer)))] if explore
                    else max(buffer, key=lambda c: (c.q, -c.ratio)))
            drop = (st.acc_prev - cand.acc) / st.acc_prev if st.acc_prev > 0 else 0.0
            if attempt == 0 and drop > cfg.collapse_threshold:
                log.warning("mcq step %d: accuracy fell %.1f%% (> %.0f%%); resetting p and redoing the step",
                            st.t, 100 * drop, 100 * cfg.collapse_threshold)
                p = self.init_p()
                continue
            return cand, explore, p
        return cand, explore, p

    def distill(self, keep: np.ndarray, t: int) -> None:
        """KD-fine-tune the working model with the dropped channels held at zero."""
        ev = self.ev
        with ev.training(keep) as model:
            self.ctx.trainer.distill(model, self.teacher, seed=self.ctx.seed * 1_000_003 + t, epoch=t,
                                     config=self.cfg.post_training, step_hook=lambda m: ev.zero_dead(keep, m))
