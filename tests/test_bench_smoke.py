"""The benchmark's quick mode runs end to end (tasktide side) and prints well-formed figures,
and one table headed by the run's date and commit with every row group, also written as Markdown.

No timing is asserted: the figures only have to exist and be positive.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The quick run starts the platform several times (Python rows, canvas, footprint, Go and Node.js
# programs): a few minutes on a loaded 2-core machine, past the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(600)

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
GROUPS = (
    "tasktide against Celery, Python",
    "many producers and latency under load",
    "canvas (group, chord, chain)",
    "Redis footprint per task",
    "Go against Asynq, Node.js against BullMQ",
)
HEADER = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC, commit [0-9a-f]{7,}( \(dirty\))?, took \d+", re.M)
MACHINE = re.compile(r"^\d+ cores, Python 3\.\d+\.\d+, Redis \d+\.\d+\.\d+, Celery \S+", re.M)


def test_bench_quick_tasktide(tmp_path: Path) -> None:
    report = str(tmp_path / "bench.md")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "tasktide", "--work-dir", str(tmp_path)]
        + ["--report", report],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,  # many-producer rows start five processes; canvas, footprint, Go and Node.js a platform each
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
    text = Path(report).read_text()
    assert text.strip() in proc.stdout  # the printed table is the one written
    assert HEADER.search(text), text[:300]
    assert MACHINE.search(text), text[:300]
    headings = re.findall(r"^\| \*\*(.+?)\*\* \|", text, re.M)
    for group in GROUPS:
        assert any(h.startswith(group) for h in headings), (group, headings)
    table = text.splitlines()
    assert any(line.startswith("| group(add.s(i, 1)") and "| 100 |" in line for line in table)
    assert any(line.startswith("| chord(group of n") for line in table)
    assert any(line.startswith("| chain of n") for line in table)
    assert any(line.startswith("| Redis commands per task, one by one |") for line in table)
    # Go and Node.js: rows with figures where the tools are installed, else a row saying why not.
    for lang in ("Go", "Node.js"):
        assert any(line.startswith(f"| {lang}: ") for line in table), lang
