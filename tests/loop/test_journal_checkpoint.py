"""Journal and checkpoints survive crashes at any point without losing or repeating lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loop.checkpoint import Checkpoints, load_state, save_state
from loop.journal import Journal


def rec(i: int) -> dict:
    return {"iteration": i, "train/return_mean": float(i), "bad": float("nan")}


def test_journal_appends_strict_json_lines(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    for i in range(3):
        j.append(rec(i))
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [0, 1, 2]
    assert json.loads(lines[0])["bad"] is None  # NaN is not JSON


def test_recover_drops_torn_line_and_restores_the_checkpointed_record(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.append(rec(0))
    j.append(rec(1))
    with path.open("a") as f:
        f.write('{"iteration": 2, "train/ret')  # killed mid-write
    # The checkpoint of iteration 2 completed but its journal line did not.
    kept = j.recover(rec(2))
    assert [r["iteration"] for r in kept] == [0, 1, 2]
    assert [r["iteration"] for r in j.records()] == [0, 1, 2]
    # Recovering again is a no-op.
    assert [r["iteration"] for r in j.recover(rec(2))] == [0, 1, 2]


def test_recover_without_checkpoint_empties_the_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.append(rec(0))
    assert j.recover(None) == []
    assert j.records() == []


def test_checkpoint_is_published_only_when_complete(tmp_path: Path) -> None:
    ck = Checkpoints(tmp_path / "checkpoints", keep=2)
    assert ck.latest() is None
    for i in range(3):
        ck.save(i, lambda d, i=i: save_state(d / "state.pt", {"i": i, "t": torch.ones(2) * i}))
    latest = ck.latest()
    assert latest is not None and latest.name == "iter-000002"
    assert load_state(latest / "state.pt")["i"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("iter-*")) == [
        "iter-000001",
        "iter-000002",
    ]

    def crash(d: Path) -> None:
        (d / "partial").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ck.save(3, crash)
    assert ck.latest().name == "iter-000002"
