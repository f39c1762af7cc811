"""Server settings: read once from TASKTIDE_* variables at the entry point, then passed down."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tasktide_services.common.tls import TlsSettings


def _positive(key: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{key} must be a positive number of seconds, got {value!r}")
    return value


def _flag(env: Mapping[str, str], key: str) -> bool | None:
    """A yes/no setting; None when it is not set."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{key} must be 1 or 0 (true or false), got {raw!r}")


MIN_MESSAGE_BYTES = 64 * 1024  # the smallest gRPC message limit a server takes (a few tasks of a few KB)
MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's own ceiling


def _message_bytes(key: str, value: float) -> int:
    """The largest gRPC message a server sends or receives: a whole number of bytes between
    MIN_MESSAGE_BYTES and gRPC's ceiling."""
    if not (math.isfinite(value) and value == int(value) and MIN_MESSAGE_BYTES <= value <= MAX_MESSAGE_BYTES):
        raise ValueError(
            f"{key} must be a whole number of bytes from {MIN_MESSAGE_BYTES} to {MAX_MESSAGE_BYTES}, got {value!r}"
        )
    return int(value)


@dataclass(frozen=True)
class Limits:
    max_name_length: int = 200
    max_queue_length: int = 128
    max_payload_bytes: int = 1024 * 1024
    max_batch: int = 10_000
    max_workflow_tasks: int = 250_000  # tasks in one workflow (every stage), submitted in one message
    max_message_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64  # nesting of arrays and objects in JSON args and kwargs
    max_delay_seconds: float = 10 * 366 * 86_400.0  # longest countdown; an ETA at most this far ahead


@dataclass(frozen=True)
class IndexSettings:
    """The results service's visibility index of tasks (what ListTasks and the dashboard's task list
    read): a task is listed for `retention` seconds after it last changed (an hour by default, as
    long as its timeline; its result stays readable by id for the result expiry); entries live in
    time buckets of `bucket` seconds, each holding at most `max` tasks per namespace (the oldest are
    dropped first). About 270 bytes of Redis per task listed: at most (retention / bucket + 1) * max
    * 270 bytes per namespace (380 MB with these defaults; an hour of 100 tasks/s takes 105 MB)."""

    enabled: bool = True
    retention: float = 3_600.0
    bucket: float = 600.0
    max: int = 200_000


@dataclass(frozen=True)
class ServerSettings:
    address: str = "127.0.0.1:50051"
    redis_url: str = ""  # empty: start an embedded Redis (dev only)
    data_dir: str = ".tasktide"
    scheduler_address: str = ""  # where other services reach the scheduler; default: address
    registry_address: str = ""
    results_address: str = ""
    lease_seconds: float = 30.0
    result_expires: float = 86_400.0
    timeline_expires: float = 3_600.0  # a finished task's events are kept this long (its result: result_expires)
    max_deliveries: int = 5  # a task that killed its worker this many times goes to the dead-letter set
    dead_max: int = 100_000  # dead letters kept per queue at most (the oldest are forgotten first)
    dead_max_age: float = 7 * 86_400.0  # seconds a dead letter is kept
    max_session_credit: int = 100_000  # assignments a worker session may ask for (unused and held)
    tick_seconds: float = 0.1  # delayed-set pump and lease reaper interval
    cancel_grace_seconds: float = 5.0  # a cancelled running task is stopped hard after this
    metrics_address: str = ""  # host:port serving /metrics for Prometheus; empty: no endpoint
    metrics_interval: float = 5.0  # seconds between readings of the queue gauges
    limits: Limits = Limits()
    index: IndexSettings = IndexSettings()
    tls: TlsSettings = TlsSettings()
    auth_key: str = ""  # the token signing key, or @PATH of a file holding it; empty: no tokens checked
    auth_revoked: str = ""  # a file of revoked token ids, one a line
    insecure: bool = False  # listen beyond loopback without TLS and tokens all the same
    allow_eviction: bool = False  # start on a Redis whose maxmemory-policy may evict keys (common/redis_checks.py)
    queue_partitions: tuple[tuple[str, int], ...] = ()  # (queue, N): common/partitions.py
    external_scaler: bool | None = None  # serve KEDA's external scaler; None: `serves_external_scaler`

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        from tasktide_services.common import partitions  # it reads Limits from here

        env = os.environ if env is None else env
        base = cls()

        def num(key: str, default: float) -> float:
            raw = env.get(key)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {raw!r}") from None

        address = env.get("TASKTIDE_LISTEN", "") or env.get("TASKTIDE_ADDRESS", "") or base.address
        return cls(
            address=address,
            redis_url=env.get("TASKTIDE_REDIS_URL", ""),
            data_dir=env.get("TASKTIDE_DATA_DIR", base.data_dir),
            scheduler_address=env.get("TASKTIDE_SCHEDULER_ADDRESS", ""),
            registry_address=env.get("TASKTIDE_REGISTRY_ADDRESS", ""),
            results_address=env.get("TASKTIDE_RESULTS_ADDRESS", ""),
            lease_seconds=num("TASKTIDE_LEASE_SECONDS", base.lease_seconds),
            result_expires=num("TASKTIDE_RESULT_EXPIRES", base.result_expires),
            timeline_expires=_positive(
                "TASKTIDE_TIMELINE_EXPIRES", num("TASKTIDE_TIMELINE_EXPIRES", base.timeline_expires)
            ),
            max_deliveries=int(num("TASKTIDE_MAX_DELIVERIES", base.max_deliveries)),
            dead_max=int(num("TASKTIDE_DEAD_MAX", base.dead_max)),
            dead_max_age=num("TASKTIDE_DEAD_MAX_AGE", base.dead_max_age),
            max_session_credit=int(num("TASKTIDE_MAX_SESSION_CREDIT", base.max_session_credit)),
            tick_seconds=num("TASKTIDE_TICK_SECONDS", base.tick_seconds),
            cancel_grace_seconds=num("TASKTIDE_CANCEL_GRACE_SECONDS", base.cancel_grace_seconds),
            metrics_address=env.get("TASKTIDE_METRICS_ADDRESS", ""),
            metrics_interval=num("TASKTIDE_METRICS_INTERVAL", base.metrics_interval),
            limits=replace(
                base.limits,
                max_payload_bytes=int(num("TASKTIDE_MAX_PAYLOAD_BYTES", base.limits.max_payload_bytes)),
                max_json_depth=int(num("TASKTIDE_MAX_JSON_DEPTH", base.limits.max_json_depth)),
                max_delay_seconds=num("TASKTIDE_MAX_DELAY_SECONDS", base.limits.max_delay_seconds),
                max_workflow_tasks=int(num("TASKTIDE_MAX_WORKFLOW_TASKS", base.limits.max_workflow_tasks)),
                max_message_bytes=_message_bytes(
                    "TASKTIDE_MAX_MESSAGE_BYTES", num("TASKTIDE_MAX_MESSAGE_BYTES", base.limits.max_message_bytes)
                ),
            ),
            index=IndexSettings(
                enabled=env.get("TASKTIDE_INDEX", "1") not in ("0", "false", "no"),
                retention=num("TASKTIDE_INDEX_RETENTION", base.index.retention),
                bucket=num("TASKTIDE_INDEX_BUCKET", base.index.bucket),
                max=int(num("TASKTIDE_INDEX_MAX", base.index.max)),
            ),
            tls=TlsSettings(
                cert=env.get("TASKTIDE_TLS_CERT", ""),
                key=env.get("TASKTIDE_TLS_KEY", ""),
                ca=env.get("TASKTIDE_TLS_CA", ""),
                client_ca=env.get("TASKTIDE_TLS_CLIENT_CA", ""),
            ),
            auth_key=env.get("TASKTIDE_AUTH_KEY", ""),
            auth_revoked=env.get("TASKTIDE_AUTH_REVOKED", ""),
            insecure=env.get("TASKTIDE_INSECURE", "") in ("1", "true", "yes"),
            allow_eviction=env.get("TASKTIDE_ALLOW_EVICTION", "") in ("1", "true", "yes"),
            queue_partitions=tuple(partitions.parse(env.get("TASKTIDE_QUEUE_PARTITIONS", "")).items()),
            external_scaler=_flag(env, "TASKTIDE_EXTERNAL_SCALER"),
        )

    def serves_external_scaler(self) -> bool:
        """Whether the registry serves KEDA's external scaler, which answers without a token (KEDA
        cannot send one): as TASKTIDE_EXTERNAL_SCALER says, else only while no tokens are checked."""
        return self.external_scaler if self.external_scaler is not None else not self.auth_key

    def peer(self, which: str) -> str:
        """Address of a peer service ("scheduler", "registry", "results")."""
        return str(getattr(self, f"{which}_address")) or self.address

    def exposure_problem(self) -> str:
        """Why listening on `address` as set up would expose the platform, or "" when it would not:
        beyond loopback a server needs TLS and tokens, unless told `insecure`."""
        host = self.address.rsplit(":", 1)[0].strip("[]")
        local = self.address.startswith("unix:") or host in ("localhost", "::1") or host.startswith("127.")
        if self.insecure or local:
            return ""
        missing = [name for name, ok in (("TLS", self.tls.enabled), ("tokens", bool(self.auth_key))) if not ok]
        if not missing:
            return ""
        return (
            f"refusing to listen on {self.address} without {' and '.join(missing)} "
            "(set TASKTIDE_TLS_CERT/TASKTIDE_TLS_KEY and TASKTIDE_AUTH_KEY, or pass --insecure)"
        )
