"""A deterministic policy exported from the learner: plain torch, no Ray needed to run it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}


class MLPPolicy:
    """Mean action of a Gaussian MLP policy, mapped to the env's action bounds.

    The network is the actor half of the learner's RL module (encoder layers, then the pi
    head, whose first `act_dim` outputs are the action mean). When the learner trains in a
    normalized action space, the mean is unsquashed from [-1, 1] to [low, high] the way RLlib
    does it for the env; either way the result is clipped to the bounds.

    Args:
        layers: `(weight, bias)` pairs, first layer first; weight is `out x in`.
        activation: hidden-layer activation name (`tanh`, `relu`, `silu`).
        low: lower action bounds, shape `act_dim`.
        high: upper action bounds, shape `act_dim`.
        normalized_actions: whether the network's outputs live in [-1, 1].
    """

    def __init__(
        self,
        layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
        activation: str,
        low: np.ndarray,
        high: np.ndarray,
        normalized_actions: bool,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        modules: list[nn.Module] = []
        for i, (w, b) in enumerate(layers):
            linear = nn.Linear(w.shape[1], w.shape[0], dtype=torch.float32)
            with torch.no_grad():
                linear.weight.copy_(w)
                linear.bias.copy_(b)
            modules.append(linear)
            if i < len(layers) - 1:
                modules.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*modules).eval()
        self.activation = activation
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.normalized_actions = normalized_actions
        self.act_dim = int(self.low.shape[0])

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Actions for observations: `obs_dim` -> `act_dim`, or `b x obs_dim` -> `b x act_dim`."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.ndim == 1
        out = self.net(x[None] if single else x)[:, : self.act_dim].double().numpy()
        if self.normalized_actions:
            out = self.low + (out + 1.0) * (self.high - self.low) / 2.0
        out = np.clip(out, self.low, self.high)
        return out[0] if single else out

    def save(self, path: str | Path) -> None:
        """Write the weights and bounds to one file, loadable with `weights_only=True`."""
        layers = [m for m in self.net if isinstance(m, nn.Linear)]
        payload = {
            "weights": [m.weight.detach().clone() for m in layers],
            "biases": [m.bias.detach().clone() for m in layers],
            "activation": self.activation,
            "low": torch.as_tensor(self.low),
            "high": torch.as_tensor(self.high),
            "normalized_actions": self.normalized_actions,
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> MLPPolicy:
        """Read a policy written by `save`."""
        p = torch.load(path, map_location="cpu", weights_only=True)
        return cls(
            list(zip(p["weights"], p["biases"], strict=True)),
            p["activation"],
            p["low"].numpy(),
            p["high"].numpy(),
            bool(p["normalized_actions"]),
        )
