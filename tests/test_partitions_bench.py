"""`python -m bench --only scaling` runs end to end at a tiny scale and prints well-formed figures.

No timing is asserted: the figures only have to exist, be positive where they count something, and
show strict priority on one partition.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_scaling_at_a_tiny_scale(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--only", "scaling", "--scale", "0.001", "--work-dir", str(tmp_path)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert {"queued", "queues", "delayed", "sessions", "priority", "hot"} <= set(figures)
    assert all(row["bytes_per_task"] > 0 and row["commands_per_task"] > 0 for row in figures["queued"])
    assert [row["queues"] for row in figures["queues"]] == [10]
    assert all(row["reap_commands"] > 0 for row in figures["queues"])
    assert figures["delayed"]["moving"]["tasks_per_s"] > 0
    assert all(r["inverted_share"] == 0 for r in figures["priority"] if r["partitions"] == 1)
    assert {(r["submitted"], r["partitions"]) for r in figures["hot"]} == {
        (how, n) for how in ("bulk", "one by one") for n in (1, 3)
    }
