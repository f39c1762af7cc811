"""`python -m bench.record_cost` runs (no platform needed) and prints its two rows.

Times are only checked to be there and positive; the commands per task are exact: one record
script per task and one PUBLISH per call, plus the index's script per bucket when it is on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_record_cost_tiny() -> None:
    argv = [sys.executable, "-m", "bench.record_cost", "--tasks", "50", "--repeats", "2"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines()[1:]:
        index, *cells = (c.strip() for c in line.split("|"))
        rows[index] = [float(c) for c in cells]
    assert set(rows) == {"on", "off"}, proc.stdout
    for events_us, record_us, _, sent in rows.values():
        assert events_us > 0 and record_us > 0 and sent > 0
    assert rows["off"][2] == 1.02  # 50 record scripts and a PUBLISH
    assert rows["on"][2] in (1.04, 1.06)  # and the index's script per bucket (two across an hour's end)
    assert rows["on"][3] > rows["off"][3]
