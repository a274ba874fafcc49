"""Config schema of the learner (merged into the run config under `learner`)."""

from __future__ import annotations

from dataclasses import dataclass, field

VECTORIZE_MODES = ("batched", "sync")
"""Values of `LearnerConfig.vectorize`."""


@dataclass
class LearnerConfig:
    """PPO on RLlib's new API stack; what a researcher varies, the rest derived."""

    algorithm: str = "ppo"
    """RL algorithm; `ppo` is the one implemented."""
    env_steps_per_iteration: int = 40_000
    """Env steps the learner trains on per loop iteration."""
    num_env_runners: int = 0
    """Remote EnvRunner actors; 0 samples in the driver process (best on 2 cores)."""
    num_envs_per_env_runner: int = 8
    """Sub-envs per EnvRunner (gymnasium vector env)."""
    train_batch_size: int = 4000
    """Env steps per PPO update."""
    minibatch_size: int = 128
    """SGD minibatch size."""
    num_epochs: int = 10
    """Passes over each train batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_param: float = 0.2
    """PPO ratio clip."""
    entropy_coeff: float = 0.0
    """Entropy bonus."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the policy and value networks."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu or silu."""
    normalize_actions: bool = False
    """Train in a [-1, 1] action space (RLlib's default) instead of the env's own units."""
    torch_threads: int = 1
    """Torch intra-op threads in the driver process (PPO update, the sampling forward pass,
    evaluation); 0 keeps torch's default, one per core. The networks are too small to gain
    from a second thread, whose OpenMP worker spins between calls: on 2 cores it took the
    same wall time for 1.8x the CPU, and beside a process spinning on one core a training
    step took 2.4x as long (`benchmarks/learner.py`; beside another training run, 12x)."""
    vectorize: str = "batched"
    """How an EnvRunner steps its sub-envs: `batched` (one `mujoco.batch.Batch` call per step over
    sub-envs with different physics, `generators.vector.BatchedVectorEnv`) or `sync` (RLlib's
    default `SyncVectorEnv`, one env at a time)."""

    def validate(self) -> None:
        """Raise `ValueError("<field>: reason")` for values RLlib would reject later."""
        if self.algorithm != "ppo":
            raise ValueError(f"algorithm: unknown algorithm {self.algorithm!r} (known: ppo)")
        positive = (
            "env_steps_per_iteration",
            "num_envs_per_env_runner",
            "train_batch_size",
            "minibatch_size",
            "num_epochs",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0 (got {getattr(self, name)})")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads: must be >= 0 (got {self.torch_threads})")
        if self.num_env_runners < 0:
            raise ValueError(f"num_env_runners: must be >= 0 (got {self.num_env_runners})")
        if self.minibatch_size > self.train_batch_size:
            raise ValueError("minibatch_size: must be <= train_batch_size")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0 (got {self.lr})")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: must be in (0, 1] (got {self.gamma})")
        if not self.hidden or min(self.hidden) <= 0:
            raise ValueError("hidden: needs at least one positive layer size")
        if self.activation not in ("tanh", "relu", "silu"):
            raise ValueError(f"activation: unknown {self.activation!r} (known: tanh, relu, silu)")
        if self.vectorize not in VECTORIZE_MODES:
            raise ValueError(
                f"vectorize: unknown {self.vectorize!r} (known: {', '.join(VECTORIZE_MODES)})"
            )
