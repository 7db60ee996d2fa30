"""The wall-clock budget (``train.time_budget_min``): fix the run's length from its measured speed.

Every :data:`CHECK_EVERY` iterations rank 0 compares its training time (:mod:`.clock`) with the
budget.  From 5% of the budget (and at least 10 iterations) it starts measuring the speed; at 15%
it plans ``max_iters`` so that the run ends on budget (a one-period cosine schedule is resized to
it, so the learning rate is annealed at the end).  A run that passes 110% of its budget anyway
(slower than planned) ends at the next check.  The plan is logged and written to config.yaml, so
``--resume`` continues it rather than planning again.

:class:`BudgetPlanner` is pure: times in, decisions out.  The trainer agrees on them across
ranks and applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

CHECK_EVERY = 10  # iterations between checks (the same iterations on every rank)
WARM_FRACTION, PLAN_FRACTION, OVER_FRACTION = 0.05, 0.15, 1.1


@dataclass(frozen=True)
class BudgetDecision:
    """What one check decided: ``max_iters`` > 0 plans the run's length; ``over`` ends it now."""

    max_iters: int = 0
    over: bool = False
    it_per_s: float | None = None


class BudgetPlanner:
    """Plans a run of ``budget_s`` training seconds that (re)started at iteration ``start_iter``.

    ``planned``: a plan exists already (a resumed run); then only the 110% stop applies.
    """

    def __init__(self, budget_s: float, start_iter: int, planned: bool = False):
        self.budget_s = float(budget_s)
        self.start_iter = int(start_iter)
        self.planned = bool(planned)
        self.warm: tuple[int, float] | None = None  # (iteration, seconds) where the speed measurement began

    def due(self, it: int) -> bool:
        """True at the iterations where every rank takes part in a check."""
        return (it - self.start_iter) % CHECK_EVERY == 0

    def propose(self, it: int, elapsed_s: float, max_iters: int) -> BudgetDecision:
        """Rank 0's decision after ``it`` completed iterations and ``elapsed_s`` training seconds."""
        rate, total = None, 0
        if not self.planned and self.warm is None:
            if it - self.start_iter >= 10 and elapsed_s >= WARM_FRACTION * self.budget_s:
                self.warm = (it, elapsed_s)
        elif not self.planned and elapsed_s >= PLAN_FRACTION * self.budget_s:
            assert self.warm is not None
            rate = (it - self.warm[0]) / (elapsed_s - self.warm[1])
            total = max(it + 1, it + int(rate * max(0.0, self.budget_s - elapsed_s)))
        over = elapsed_s > OVER_FRACTION * self.budget_s and it < max_iters
        return BudgetDecision(total, over, rate)

    def accept(self, decision: BudgetDecision) -> None:
        """Record the decision every rank agreed on (a plan is made once)."""
        if decision.max_iters and not decision.over:
            self.planned = True


def resize_run(cfg, max_iters: int) -> None:
    """Set ``cfg``'s run length to ``max_iters``; a one-period cosine schedule is resized to it."""
    cfg.train.max_iters = max_iters
    if cfg.sched.type == "cosine_restart" and len(cfg.sched.periods) == 1:
        cfg.sched.periods = [max_iters]
