"""Learning-rate schedules as closed forms of the iteration index.

:func:`cosine_restart_lr` is mmengine's ``CosineRestartLR`` (by_epoch=False):
for iteration ``n`` in period ``k`` (cumulative boundaries ``P_k``) with
``t = n - P_{k-1}`` and length ``T``, ``lr = eta_min + (w_k base - eta_min) (1 +
cos(pi t / T)) / 2``.  ``t = 0`` restarts at ``w_k base``; after the last period
the lr stays at its final value.  Iteration ``n`` (0-based) trains with
``lr(n)``.  Being stateless, the schedule resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def cosine_restart_lr(
    n: int, base_lr: float, periods: Sequence[int], restart_weights: Sequence[float] | None, eta_min: float
) -> float:
    weights = list(restart_weights) if restart_weights is not None else [1.0] * len(periods)
    total = sum(periods)
    if n >= total:  # after the last period: unchanged from its last step
        n = total - 1
    start = 0
    for period, w in zip(periods, weights):
        if n < start + period:
            t = n - start
            eta_max = base_lr * w
            return eta_min + (eta_max - eta_min) * (1 + math.cos(math.pi * t / period)) / 2
        start += period
    raise AssertionError("unreachable")


def lr_at(n: int, sched, base_lr: float) -> float:
    """The lr iteration ``n`` trains with, for a :class:`~facesr.config.SchedCfg`."""
    if sched.type == "constant":
        return base_lr
    return cosine_restart_lr(n, base_lr, sched.periods, sched.restart_weights, sched.eta_min)
