"""`python -m bench --only footprint` runs end to end, tasktide and Celery, and prints its table.

No figure is asserted beyond being there: the counts are tiny (the bench's own runs give them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_footprint_tiny(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench", "--only", "footprint", "--quick", "--scale", "0.1"]
    proc = subprocess.run([*argv, "--work-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| per task | tasktide | celery |" in out
    for row in ("Redis commands, one by one", "Redis CPU, one by one (us)", "bytes kept per finished task"):
        (line,) = [x for x in out.splitlines() if x.startswith(f"| {row} |")]
        assert all(cell.strip() not in ("", "-") for cell in line.split("|")[2:4]), line
    for kind in ("delayed task", "retried task", "two-step chain", "schedule occurrence"):
        assert f"| {kind} |" in out
    assert "script results.record" in out  # the breakdown names tasktide's scripts
