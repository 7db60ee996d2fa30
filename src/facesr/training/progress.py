"""The progress bar on stderr (rank 0, unless quiet); every method is a no-op without one."""
from __future__ import annotations

import sys


class Progress:
    """A tqdm bar over iterations ``start`` .. ``total`` (``enabled=False``: nothing is shown)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def show_loss(self, loss: float, lr: float, data_wait: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", wait=f"{data_wait:.0%}")

    def show_val(self, rec: dict) -> None:
        if self.bar is not None:
            self.bar.write(f"[val] iter {rec['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.items()
                                                                    if isinstance(v, float)))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
