"""Client settings, read once from the environment at the entry point and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# How a channel reconnects after its connection fails (the service stopped, restarted, or is out of
# reach): gRPC waits before each new attempt, from RECONNECT_INITIAL_MS, 1.6 times longer after each
# failure (with 20 % jitter), up to RECONNECT_MAX_MS. gRPC's own defaults (1 s up to 120 s) let the
# wait grow to tens of seconds during a long outage, so a producer or a service kept failing
# UNAVAILABLE well after the service it calls was back. One policy for every channel the platform
# makes: the Python client and worker (ClientSettings.channel_options), the services' calls to each
# other (tasktide_services.common.peers), and the same numbers in the Go client (client.go) and the
# Node.js client (connection.js). A channel that needs others may pass its own channel_options.
RECONNECT_INITIAL_MS = 200
RECONNECT_MAX_MS = 5_000
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_INITIAL_MS),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
)

# How a channel learns that the process at the other end froze (SIGSTOP, a host or VM that stopped
# answering): the kernel keeps its connection open, so a call sent there would wait as long as the
# process does. While calls are open, the channel pings every KEEPALIVE_TIME_MS, idle streams too,
# and closes the connection when a ping is not answered within KEEPALIVE_TIMEOUT_MS: its calls fail
# UNAVAILABLE (callers try again, on another replica where there is one), and the channel connects
# again. The platform's servers accept pings every PING_MIN_MS (gRPC's default refuses pings on a
# call that sends no data more often than every 5 minutes, and ends the connection). The same
# policy for every channel: the Python client and worker, the services' calls to each other
# (tasktide_services.common.peers), the Go client (client.go) and the Node.js client
# (connection.js).
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
PING_MIN_MS = 5_000
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),  # the ack's wait: gRPC 1.85 waits a minute otherwise
    ("grpc.http2.max_pings_without_data", 0),  # gRPC's default stops after 2 on an idle stream
)


@dataclass(frozen=True)
class ClientSettings:
    """Where the platform is and how the client talks to it (see from_env for the variables)."""

    # Each address is one address, a DNS name, or a comma list of a service's replicas; calls are
    # balanced round robin over the replicas that are up (_targets.py).
    address: str = DEFAULT_ADDRESS
    scheduler_address: str = ""
    registry_address: str = ""
    results_address: str = ""
    lease_seconds_hint: float = 30.0
    # How a client sends tasks one at a time: "stream" (default: one long-lived SubmitStream shared
    # by all threads or coroutines) or "unary" (a Submit call each). TASKTIDE_SUBMIT_TRANSPORT
    submit_transport: str = ""
    # delay()/submit() return before the platform confirms the task (a handle's id waits for it;
    # Client.flush() waits for all, and the end of the process for up to 10 s): many tasks in flight
    # at once. Tasks not yet confirmed are lost if the process is killed. TASKTIDE_PIPELINED_SUBMIT=1
    pipelined_submit: bool = False
    # Redis of the platform: delay()/submit() then queue a runnable task straight into it, with the
    # scheduler's validation and the registry's script (needs tasktide-server installed here), one
    # Redis round trip instead of a call to the scheduler. Tasks with a countdown or ETA, an
    # idempotency key or a rate limit, batches and workflows still go to the scheduler (over the
    # transport above). TASKTIDE_SUBMIT_REDIS_URL
    submit_redis_url: str = ""
    # Sent as `authorization: Bearer TOKEN` on every call (`tasktide token create`). TASKTIDE_TOKEN
    token: str = ""
    # TLS: the CA that signs the platform's servers (TASKTIDE_TLS_CA), and this client's certificate
    # and key for servers that require client certificates (TASKTIDE_TLS_CERT, TASKTIDE_TLS_KEY).
    # Any of them set: the channels use TLS.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    channel_options: tuple[tuple[str, int], ...] = field(
        default=(
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            *RECONNECT_OPTIONS,
            *KEEPALIVE_OPTIONS,
        )
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str) -> ClientSettings:
        """Settings from TASKTIDE_ADDRESS, TASKTIDE_{SCHEDULER,REGISTRY,RESULTS}_ADDRESS,
        TASKTIDE_SUBMIT_TRANSPORT, TASKTIDE_PIPELINED_SUBMIT, TASKTIDE_SUBMIT_REDIS_URL, TASKTIDE_TOKEN
        and TASKTIDE_TLS_CA / TASKTIDE_TLS_CERT / TASKTIDE_TLS_KEY.

        Args:
            env: the variables (default: os.environ).
            **overrides: address= wins over TASKTIDE_ADDRESS.
        """
        env = os.environ if env is None else env
        address = overrides.get("address") or env.get("TASKTIDE_ADDRESS") or DEFAULT_ADDRESS
        return cls(
            address=address,
            scheduler_address=env.get("TASKTIDE_SCHEDULER_ADDRESS", ""),
            registry_address=env.get("TASKTIDE_REGISTRY_ADDRESS", ""),
            results_address=env.get("TASKTIDE_RESULTS_ADDRESS", ""),
            submit_transport=env.get("TASKTIDE_SUBMIT_TRANSPORT", "").strip().lower(),
            pipelined_submit=env.get("TASKTIDE_PIPELINED_SUBMIT", "").lower() in ("1", "true", "yes"),
            submit_redis_url=env.get("TASKTIDE_SUBMIT_REDIS_URL", ""),
            token=env.get("TASKTIDE_TOKEN", "").strip(),
            tls_ca=env.get("TASKTIDE_TLS_CA", ""),
            tls_cert=env.get("TASKTIDE_TLS_CERT", ""),
            tls_key=env.get("TASKTIDE_TLS_KEY", ""),
        )

    @property
    def tls(self) -> bool:
        """Whether the channels use TLS."""
        return bool(self.tls_ca or self.tls_cert or self.tls_key)

    def scheduler(self) -> str:
        """The scheduler's address."""
        return self.scheduler_address or self.address

    def registry(self) -> str:
        """The worker registry's address."""
        return self.registry_address or self.address

    def results(self) -> str:
        """The results service's address."""
        return self.results_address or self.address
