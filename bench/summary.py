"""The one table of `python -m bench`: every row group in the same columns, headed by the run's
date, commit and machine (bench/meta.py), printed and written as Markdown to reports/bench.md.

Columns: the row, n, unit, tasktide's figure, the system compared (Celery, Asynq, BullMQ), its
figure, the ratio tasktide / it, the goal (on that ratio, unless the goal says otherwise) and
whether it is met. A ratio is always tasktide's figure over the other's: above 1 is ahead for a
rate, behind for a time, a CPU cost or bytes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.meta import RunInfo
from bench.polyglot.report import COMPARED, NAMES
from bench.polyglot.report import ROWS as POLYGLOT_ROWS
from bench.workloads import WORKLOADS

REPORT = Path("reports") / "bench.md"
LOAD_ROWS = {"producers_threads", "producers_processes", "latency_under_load"}
TASKTIDE_ONLY = {"index_memory", "throughput_index_off", "throughput_index_on"}  # and the secure_* rows
FLAT = 1.5  # canvas: a member's CPU at n may cost up to this many times its cost at the smallest n


@dataclass(frozen=True)
class Row:
    label: str
    n: str = "-"
    unit: str = ""
    tasktide: str = "-"
    other: str = "-"  # the system compared
    theirs: str = "-"
    ratio: str = "-"
    goal: str = "-"
    met: str = "-"


Group = tuple[str, list[Row]]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _goal(goal: float | None, better: str) -> str:
    return "-" if goal is None else ("≥ " if better == "higher" else "≤ ") + f"{goal:g}x"


def _yes(met: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[met]


def python_groups(rows: list[dict[str, Any]]) -> list[Group]:
    """The rows of bench/report.lines: tasktide against Celery, then many producers and latency
    under load in a group of their own."""
    by_key = {w.key: w for w in WORKLOADS}
    main: list[Row] = []
    load: list[Row] = []
    for r in rows:
        w = by_key[r["workload"]]
        secure = w.key.startswith("secure") or w.key in TASKTIDE_ONLY
        for m in w.metrics:
            label = w.title if len(w.metrics) == 1 else f"{w.title} ({m})"
            ratio = (r["ratio"] or {}).get(m)
            met = None
            if ratio is not None and w.goal is not None:
                met = ratio >= w.goal if w.better == "higher" else ratio <= w.goal
            row = Row(
                label,
                f"{r['n']:,}" if r["n"] else "-",
                w.unit,
                _fmt((r["tasktide"] or {}).get(m)),
                "n/a" if secure else "Celery",
                "-" if secure else _fmt((r["celery"] or {}).get(m)),
                _x(ratio),
                _goal(w.goal, w.better),
                _yes(met),  # per figure: a p50 and a p99 each say whether they meet it
            )
            (load if w.key in LOAD_ROWS else main).append(row)
    return [("tasktide against Celery, Python", main), ("many producers and latency under load", load)]


def _rate(f: dict[str, float] | None) -> str:
    if not f:
        return "-"
    if round(f["rate_min"]) == round(f["rate_max"]):
        return f"{f['rate']:,.0f}"
    return f"{f['rate']:,.0f} ({f['rate_min']:,.0f}-{f['rate_max']:,.0f})"


def canvas_group(rows: list[dict[str, Any]], notes: list[str]) -> Group:
    """Per shape and size: members/s (median and range of the rounds), then the cost per member
    (CPU µs and Redis commands). Goal: a member's CPU flat as n grows (at most FLAT times its
    cost at the shape's smallest n)."""
    from bench.canvas import SHAPES

    out: list[Row] = []
    smallest: dict[str, float] = {}
    for r in rows:
        tt, cel, n = r["tasktide"], r["celery"], r["n"]
        shape = SHAPES[r["workload"]]
        if not cel and r.get("note"):
            notes.append(f"{shape}, n={n:,}: Celery {r['note'].removeprefix('celery: ')}")
        rate = (tt["rate"] / cel["rate"]) if tt and cel else None
        out.append(Row(shape, f"{n:,}", "members/s", _rate(tt), "Celery", _rate(cel), _x(rate)))
        base = smallest.setdefault(r["workload"], tt["cpu_us"]) if tt else None
        goal, met = "-", "-"
        if tt and base and smallest_n(rows, r["workload"]) != n:
            growth = tt["cpu_us"] / base
            goal = f"≤ {FLAT:g}x its cost at n={smallest_n(rows, r['workload']):,}"
            met = f"{_yes(growth <= FLAT)} ({growth:.2f}x)"
        cpu = (tt["cpu_us"] / cel["cpu_us"]) if tt and cel else None
        tt_cpu, cel_cpu = _fmt(_get(tt, "cpu_us")), _fmt(_get(cel, "cpu_us"))
        out.append(Row("  CPU per member", f"{n:,}", "µs", tt_cpu, "Celery", cel_cpu, _x(cpu), goal, met))
        cmds = (tt["redis_cmds"] / cel["redis_cmds"]) if tt and cel and cel["redis_cmds"] else None
        tt_cmds, cel_cmds = _fmt(_get(tt, "redis_cmds")), _fmt(_get(cel, "redis_cmds"))
        out.append(Row("  Redis commands per member", f"{n:,}", "commands", tt_cmds, "Celery", cel_cmds, _x(cmds)))
    return "canvas (group, chord, chain)", out


def smallest_n(rows: list[dict[str, Any]], shape: str) -> int:
    return min(r["n"] for r in rows if r["workload"] == shape)


def _get(f: dict[str, float] | None, key: str) -> float | None:
    return f.get(key) if f else None


def _span(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return _fmt(lo) if _fmt(lo) == _fmt(hi) else f"{_fmt(lo)}-{_fmt(hi)}"


def polyglot_group(results: dict[str, dict[str, list[dict[str, float]]]], skipped: dict[str, str]) -> Group:
    """Go against Asynq and Node.js against BullMQ (bench/polyglot): each figure's range over the
    rounds; ratio: the median of the per-round ratios; goal: tasktide ahead in every round."""
    out: list[Row] = []
    for lang in ("go", "node"):
        label, other = NAMES[lang]
        if lang in skipped and not results.get(lang):
            why = f"skipped: {skipped[lang]}"
            out.append(Row(f"{label}: one-by-one, bulk, end to end, round trip", tasktide=why, other=other, theirs=why))
            continue
        systems = results.get(lang, {})
        ours, theirs, unary = (systems.get(s, []) for s in ("tasktide", COMPARED[lang], "tasktide-unary"))
        parent = ""
        for key, name, unit, higher in POLYGLOT_ROWS:
            if name.startswith(" "):  # a cost row under the row above it
                name = f"{parent}, {name.strip()}"
            else:
                parent = name.removesuffix(" p50").removesuffix(" p99")
            a, b = [r[key] for r in ours if key in r], [r[key] for r in theirs if key in r]
            if not a and not b:
                continue
            ratios = [x / y for x, y in zip(a, b, strict=False) if y]
            ahead = [(q > 1) if higher else (q < 1) for q in ratios]
            met = "-" if not ahead else "yes" if all(ahead) else "no" if not any(ahead) else "mixed"
            goal = ("> 1x" if higher else "< 1x") + " every round"
            ratio = _x(statistics.median(ratios)) if ratios else "-"
            out.append(Row(f"{label}: {name}", "-", unit, _span(a), other, _span(b), ratio, goal, met))
            u = [r[key] for r in unary if key in r]
            if u:
                out.append(Row(f"{label}: {name} (a Submit call per task)", "-", unit, _span(u)))
        if lang in skipped:
            out.append(Row(f"{label}: some runs", other=other, theirs=f"skipped: {skipped[lang]}"))
    return "Go against Asynq, Node.js against BullMQ (bench/polyglot)", out


FOOTPRINT_ROWS = (  # (label, run, metric, unit, goal: at most this many times Celery's figure)
    ("Redis commands per task, one by one", "one_by_one", "commands", "commands", None),
    ("Redis commands per task, bulk", "bulk", "commands", "commands", None),
    ("Redis CPU per task, one by one", "one_by_one", "cpu", "µs", 1.0),
    ("Redis CPU per task, bulk", "bulk", "cpu", "µs", 1.0),
    ("bytes kept per finished task, first hour", "one_by_one", "bytes", "bytes", None),
    ("bytes kept per finished task once the timelines expired", "one_by_one", "bytes_later", "bytes", None),
    ("bytes per finished task, steady state of a day (default expiries)", "one_by_one", "bytes_day", "bytes", 1.0),
    (
        "the same with the task index kept 24 h (TASKTIDE_INDEX_RETENTION=86400)",
        "one_by_one",
        "bytes_day_index_24h",
        "bytes",
        None,
    ),
)


def footprint_group(figures: dict[str, dict[str, Any]], n: int) -> Group:
    """The Redis footprint per task (bench/footprint.py), tasktide against Celery."""
    out = []
    for label, run, metric, unit, most in FOOTPRINT_ROWS:
        a = figures.get("tasktide", {}).get(run, {}).get(metric)
        b = figures.get("celery", {}).get(run, {}).get(metric)
        ratio = a / b if a is not None and b else None
        goal = f"≤ {most:g}x" if most is not None else "-"
        met = "-" if most is None or ratio is None else "yes" if ratio <= most else "no"
        out.append(Row(label, f"{n:,}", unit, _fmt(a), "Celery", _fmt(b), _x(ratio), goal, met))
    return "Redis footprint per task (bench/footprint.py)", out


def skipped_group(title: str, why: str) -> Group:
    return title, [Row(f"skipped: {why}")]


def render(info: RunInfo, groups: list[Group], notes: list[str], seconds: float | None) -> str:
    """The header, the table (a bold row opens each group) and the notes, as Markdown."""
    out = [info.header(seconds), ""]
    out.append("| row | n | unit | tasktide | compared with | its figure | tasktide / it | goal | met |")
    out.append("|---|---:|---|---:|---|---:|---:|---|---|")
    for title, rows in groups:
        out.append(f"| **{title}** | | | | | | | | |")
        for r in rows:
            cells = (r.label, r.n, r.unit, r.tasktide, r.other, r.theirs, r.ratio, r.goal, r.met)
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if notes:
        out += ["", "Notes:", ""]
        out += [f"- {note}" for note in notes]
    return "\n".join(out)


def write(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path
