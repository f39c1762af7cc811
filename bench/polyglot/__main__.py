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
from pathlib import Path

import grpc
import redis

from bench.polyglot.report import COMPARED, table
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
        raise SystemExit("go is not on PATH")
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


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(line), flush=True)
    figures: dict[str, float] = line["figures"]
    return figures


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    langs = [args.only] if args.only else ["go", "node"]
    counts = [*_counts(args.quick), "--concurrency", str(args.concurrency)]
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktide-polyglot-")))
        work.mkdir(parents=True, exist_ok=True)
        server = start_redis(work / "redis", appendonly=False)
        stack.callback(server.stop)
        redis_addr = f"127.0.0.1:{server.port}"
        redis.Redis(port=server.port).flushall()
        address = f"127.0.0.1:{free_port()}"
        dev_argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "dev", "--address", address)
        dev = Proc("tasktide-dev", [*dev_argv, "--redis-url", f"redis://{redis_addr}/{DB['tasktide']}"], work)
        stack.callback(dev.stop)
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=60)
        _log(f"redis-server at {redis_addr}, tasktide at {address}; logs in {work}")
        programs: dict[str, tuple[list[str], Path]] = {}
        if "go" in langs:
            _log("building the Go program")
            programs["go"] = ([str(_build_go(work))], GO_DIR)  # Go's flag package takes --name too
        if "node" in langs:
            programs["node"] = ([_node_ready(), "bench.js"], NODE_DIR)
        for r in range(args.rounds):
            for lang in langs:
                base, cwd = programs[lang]
                other = COMPARED[lang]
                for system in ["tasktide", other] if r % 2 == 0 else [other, "tasktide"]:
                    if system != "tasktide":
                        redis.Redis(port=server.port, db=DB[system]).flushdb()
                    flags = ["--system", system, "--tag", f"{lang}-{system}-{r}", "--address", address]
                    server_pid = str(dev.pid) if system == "tasktide" else "0"  # its CPU time is counted
                    flags += ["--redis", redis_addr, "--db", str(DB[system]), "--server-pid", server_pid, *counts]
                    _log(f"round {r + 1}/{args.rounds}: {lang} {system}")
                    results.setdefault(lang, {}).setdefault(system, []).append(_run([*base, *flags], cwd, {}))
                # One-by-one rows again with a Submit call per task: what the stream gains.
                _log(f"round {r + 1}/{args.rounds}: {lang} tasktide, unary submit")
                flags = ["--system", "tasktide", "--tag", f"{lang}-unary-{r}", "--address", address]
                flags += ["--redis", redis_addr, "--server-pid", str(dev.pid), "--rows", "submit", *counts]
                unary = _run([*base, *flags], cwd, {"TASKTIDE_SUBMIT_TRANSPORT": "unary"})
                results[lang].setdefault("tasktide-unary", []).append(unary)
    print()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}, {_commit()}")
    print(table(results))
    return 0


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return f"commit {proc.stdout.strip()}" if proc.returncode == 0 else "commit unknown"


if __name__ == "__main__":
    raise SystemExit(main())
