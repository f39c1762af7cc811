"""`python -m bench --only footprint`: what one task costs Redis, tasktide and Celery in the same run.

Per system, on the bench's Redis server (the figures are the server's own counters, so the load of
other processes on the machine does not move them):

- commands per task: the `calls` of every command in INFO commandstats, delta over the run / N
  (the commands a Lua script runs count too: commandstats counts them);
- Redis CPU per task: used_cpu_sys + used_cpu_user of INFO cpu, delta over the run / N (idle
  polling of the system's processes during the run included, for both);
- bytes kept per finished task: used_memory after every task of the one-by-one run is final,
  minus before, / N (results kept at the default expiry: nothing has expired yet), in the first
  hour (timelines kept), once the timelines expired, and in the steady state of traffic over the
  default result expiry (24 h: results of the whole day, timelines of its last hour, index
  entries of its last hour and a half bucket; with the index kept 24 h, its own row);
- a breakdown of one small one-by-one run read with MONITOR: commands per task per script (its
  inner commands included) or per plain command and key prefix.

Then, for tasktide, the same figures for a task with a countdown, a task retried once after its
backoff, a schedule's occurrence and a two-step chain (`extra_rows`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from bench.procs import settle_used_memory

# The bench's own reading of the counters is not the system's work.
OWN_COMMANDS = {"info", "config|resetstat", "memory|usage", "monitor", "echo", "flushdb", "flushall"}
END = "tasktide-footprint-end"
IDLE_SECONDS = 5.0  # each idle window; 1 s with --quick (a smoke run: the figures only have to exist)
QUICK_IDLE_SECONDS = 1.0
TIMELINES = {"tasktide": "tt:r:{*}:ev"}  # kept for their own, shorter retention (results/keys.py)
INDEXES = {"tasktide": "tt:r:ix:*"}  # the task index's buckets: kept for the index retention


@dataclass(frozen=True)
class Snapshot:
    calls: Counter[str]
    cpu: float
    memory: int
    reads: int  # reads from clients (total_reads_processed): about one per round trip
    writes: int  # replies and pub/sub messages written to clients (total_writes_processed)


def snapshot(r: redis.Redis, settle: bool = False) -> Snapshot:
    stats = r.info("commandstats")
    calls: Counter[str] = Counter()
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name not in OWN_COMMANDS:
            calls[name] = int(value["calls"])
    cpu = r.info("cpu")
    memory = settle_used_memory(r) if settle else int(r.info("memory")["used_memory"])
    io = r.info("stats")
    return Snapshot(
        calls,
        float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        memory,
        int(io.get("total_reads_processed", 0)),
        int(io.get("total_writes_processed", 0)),
    )


def per_task(before: Snapshot, after: Snapshot, n: float) -> dict[str, float]:
    """Commands, Redis CPU (us) and bytes kept per task between two snapshots."""
    calls = after.calls.copy()
    calls.subtract(before.calls)
    return {
        "commands": sum(calls.values()) / n,
        "cpu": (after.cpu - before.cpu) / n * 1e6,
        "bytes": (after.memory - before.memory) / n,
        "reads": (after.reads - before.reads) / n,
        "writes": (after.writes - before.writes) / n,
    }


def measured(
    r: redis.Redis, n: int, run: Callable[[], object], timelines: str = "", index: str = ""
) -> dict[str, float]:
    """`run` (which returns once its n tasks are final) between two settled snapshots. With
    `timelines` (a key pattern), the keys of this run matching it are then deleted, as their
    expiry would, and the bytes kept after that are `bytes_later`. With `index` (the pattern of
    the task index's keys), `index_bytes` is what the run added to them (MEMORY USAGE, exact)."""
    kept = set(r.scan_iter(timelines, count=1000)) if timelines else set()  # earlier runs' timelines
    index_before = _usage(r, index)
    before = snapshot(r, settle=True)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    out = per_task(before, snapshot(r, settle=True), n)
    out["rate"] = n / seconds if seconds > 0 else 0.0
    out["index_bytes"] = (_usage(r, index) - index_before) / n
    if timelines:
        for keys in _batches(k for k in r.scan_iter(timelines, count=1000) if k not in kept):
            r.unlink(*keys)
    out["bytes_later"] = (snapshot(r, settle=True).memory - before.memory) / n
    out["bytes_day"] = steady_state(out["bytes"], out["bytes_later"], out["index_bytes"])
    out["bytes_day_index_24h"] = steady_state(out["bytes"], out["bytes_later"], out["index_bytes"], 86_400.0)
    return out


def _usage(r: redis.Redis, pattern: str) -> int:
    return sum(int(r.memory_usage(k, samples=0) or 0) for k in r.scan_iter(pattern, count=1000)) if pattern else 0


def steady_state(first_hour: float, later: float, index: float = 0.0, index_retention: float | None = None) -> float:
    """Bytes per finished task in the steady state of traffic kept for the default result expiry:
    every task's result for the whole expiry; its timeline for the timeline expiry only and its
    index entry (`index` of the `later` bytes) for the index retention (`index_retention`, else the
    default) plus half a bucket: the share of the tasks of the window whose timeline and entry are
    still kept."""
    from tasktide_services.common.settings import IndexSettings, ServerSettings

    d, ix = ServerSettings(), IndexSettings()
    keep = ix.retention if index_retention is None else index_retention
    index_share = min(1.0, (keep + ix.bucket / 2) / d.result_expires)
    timeline_share = min(1.0, d.timeline_expires / d.result_expires)
    return later - index * (1.0 - index_share) + (first_hour - later) * timeline_share


def _batches(it: Any, size: int = 500) -> Any:
    batch: list[bytes] = []
    for k in it:
        batch.append(k)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Monitor:
    """Every command Redis runs while open (MONITOR), tallied per script or per command."""

    def __init__(self, url: str, names: dict[str, str]) -> None:
        self.url = url
        self.names = names  # script sha -> its name
        self.lines: list[tuple[str, str]] = []  # (client type, command text)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _listen(self) -> None:
        client = redis.Redis.from_url(self.url)
        with client.monitor() as m:
            self._ready.set()
            for cmd in m.listen():
                text = str(cmd.get("command", ""))
                if END in text:
                    return
                self.lines.append((str(cmd.get("client_type", "")), text))

    def __exit__(self, *exc: object) -> None:
        redis.Redis.from_url(self.url).echo(END)
        if self._thread is not None:
            self._thread.join(10)

    def tally(self) -> Counter[str]:
        """Commands per label. A script's label is its name, and the commands it runs (lines from
        the 'lua' client, which MONITOR shows right after the EVALSHA that ran them) count under it;
        a plain command's label is its name and the prefix of its first key."""
        out: Counter[str] = Counter()
        label = "?"
        for client, text in self.lines:
            words = text.split()
            if not words:
                continue
            cmd = words[0].lower()
            if client == "lua":
                out[label] += 1
                continue
            if cmd in ("evalsha", "eval") and len(words) > 1:
                label = "script " + self.names.get(words[1], words[1][:8])
                out[label] += 1
            elif cmd not in OWN_COMMANDS:
                label = f"{cmd} {_prefix(words[1]) if len(words) > 1 else ''}".strip()
                out[label] += 1
        return out


_ID = re.compile(r"\{[^}]*\}|[0-9a-f]{8}-?[0-9a-f-]{8,}|\d{6,}")


def _prefix(key: str) -> str:
    """A key with its ids left out: tt:r:{id}:st -> tt:r:{}:st."""
    return _ID.sub("{}", key)[:40]


def script_names() -> dict[str, str]:
    """The sha of every tasktide script -> its service and name."""
    from tasktide_services.results.store import SCRIPTS as RESULTS
    from tasktide_services.scheduler.store import SCRIPTS as SCHEDULER
    from tasktide_services.worker.store import SCRIPTS as REGISTRY

    out: dict[str, str] = {}
    for service, file in (("results", RESULTS), ("scheduler", SCHEDULER), ("registry", REGISTRY)):
        for name, source in file.sources().items():
            import hashlib

            out[hashlib.sha1(source.encode()).hexdigest()] = f"{service}.{name}"
    return out


def footprint(
    system: Any, url: str, n: int, sample: int, log: Callable[[str], None], idle_seconds: float = IDLE_SECONDS
) -> dict[str, Any]:
    """The figures of one started system (with its workers): one by one, bulk, the breakdown, and
    what it does while idle, over windows of `idle_seconds`."""
    r = redis.Redis.from_url(url)
    log(f"[{system.name}] footprint, idle for {idle_seconds:g} s")
    before = snapshot(r)
    time.sleep(idle_seconds)
    idle = per_task(before, snapshot(r), idle_seconds)  # per second
    log(f"[{system.name}] footprint, one by one, n={n}")
    one = measured(r, n, lambda: system.submit_rate(n), TIMELINES.get(system.name, ""), INDEXES.get(system.name, ""))
    log(f"[{system.name}] footprint, bulk, n={n}")
    bulk = measured(r, n, lambda: system.throughput(n))
    log(f"[{system.name}] footprint, breakdown with MONITOR, n={sample}")
    with Monitor(url, script_names()) as mon:
        system.submit_rate(sample)
    breakdown = {k: v / sample for k, v in sorted(mon.tally().items(), key=lambda kv: -kv[1])}
    log(f"[{system.name}] footprint, idle commands with MONITOR for {idle_seconds:g} s")
    with Monitor(url, script_names()) as mon:
        time.sleep(idle_seconds)
    idle_breakdown = {k: v / idle_seconds for k, v in sorted(mon.tally().items(), key=lambda kv: -kv[1])}
    return {"one_by_one": one, "bulk": bulk, "idle": idle, "breakdown": breakdown, "idle_breakdown": idle_breakdown}


def table(figures: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per figure, a column per system."""
    systems = list(figures)
    out = [f"| per task | {' | '.join(systems)} |", "|---|" + "---:|" * len(systems)]
    rows = [
        ("Redis commands, one by one", "one_by_one", "commands", "{:.1f}"),
        ("Redis CPU, one by one (us)", "one_by_one", "cpu", "{:.0f}"),
        ("tasks/s, one by one (idle polling per task = idle CPU/s / this)", "one_by_one", "rate", "{:.0f}"),
        ("client reads (round trips), one by one", "one_by_one", "reads", "{:.1f}"),
        ("client writes (replies, messages), one by one", "one_by_one", "writes", "{:.1f}"),
        ("bytes kept per finished task", "one_by_one", "bytes", "{:,.0f}"),
        ("bytes kept once the timelines expired", "one_by_one", "bytes_later", "{:,.0f}"),
        ("of which the task index (while kept)", "one_by_one", "index_bytes", "{:,.0f}"),
        ("bytes per finished task, steady state of a day (default expiries)", "one_by_one", "bytes_day", "{:,.0f}"),
        ("the same with the index kept 24 h", "one_by_one", "bytes_day_index_24h", "{:,.0f}"),
        ("Redis commands, bulk", "bulk", "commands", "{:.1f}"),
        ("Redis CPU, bulk (us)", "bulk", "cpu", "{:.0f}"),
        ("idle: Redis commands per second", "idle", "commands", "{:.1f}"),
        ("idle: Redis CPU per second (us)", "idle", "cpu", "{:.0f}"),
    ]
    for title, run, metric, fmt in rows:
        cells = [fmt.format(figures[s][run][metric]) if run in figures[s] else "-" for s in systems]
        out.append(f"| {title} | {' | '.join(cells)} |")
    for s in systems:
        extra = figures[s].get("extra", {})
        if not extra:
            continue
        out += ["", f"{s}, other kinds of task (per task, occurrence or workflow):", ""]
        out += ["| kind | commands | Redis CPU (us) | bytes kept | bytes kept once the timelines expired |"]
        out += ["|---|---:|---:|---:|---:|"]
        for kind, row in extra.items():
            cells = [row.get(m) for m in ("commands", "cpu", "bytes", "bytes_later")]
            out.append(f"| {kind} | " + " | ".join("-" if c is None else f"{c:,.1f}" for c in cells) + " |")
    for s in systems:
        out.append("")
        out.append(f"{s}, one by one, commands per task by script or command (MONITOR):")
        for label, v in figures[s]["breakdown"].items():
            out.append(f"    {v:6.2f}  {label}")
        out.append(f"{s}, idle, commands per second by script or command (MONITOR):")
        for label, v in figures[s].get("idle_breakdown", {}).items():
            out.append(f"    {v:6.2f}  {label}")
    return "\n".join(out)
