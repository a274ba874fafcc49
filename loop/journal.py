"""The run's append-only journal: one JSON line per completed iteration."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """Non-finite floats become None so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class Journal:
    """`journal.jsonl`: appended and fsynced per iteration, never rewritten.

    A line cut short by a crash is the only thing `recover` removes; a line the checkpoint
    holds but the journal lacks (crash between the two writes) is appended again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        """All complete records, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to disk."""
        line = json.dumps(jsonable(record), allow_nan=False)
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def recover(self, checkpoint_record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Make the journal end exactly at the checkpoint's iteration; return its records.

        Lines after the checkpoint's iteration (written by an iteration whose checkpoint never
        completed) are dropped, since that iteration will run again.
        """
        last = -1 if checkpoint_record is None else int(checkpoint_record["iteration"])
        kept = [r for r in self.records() if int(r["iteration"]) <= last]
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
        if not self.path.exists() or self.path.read_text() != text:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.path)
        if checkpoint_record is not None and (not kept or kept[-1]["iteration"] < last):
            self.append(checkpoint_record)
            kept.append(json.loads(json.dumps(jsonable(checkpoint_record))))
        return kept
