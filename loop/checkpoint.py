"""Atomic checkpoints: each iteration's state is written aside, then published by rename."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

LATEST = "LATEST"


class Checkpoints:
    """`checkpoints/iter-NNNNNN/` directories plus a `LATEST` pointer file.

    A checkpoint is built in a hidden temporary directory, renamed into place, and only then
    named by `LATEST` (itself replaced atomically), so `latest()` never sees a partial one.
    """

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def save(self, iteration: int, write: Callable[[Path], None]) -> Path:
        """Create the checkpoint of `iteration`: `write(tmp_dir)` fills it, then it is published."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"iter-{iteration:06d}"
        tmp = self.directory / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        final = self.directory / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = self.directory / f".{LATEST}.tmp"
        pointer.write_text(name)
        with pointer.open() as f:
            os.fsync(f.fileno())
        os.replace(pointer, self.directory / LATEST)
        self._prune(keep_name=name)
        return final

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        pointer = self.directory / LATEST
        if not pointer.is_file():
            return None
        path = self.directory / pointer.read_text().strip()
        return path if path.is_dir() else None

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.directory.glob("iter-*") if p.is_dir())
        for path in done[: max(0, len(done) - self.keep)]:
            if path.name != keep_name:
                shutil.rmtree(path, ignore_errors=True)
        for tmp in self.directory.glob(".tmp-iter-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write plain data and tensors loadable with `torch.load(weights_only=True)`."""
    torch.save(state, path)


def load_state(path: Path) -> dict[str, Any]:
    """Read what `save_state` wrote, without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)
