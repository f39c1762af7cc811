"""The table of `python -m bench.polyglot`: each figure's range over the rounds, and the range of
the per-round ratios tasktide / the other system (for times and CPU, the other's / tasktide's, so
above 1 always means tasktide is ahead). CPU is the sum over the producer and worker process, the
tasktide server and Redis, read from /proc and INFO cpu, so it depends little on the machine's load."""

from __future__ import annotations

COMPARED = {"go": "asynq", "node": "bullmq"}
NAMES = {"go": ("Go", "Asynq"), "node": ("Node.js", "BullMQ")}

ROWS = [  # (key, label, unit, higher is better); cpu_us_*: CPU of client, server and Redis together
    ("one_by_one", "one-by-one submit, confirmed", "tasks/s", True),
    ("cpu_us_one_by_one", "  CPU per task", "µs", False),
    ("one_by_one_x8", "one-by-one submit, 8 producers", "tasks/s", True),
    ("cpu_us_one_by_one_x8", "  CPU per task", "µs", False),
    ("bulk", "bulk submit", "tasks/s", True),
    ("cpu_us_bulk", "  CPU per task", "µs", False),
    ("end_to_end", "end to end (submit + run no-op)", "tasks/s", True),
    ("cpu_us_end_to_end", "  CPU per task", "µs", False),
    ("rtt_p50_ms", "idle round trip p50", "ms", False),
    ("rtt_p99_ms", "idle round trip p99", "ms", False),
    ("cpu_us_rtt", "  CPU per round trip", "µs", False),
]

Runs = list[dict[str, float]]


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    fmt = (lambda v: f"{v:,.0f}") if hi >= 100 else (lambda v: f"{v:.2f}")
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def rows(results: dict[str, dict[str, Runs]]) -> list[tuple[str, str, str, str, str, str]]:
    """(row, tasktide, tasktide with a Submit call per task, other, ratio range, goal met)."""
    out = []
    for lang, systems in results.items():
        ours, theirs = systems.get("tasktide", []), systems.get(COMPARED[lang], [])
        unary = systems.get("tasktide-unary", [])
        label, other = NAMES[lang]
        for key, name, unit, higher in ROWS:
            a = [r[key] for r in ours if key in r]
            b = [r[key] for r in theirs if key in r]
            if not a or not b:
                continue
            u = [r[key] for r in unary if key in r]
            ratios = [(x / y if higher else y / x) for x, y in zip(a, b, strict=False) if x and y]
            met = "yes" if min(ratios) > 1 else ("no" if max(ratios) < 1 else "mixed")
            row = f"{label}: {name} ({unit}) vs {other}"
            out.append((row, _span(a), _span(u) if u else "", _span(b), f"{_span(ratios)}x", met))
    return out


def table(results: dict[str, dict[str, Runs]]) -> str:
    head = ("workload", "tasktide", "tasktide, unary Submit", "other", "ratio", "beats it")
    body = rows(results)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)])
