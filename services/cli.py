"""Server commands of `tasktide`: dev, scheduler, registry, results.

`tasktide dev` hosts every service in one process on one port, with an embedded Redis when
TASKTIDE_REDIS_URL is unset (data in --data-dir, append-only persistence on). With --demo it also
starts a worker for the example app and the web dashboard, and submits tasks whose results stream in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from tasktide import ConfigurationError
from tasktide_services.common.auth import DEFAULT_NAMESPACE, AuthError, mint, read_key
from tasktide_services.common.grpc_core import restart_for_serving
from tasktide_services.common.redis_checks import EvictionPolicyError, check_redis
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_server import LocalRedis, start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.common.tls import TlsError
from tasktide_services.observability import observe
from tasktide_services.server import ALL, start

log = logging.getLogger("tasktide")


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"tasktide {command}")
    p.add_argument("--address", help="host:port to listen on (default: $TASKTIDE_LISTEN, 127.0.0.1:50051)")
    p.add_argument("--redis-url", help="Redis to use (default: $TASKTIDE_REDIS_URL)")
    p.add_argument(
        "--metrics-address", help="host:port serving /metrics for Prometheus (default: $TASKTIDE_METRICS_ADDRESS)"
    )
    p.add_argument("--tls-cert", help="PEM certificate to serve TLS with (default: $TASKTIDE_TLS_CERT)")
    p.add_argument("--tls-key", help="its private key (default: $TASKTIDE_TLS_KEY)")
    p.add_argument("--tls-ca", help="CA that signs the other services (default: $TASKTIDE_TLS_CA)")
    p.add_argument(
        "--tls-client-ca", help="require client certificates signed by this CA (default: $TASKTIDE_TLS_CLIENT_CA)"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback without TLS and TASKTIDE_AUTH_KEY all the same",
    )
    if command == "dev":
        p.add_argument("--data-dir", help="embedded Redis data folder (default: .tasktide)")
        p.add_argument(
            "--demo",
            nargs="?",
            const="tasktide_services.demo_app:app",
            default=None,
            metavar="MODULE:APP",
            help="also run a worker for MODULE:APP and the dashboard, and submit demo tasks",
        )
        p.add_argument("--demo-tasks", type=int, default=200)
    return p


async def _serve(settings: ServerSettings, which: tuple[str, ...], demo: str | None, demo_tasks: int) -> int:
    embedded: LocalRedis | None = None
    url = settings.redis_url
    if not url:
        local = await asyncio.to_thread(start_redis, settings.data_dir)
        embedded, url = local, local.url
        log.info("embedded Redis on %s, data in %s", url, local.data_dir)
    obs = observe(settings, which)
    try:
        redis = await connect(url)
        try:
            await check_redis(redis, settings.allow_eviction)
        except EvictionPolicyError:
            await redis.aclose()
            raise
        running = await start(settings, redis, which, obs.hooks)
        name = "dev" if which == ALL else which[0]
        print(f"tasktide {name} listening on {running.address}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        demo_task = None
        if demo:
            from tasktide_services.demo import run_demo

            token = dashboard_token = ""
            if settings.auth_key:  # the demo's worker and client, and its dashboard, get tokens of their own
                key = read_key(settings.auth_key)
                token = mint(key, namespace=DEFAULT_NAMESPACE, role="worker", subject="demo")
                dashboard_token = mint(key, namespace=DEFAULT_NAMESPACE, role="admin", subject="demo-dashboard")
            demo_task = asyncio.create_task(run_demo(running.address, demo, demo_tasks, token, dashboard_token))
        await stop.wait()
        if demo_task is not None:
            demo_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await demo_task
        await running.stop()
        await redis.aclose()
        return 0
    finally:
        obs.shutdown()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (a server dependency on Linux): measured about 15 %
    more tasks per second than the default loop (docs/performance.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str], entry: bool = False) -> int:
    """`entry`: argv is the process's own command line, so a serving command may start the process
    again with gRPC core set up for serving (common/grpc_core.py); called from Python, it does not."""
    command, rest = argv[0], argv[1:]
    if command == "dashboard":
        from tasktide_services.dashboard.main import main as dashboard

        return dashboard(rest)
    if command == "token":
        from tasktide_services.token_cli import main as token

        return token(rest)
    args = _parser(command).parse_args(rest)
    if entry and (command == "dev" or command in ALL):
        restart_for_serving()
    try:
        settings = ServerSettings.from_env()
    except ValueError as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        return 2
    if args.address:
        settings = replace(settings, address=args.address)
    if args.redis_url:
        settings = replace(settings, redis_url=args.redis_url)
    if args.metrics_address:
        settings = replace(settings, metrics_address=args.metrics_address)
    tls = settings.tls
    settings = replace(
        settings,
        tls=replace(
            tls,
            cert=args.tls_cert or tls.cert,
            key=args.tls_key or tls.key,
            ca=args.tls_ca or tls.ca,
            client_ca=args.tls_client_ca or tls.client_ca,
        ),
        insecure=settings.insecure or args.insecure,
    )
    problem = settings.exposure_problem()
    if "," in settings.address:  # TASKTIDE_ADDRESS may list the replicas clients reach
        problem = f"cannot listen on the list {settings.address!r}: set TASKTIDE_LISTEN (or --address) to one address"
    if problem:
        print(f"tasktide {command}: {problem}", file=sys.stderr)
        return 2
    if command == "dev":
        if args.data_dir:
            settings = replace(settings, data_dir=args.data_dir)
        which: tuple[str, ...] = ALL
        demo, demo_tasks = args.demo, args.demo_tasks
    elif command in ALL:
        if not settings.redis_url:
            print(
                f"tasktide {command}: set TASKTIDE_REDIS_URL (or --redis-url); only `tasktide dev` embeds Redis",
                file=sys.stderr,
            )
            return 2
        which, demo, demo_tasks = (command,), None, 0
    else:
        print(f"tasktide: '{command}' is not available yet", file=sys.stderr)
        return 2
    try:
        return run_loop(_serve(settings, which, demo, demo_tasks))
    except (AuthError, TlsError, EvictionPolicyError, ConfigurationError) as exc:
        print(f"tasktide {command}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"tasktide {command}: {exc}", file=sys.stderr)
        return 3
