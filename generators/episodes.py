"""A bounded log of finished training episodes: where in Theta they ran and how they went.

Envs append one record per finished episode; the learner drains the logs of every EnvRunner
after training, so the loop can count unstable episodes per region and hand the controller
its learning signal without reading RLlib's internal counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

_FIELDS = ("theta_u", "fidelity", "return", "length", "unstable")


class EpisodeLog:
    """FIFO of episode records (plain dicts), capped at `maxlen`; the oldest are dropped.

    Each record: `theta_u` (list, the unit-cube coordinates of the episode's theta in the
    env's parameter space), `fidelity`, `return`, `length` (env steps) and `unstable`.
    Records are kept as blocks of arrays while the envs step (a batched env ends dozens of
    episodes in one step) and become dicts when drained.
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        self.maxlen = maxlen
        self._blocks: deque[tuple[np.ndarray, ...]] = deque()
        self._count = 0
        self.dropped = 0
        """Records pushed out unread because the log was full."""

    def __len__(self) -> int:
        return self._count

    def add(
        self, theta_u: Sequence[float], fidelity: str, ret: float, length: int, unstable: bool
    ) -> None:
        """Append one record."""
        self.extend(
            np.array([theta_u], dtype=np.float64),
            np.array([fidelity], dtype=object),
            np.array([ret], dtype=np.float64),
            np.array([length], dtype=np.int64),
            np.array([unstable], dtype=bool),
        )

    def extend(
        self,
        theta_u: np.ndarray,
        fidelity: np.ndarray,
        ret: np.ndarray,
        length: np.ndarray,
        unstable: np.ndarray,
    ) -> None:
        """Append one record per row of the equally long arrays (``theta_u`` ``(k, d)``), in
        order. The log keeps the arrays: pass ones nobody writes to later."""
        k = len(ret)
        if any(len(a) != k for a in (theta_u, fidelity, length, unstable)):
            raise ValueError("episode log: the arrays differ in length")
        if not k:
            return
        self._blocks.append((theta_u, fidelity, ret, length, unstable))
        self._count += k
        while self._count > self.maxlen:  # drop the oldest records
            excess = self._count - self.maxlen
            oldest = self._blocks[0]
            size = len(oldest[2])
            if size <= excess:
                self._blocks.popleft()
            else:
                self._blocks[0] = tuple(a[excess:] for a in oldest)
            dropped = min(size, excess)
            self._count -= dropped
            self.dropped += dropped

    def drain(self) -> list[dict[str, Any]]:
        """All records since the last drain, oldest first; the log is empty afterwards."""
        out = [
            dict(zip(_FIELDS, record, strict=True))
            for block in self._blocks
            for record in zip(*(a.tolist() for a in block), strict=True)
        ]
        self._blocks.clear()
        self._count = 0
        return out
