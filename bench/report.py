"""The benchmark's output: one JSON line per workload, then a table."""

from __future__ import annotations

import json
from typing import Any

from bench.workloads import WORKLOADS, Counts, Workload

Figures = dict[str, dict[str, float]]


def _ratio(tt: dict[str, float] | None, cel: dict[str, float] | None, metric: str) -> float | None:
    if not tt or not cel or not cel.get(metric):
        return None
    return tt[metric] / cel[metric]


def _met(w: Workload, ratios: dict[str, float | None]) -> bool | None:
    if w.goal is None or any(r is None for r in ratios.values()):
        return None
    if w.better == "higher":
        return all(r >= w.goal for r in ratios.values())  # type: ignore[operator]
    return all(r <= w.goal for r in ratios.values())  # type: ignore[operator]


def lines(tasktide: Figures | None, celery: Figures | None, counts: Counts) -> list[dict[str, Any]]:
    out = []
    for w in WORKLOADS:
        tt = tasktide.get(w.key) if tasktide else None
        cel = celery.get(w.key) if celery else None
        ratios = {m: _ratio(tt, cel, m) for m in w.metrics}
        out.append(
            {
                "workload": w.key,
                "n": w.n(counts),
                "unit": w.unit,
                "tasktide": tt,
                "celery": cel,
                "ratio": ratios if tt and cel else None,
                "better": w.better,
                "goal": w.goal,
                "goal_met": _met(w, ratios),
            }
        )
    return out


def json_lines(rows: list[dict[str, Any]]) -> str:
    def rounded(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    return "\n".join(json.dumps(rounded(r), separators=(", ", ": ")) for r in rows)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per workload and metric."""
    by_key = {w.key: w for w in WORKLOADS}
    head = "| workload | n | unit | tasktide | Celery | tasktide / Celery | goal | met |"
    out = [head, "|---|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        w = by_key[r["workload"]]
        for m in w.metrics:
            label = w.title if len(w.metrics) == 1 else f"{w.title} ({m})"
            ratio = (r["ratio"] or {}).get(m)
            goal = "-" if w.goal is None else ("≥ " if w.better == "higher" else "≤ ") + f"{w.goal:g}x"
            met = {True: "yes", False: "no", None: "-"}[r["goal_met"]]
            celery = "n/a" if w.key.startswith("secure") else _fmt((r["celery"] or {}).get(m))
            out.append(
                f"| {label} | {r['n'] or '-'} | {w.unit} | {_fmt((r['tasktide'] or {}).get(m))} "
                f"| {celery} | {'-' if ratio is None else f'{ratio:.2f}x'} | {goal} | {met} |"
            )
    return "\n".join(out)
