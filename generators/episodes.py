"""A bounded log of finished training episodes: where in Theta they ran and how they went.

Envs append one record per finished episode; the learner drains the logs of every EnvRunner
after training, so the loop can count unstable episodes per region and hand the controller
its learning signal without reading RLlib's internal counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

_FIELDS = ("theta_u", "fidelity", "return", "length", "unstable")


class EpisodeLog:
    """FIFO of episode records (plain dicts), capped at `maxlen`; the oldest are dropped.

    Each record: `theta_u` (list, the unit-cube coordinates of the episode's theta in the
    env's parameter space), `fidelity`, `return`, `length` (env steps) and `unstable`.
    Records are kept as tuples while the envs step and become dicts when drained.
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        self._records: deque[tuple[list[float], str, float, int, bool]] = deque(maxlen=maxlen)
        self.dropped = 0
        """Records pushed out unread because the log was full."""

    def add(
        self, theta_u: list[float], fidelity: str, ret: float, length: int, unstable: bool
    ) -> None:
        """Append one record."""
        self.extend([theta_u], [fidelity], [float(ret)], [int(length)], [bool(unstable)])

    def extend(
        self,
        theta_u: Sequence[list[float]],
        fidelity: Sequence[str],
        ret: Sequence[float],
        length: Sequence[int],
        unstable: Sequence[bool],
    ) -> None:
        """Append one record per position of the equally long sequences, in order (Python
        numbers, as ``ndarray.tolist`` gives them)."""
        if self._records.maxlen is not None:
            self.dropped += max(0, len(self._records) + len(theta_u) - self._records.maxlen)
        self._records.extend(zip(theta_u, fidelity, ret, length, unstable, strict=True))

    def drain(self) -> list[dict[str, Any]]:
        """All records since the last drain, oldest first; the log is empty afterwards."""
        out = [dict(zip(_FIELDS, record, strict=True)) for record in self._records]
        self._records.clear()
        return out
