"""`python -m bench.polyglot`: the Go and Node.js clients against Asynq and BullMQ, same Redis, same run.

One Redis server; `tasktide dev` on database 0, Asynq on 1, BullMQ on 2. Each round runs, for each
language, the tasktide program and the other system's program one after the other (which goes
first alternates by round), so both see the same machine load; the table gives each figure's range
over the rounds and the range of the per-round ratios. The programs are bench/polyglot/go
(`go build`) and bench/polyglot/node (`npm install` on first use); their dependencies stay out of
the clients' own modules. Prints one JSON line per program run, then the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc
import redis

from bench.polyglot.report import COMPARED, Runs, table
from bench.procs import ROOT, Proc, python_argv
from tasktide_services.common.redis_server import free_port, start_redis

HERE = Path(__file__).resolve().parent
GO_DIR, NODE_DIR = HERE / "go", HERE / "node"
DB = {"tasktide": 0, "asynq": 1, "bullmq": 2}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.polyglot", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (ranges are over these)")
    p.add_argument("--quick", action="store_true", help="small counts, for development and smoke tests")
    p.add_argument("--only", choices=["go", "node"], help="one language only")
    p.add_argument("--concurrency", type=int, default=8, help="worker concurrency, both systems")
    p.add_argument("--work-dir", type=Path, help="Redis data and process logs (default: a temporary folder)")
    return p


def _counts(quick: bool) -> list[str]:
    if quick:
        return ["--one", "200", "--bulk", "1000", "--e2e", "1000", "--rtt", "50"]
    return ["--one", "2000", "--bulk", "5000", "--e2e", "10000", "--rtt", "300"]


def _build_go(work: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("no go on PATH")
    out = work / "polybench-go"
    env = {**os.environ, "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -mod=mod").strip()}
    subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_DIR, env=env, check=True, timeout=900)
    return out


def _node_ready() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("node and npm must be on PATH")
    client = ROOT / "clients" / "node"
    if not (client / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"], cwd=client, check=True, timeout=900)
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=900)
    return node


def _print(line: str) -> None:
    print(line, flush=True)


def _run(argv: list[str], cwd: Path, env: dict[str, str], emit: Callable[[str], None]) -> dict[str, float]:
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    emit(json.dumps(line))
    figures: dict[str, float] = line["figures"]
    return figures


def available(lang: str) -> str | None:
    """None when `lang`'s program can be run here, else why not ("no go", "no node")."""
    tools = ["go"] if lang == "go" else ["node", "npm"]
    missing = [t for t in tools if shutil.which(t) is None]
    return f"no {' or '.join(missing)}" if missing else None


def measure(
    langs: list[str],
    rounds: int,
    quick: bool,
    concurrency: int,
    work: Path,
    log: Callable[[str], None] = _log,
    emit: Callable[[str], None] = _print,
) -> tuple[dict[str, dict[str, Runs]], dict[str, str]]:
    """Every program run of `rounds` alternating rounds for each language in `langs`, on a Redis
    server and a `tasktide dev` of their own (started here, stopped before returning). Returns the
    figures by language and system, and why a language was skipped (a missing tool, a failed
    build or install): a language that cannot run never stops the others. `emit` gets each
    program run's JSON line."""
    counts = [*_counts(quick), "--concurrency", str(concurrency)]
    results: dict[str, dict[str, Runs]] = {}
    skipped = {lang: why for lang in langs if (why := available(lang))}
    langs = [lang for lang in langs if lang not in skipped]
    if not langs:
        return results, skipped
    with contextlib.ExitStack() as stack:
        server = start_redis(work / "polyglot-redis", appendonly=False)
        stack.callback(server.stop)
        redis_addr = f"127.0.0.1:{server.port}"
        redis.Redis(port=server.port).flushall()
        address = f"127.0.0.1:{free_port()}"
        dev_argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "dev", "--address", address)
        dev = Proc("polyglot-tasktide-dev", [*dev_argv, "--redis-url", f"redis://{redis_addr}/{DB['tasktide']}"], work)
        stack.callback(dev.stop)
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=60)
        log(f"redis-server at {redis_addr}, tasktide at {address}; logs in {work}")
        programs: dict[str, tuple[list[str], Path]] = {}
        for lang in langs:
            try:
                if lang == "go":
                    log("building the Go program")
                    programs["go"] = ([str(_build_go(work))], GO_DIR)  # Go's flag package takes --name too
                else:
                    programs["node"] = ([_node_ready(), "bench.js"], NODE_DIR)
            except (subprocess.SubprocessError, OSError, SystemExit) as exc:
                skipped[lang] = f"{'go build' if lang == 'go' else 'npm ci'} failed: {str(exc)[:120]}"
        for r in range(rounds):
            for lang in programs:
                try:
                    where = (address, redis_addr, server.port, dev.pid)
                    _round(lang, programs[lang], r, rounds, counts, where, results, emit)
                except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                    log(f"{lang}: round {r + 1} failed: {exc}")
                    skipped.setdefault(lang, f"a run failed: {str(exc).splitlines()[0][:120]}")
    return results, skipped


def _round(
    lang: str,
    program: tuple[list[str], Path],
    r: int,
    rounds: int,
    counts: list[str],
    where: tuple[str, str, int, int],
    results: dict[str, dict[str, Runs]],
    emit: Callable[[str], None],
) -> None:
    """Round r of one language: tasktide and the other system (which goes first alternates),
    then tasktide's one-by-one rows with a Submit call per task. `where`: the tasktide address,
    the Redis address and port, the pid of `tasktide dev`."""
    address, redis_addr, redis_port, dev_pid = where
    base, cwd = program
    other = COMPARED[lang]
    for system in ["tasktide", other] if r % 2 == 0 else [other, "tasktide"]:
        if system != "tasktide":
            redis.Redis(port=redis_port, db=DB[system]).flushdb()
        flags = ["--system", system, "--tag", f"{lang}-{system}-{r}", "--address", address]
        server_pid = str(dev_pid) if system == "tasktide" else "0"  # its CPU time is counted
        flags += ["--redis", redis_addr, "--db", str(DB[system]), "--server-pid", server_pid, *counts]
        _log(f"[{lang}] round {r + 1}/{rounds}: {system}")
        results.setdefault(lang, {}).setdefault(system, []).append(_run([*base, *flags], cwd, {}, emit))
    # One-by-one rows again with a Submit call per task: what the stream gains.
    _log(f"[{lang}] round {r + 1}/{rounds}: tasktide, unary submit")
    flags = ["--system", "tasktide", "--tag", f"{lang}-unary-{r}", "--address", address]
    flags += ["--redis", redis_addr, "--server-pid", str(dev_pid), "--rows", "submit", *counts]
    unary = _run([*base, *flags], cwd, {"TASKTIDE_SUBMIT_TRANSPORT": "unary"}, emit)
    results[lang].setdefault("tasktide-unary", []).append(unary)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    langs = [args.only] if args.only else ["go", "node"]
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktide-polyglot-")))
        work.mkdir(parents=True, exist_ok=True)
        results, skipped = measure(langs, args.rounds, args.quick, args.concurrency, work)
    print()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}, {_commit()}")
    print(table(results))
    for lang, why in skipped.items():
        print(f"{lang}: skipped: {why}")
    return 1 if skipped else 0


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return f"commit {proc.stdout.strip()}" if proc.returncode == 0 else "commit unknown"


if __name__ == "__main__":
    raise SystemExit(main())
