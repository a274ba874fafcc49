"""What every benchmark script ends with: the JSON file, the table, where it went."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_results(
    benchmark: str,
    results: list[dict[str, Any]],
    out: Path,
    started: float,
    print_table: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Write ``{"benchmark", "results"}`` to ``out``, print the table and the elapsed time
    since ``started`` (a `time.perf_counter` reading)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": benchmark, "results": results}, indent=2) + "\n")
    print_table(results)
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")
