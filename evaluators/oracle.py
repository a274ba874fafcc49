"""The oracle: a policy trained directly on the reality proxy, cached per reality config.

Its real return is the denominator of the transfer ratio. Training it is expensive, so it is
done once per (reality config, oracle training config) hash and reused by every later run.
Training yields checkpoints; the one with the best proxy return is kept, so the oracle is the
best policy its training found (optimistic by that selection, which suits an upper bound).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class SavablePolicy(Protocol):
    """A deterministic batched policy that can write itself to one file."""

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...


@dataclass(frozen=True)
class OracleRecord:
    """A cached oracle: where its policy lies and how well it does on the reality proxy."""

    key: str
    real_return: float
    real_return_stderr: float
    episodes: int
    train_env_steps: int
    train_s: float
    spec: dict[str, Any]
    """The reality and training config the key hashes."""
    checkpoint_returns: list[float] = field(default_factory=list)
    """Proxy return of each training checkpoint, in order; the best one is the oracle."""
    checkpoint_env_steps: list[int] = field(default_factory=list)
    """Env steps trained at each checkpoint."""


def oracle_key(spec: Mapping[str, Any]) -> str:
    """Stable short hash of a JSON-able oracle spec (reality config + training config)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=float)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class OracleCache:
    """Oracle policies on disk: `<dir>/<key>/policy.pt` and `oracle.json`, written atomically."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def path(self, key: str) -> Path:
        return self.directory / key

    def get(self, key: str) -> OracleRecord | None:
        """The record under `key`, or None when it was never (completely) written."""
        meta = self.path(key) / "oracle.json"
        if not meta.is_file():
            return None
        return OracleRecord(**json.loads(meta.read_text()))

    def put(self, record: OracleRecord, policy: SavablePolicy) -> None:
        """Store `policy` and `record`; a complete entry appears at once or not at all."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{record.key}-", dir=self.directory))
        try:
            policy.save(tmp / "policy.pt")
            (tmp / "oracle.json").write_text(json.dumps(asdict(record), indent=2))
            final = self.path(record.key)
            if final.exists():  # another run finished the same oracle first: keep theirs
                return
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get_or_train(
        self,
        spec: Mapping[str, Any],
        train: Callable[[], Iterable[tuple[SavablePolicy, int, float]]],
        evaluate: Callable[[SavablePolicy], tuple[float, float, int]],
    ) -> OracleRecord:
        """Return the cached oracle for `spec`, training and evaluating it first if missing.

        Args:
            spec: JSON-able reality config and oracle training config.
            train: trains a policy on the reality proxy, yielding a checkpoint (policy, env
                steps so far, training seconds so far) after each part of its budget.
            evaluate: real-proxy (mean return, stderr, episodes) of a policy.

        Raises:
            ValueError: If `train` yields no checkpoint.
        """
        key = oracle_key(spec)
        cached = self.get(key)
        if cached is not None:
            return cached
        best: tuple[SavablePolicy, tuple[float, float, int]] | None = None
        returns: list[float] = []
        env_steps: list[int] = []
        seconds = 0.0
        for policy, steps, seconds_so_far in train():
            stats = evaluate(policy)
            returns.append(float(stats[0]))
            env_steps.append(int(steps))
            seconds = seconds_so_far
            if best is None or stats[0] > best[1][0]:
                best = (policy, stats)
        if best is None:
            raise ValueError("oracle training yielded no checkpoint")
        policy, (mean, stderr, episodes) = best
        record = OracleRecord(
            key=key,
            real_return=mean,
            real_return_stderr=stderr,
            episodes=episodes,
            train_env_steps=env_steps[-1],
            train_s=seconds,
            spec=json.loads(json.dumps(dict(spec), default=float)),
            checkpoint_returns=returns,
            checkpoint_env_steps=env_steps,
        )
        self.put(record, policy)
        return self.get(key) or record
