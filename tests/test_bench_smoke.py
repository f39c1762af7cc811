"""The benchmark's quick mode runs end to end (tasktide side) and prints well-formed figures.

No timing is asserted: the figures only have to exist and be positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "throughput",
    "submit",
    "submit_direct",
    "submit_pipelined",
    "latency",
    "cpu_bulk",
    "cpu_one_by_one",
    "redis_memory",
    "worker_rss",
    "secure_throughput",
    "secure_latency",
    "secure_cost",
    "index_memory",
    "throughput_index_off",
    "throughput_index_on",
    "producers_threads",
    "producers_processes",
    "latency_under_load",
    "canvas_group",
    "canvas_chord",
    "canvas_chain",
}


def test_bench_quick_tasktide(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "tasktide", "--work-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # the many-producer rows start five processes, the canvas rows a platform of their own
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {r["workload"] for r in rows} == WORKLOADS
    for r in rows:
        assert r["celery"] is None and r["ratio"] is None
        figures = r["tasktide"]
        assert figures, r
        for name, value in figures.items():
            assert isinstance(value, float) and value > 0, (r["workload"], name, value)
    assert "| workload |" in proc.stdout
