"""A server refuses a Redis that may evict its keys, and says what a Redis without the append-only
file loses on a crash (services/common/redis_checks.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import eventually, spawn
from tests.processes import ROOT, stop


def _serve(tmp_path: Path, url: str, **env: str) -> tuple[subprocess.Popen[str], Path, Path]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc = spawn(
        "scheduler",
        env={"TASKTIDE_REDIS_URL": url, "TASKTIDE_LISTEN": f"unix:{tmp_path}/s.sock", **env},
        cwd=ROOT,
        stdout=out.open("w"),
        stderr=err.open("w"),
    )
    return proc, out, err


def test_refuses_an_evicting_redis_unless_allowed(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", appendonly=True)
    try:
        redis.Redis(port=server.port).config_set("maxmemory-policy", "allkeys-lru")
        proc, _, err = _serve(tmp_path, server.url)
        assert proc.wait(60) == 2
        message = err.read_text()
        assert "maxmemory-policy allkeys-lru" in message and "TASKTIDE_ALLOW_EVICTION=1" in message

        proc, out, err = _serve(tmp_path, server.url, TASKTIDE_ALLOW_EVICTION="1")
        try:
            eventually(lambda: "listening on" in out.read_text() or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, err.read_text()
            assert "allkeys-lru (allowed by TASKTIDE_ALLOW_EVICTION)" in err.read_text()
        finally:
            stop([proc])
    finally:
        server.stop()


def test_warns_what_a_redis_without_aof_loses(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", appendonly=False)
    try:
        proc, out, err = _serve(tmp_path, server.url)
        try:
            eventually(lambda: "listening on" in out.read_text() or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, err.read_text()
            assert "without the append-only file" in err.read_text()
            assert "confirmed to their producers" in err.read_text()
        finally:
            stop([proc])
        # With AOF written every second there is nothing to warn about.
        redis.Redis(port=server.port).config_set("appendonly", "yes")
        proc, out, err = _serve(tmp_path, server.url)
        try:
            eventually(lambda: "listening on" in out.read_text() or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, err.read_text()
            assert "append-only" not in err.read_text()
        finally:
            stop([proc])
    finally:
        server.stop()


def test_warns_on_appendfsync_no(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", appendonly=True)
    try:
        redis.Redis(port=server.port).config_set("appendfsync", "no")
        proc, out, err = _serve(tmp_path, server.url)
        try:
            eventually(lambda: "listening on" in out.read_text() or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, err.read_text()
            assert "appendfsync no" in err.read_text()
        finally:
            stop([proc])
    finally:
        server.stop()
