"""The oracle: a policy trained directly on the reality proxy, cached per reality config.

Its real return is the denominator of the transfer ratio. Training it is expensive, so it is
done once per (reality config, oracle training config) hash and reused by every later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
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
        train: Callable[[], tuple[SavablePolicy, int, float]],
        evaluate: Callable[[SavablePolicy], tuple[float, float, int]],
    ) -> OracleRecord:
        """Return the cached oracle for `spec`, training and evaluating it first if missing.

        Args:
            spec: JSON-able reality config and oracle training config.
            train: trains a policy on the reality proxy; returns (policy, env steps, seconds).
            evaluate: real-proxy (mean return, stderr, episodes) of a policy.
        """
        key = oracle_key(spec)
        cached = self.get(key)
        if cached is not None:
            return cached
        policy, steps, seconds = train()
        mean, stderr, episodes = evaluate(policy)
        record = OracleRecord(
            key=key,
            real_return=mean,
            real_return_stderr=stderr,
            episodes=episodes,
            train_env_steps=steps,
            train_s=seconds,
            spec=json.loads(json.dumps(dict(spec), default=float)),
        )
        self.put(record, policy)
        return self.get(key) or record
