"""docker-compose.yml, the Dockerfile and deploy/ checked without a Docker engine: the YAML parses,
every command is accepted by the real command-line parsers, the variables are ones tasktide or the
OpenTelemetry SDK reads, referenced files exist, ports and addresses line up, every gRPC server has
TLS and tokens, the worker a token, published ports are on loopback only, and the one-shot set-up
script makes certificates and tokens the services accept."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import opentelemetry.environment_variables as otel_api_env
import opentelemetry.sdk.environment_variables as otel_sdk_env
import pytest
import yaml

from tasktide import App, ClientSettings
from tasktide.cli import SERVER_COMMANDS, build_parser, load_app
from tasktide_services.cli import _parser as server_parser
from tasktide_services.common.auth import Authenticator, read_key
from tasktide_services.common.settings import ServerSettings
from tests.processes import ROOT

TASKTIDE_SERVICES = ("scheduler", "registry", "results", "worker")
OTEL_VARIABLES = {getattr(m, n) for m in (otel_api_env, otel_sdk_env) for n in dir(m) if n.startswith("OTEL_")}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def collector() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())


@pytest.fixture(scope="module")
def prometheus() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())


def host_port(value: str) -> tuple[str, int]:
    value = re.sub(r"^\w+://", "", value)
    host, _, port = value.rpartition(":")
    return host, int(port)


def container_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def tasktide_argv(service: dict) -> list[str]:
    """The tasktide command line of a service: its command, or what `sh -c "... exec tasktide ..."`
    runs after reading a secret."""
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2].split(" exec ", 1)[1])
    return list(command)


def listen_port(service: dict) -> int:
    return host_port(service["environment"]["TASKTIDE_LISTEN"])[1]


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) >= {*TASKTIDE_SERVICES, "redis", "otel-collector", "jaeger", "prometheus"}
    for name in TASKTIDE_SERVICES:
        assert services[name]["build"] == "."
        assert tasktide_argv(services[name])[0] == "tasktide"
    assert (ROOT / "Dockerfile").is_file()


def test_commands_are_accepted_by_the_cli(compose):
    for name in TASKTIDE_SERVICES:
        argv = tasktide_argv(compose["services"][name])[1:]
        args, unknown = build_parser().parse_known_args(argv)
        assert args.command == argv[0]
        if args.command in SERVER_COMMANDS:
            assert args.command == name
            server_args = server_parser(args.command).parse_args([*unknown, *args.rest])
            metrics = compose["services"][name]
            assert server_args.metrics_address, f"{name} serves no metrics"
            assert metrics["environment"]["TASKTIDE_LISTEN"]
        else:
            assert not unknown
            assert args.command == "worker"
            assert isinstance(load_app(args.app), App)


def test_environment_variables_are_read(compose):
    for name in TASKTIDE_SERVICES:
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        for key, value in env.items():
            if key.startswith("OTEL_"):
                assert key in OTEL_VARIABLES, f"{name}: {key} is not an OpenTelemetry variable"
                continue
            assert key.startswith("TASKTIDE_"), key
            read_by_server = ServerSettings.from_env({key: value}) != ServerSettings.from_env({})
            read_by_client = ClientSettings.from_env({key: value}) != ClientSettings.from_env({})
            assert read_by_server or read_by_client, f"{name}: nothing reads {key}"


def test_addresses_and_ports_line_up(compose, collector, prometheus):
    services = compose["services"]
    for name in TASKTIDE_SERVICES:
        env = services[name]["environment"]
        for peer in ("scheduler", "registry", "results"):
            host, port = host_port(env[f"TASKTIDE_{peer.upper()}_ADDRESS"])
            assert host == peer and port == listen_port(services[peer])
        host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host == "otel-collector"
        assert port == host_port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
        assert port in container_ports(services["otel-collector"])
        assert host_port(env["TASKTIDE_REDIS_URL"].rsplit("/", 1)[0]) == ("redis", 6379)
    assert host_port(services["worker"]["environment"]["TASKTIDE_ADDRESS"]) == ("scheduler", 50051)
    for name in ("scheduler", "registry", "results"):
        assert listen_port(services[name]) in container_ports(services[name])

    targets = {
        job["job_name"]: [host_port(t) for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    for host, port in targets["tasktide"]:
        argv = services[host]["command"]
        assert port == host_port(argv[argv.index("--metrics-address") + 1])[1]
    assert targets["otel-collector"] == [
        ("otel-collector", host_port(collector["exporters"]["prometheus"]["endpoint"])[1])
    ]
    jaeger_host, jaeger_port = host_port(collector["exporters"]["otlp/jaeger"]["endpoint"])
    assert jaeger_host in services and jaeger_port == 4317  # Jaeger's OTLP gRPC port
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_collector_pipelines_use_defined_parts(collector):
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for part in pipeline.get(kind, []):
                assert part in collector[kind], f"{part} is not defined under {kind}"
    assert set(collector["service"]["pipelines"]) == {"traces", "metrics"}


def test_referenced_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
    assert '"/app/clients/python[otel]"' in dockerfile


GRPC_SERVERS = ("scheduler", "registry", "results")
SECRETS = "/secrets"


def mounted_secrets(service: dict) -> str:
    """The volume mounted at /secrets (its name), or ''."""
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[1] == SECRETS:
            return parts[0]
    return ""


def test_every_grpc_server_has_tls_and_tokens(compose):
    services = compose["services"]
    servers = [n for n in services if "TASKTIDE_LISTEN" in services[n].get("environment", {})]
    assert sorted(servers) == sorted(GRPC_SERVERS)
    for name in servers:
        service = services[name]
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = ServerSettings.from_env(env)
        assert settings.address.startswith("0.0.0.0:")
        assert settings.tls.enabled and settings.tls.ca, f"{name} has no TLS"
        assert settings.auth_key.startswith(f"@{SECRETS}/"), f"{name} checks no tokens"
        assert settings.exposure_problem() == "", name
        for path in (settings.tls.cert, settings.tls.key, settings.tls.ca, settings.auth_key[1:]):
            assert path.startswith(f"{SECRETS}/"), f"{name}: {path} is not in the secrets volume"
        assert mounted_secrets(service) == mounted_secrets(services["setup"]) == "secrets"
        assert service["volumes"][0].endswith(":ro")
        assert service["depends_on"]["setup"] == {"condition": "service_completed_successfully"}


def test_the_worker_has_a_token_and_trusts_the_ca(compose):
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:2] == ["sh", "-c"]
    # $$ is compose's escape of a literal $: the shell reads the token file as the worker starts.
    assert command[2].startswith(f'TASKTIDE_TOKEN="$$(cat {SECRETS}/worker.token)" exec tasktide worker ')
    env = worker["environment"]
    assert env["TASKTIDE_TLS_CA"] == f"{SECRETS}/ca.pem"
    assert "TASKTIDE_TLS_CERT" not in env and "TASKTIDE_AUTH_KEY" not in env  # not a server's secrets
    assert mounted_secrets(worker) == "secrets"
    assert worker["depends_on"]["setup"] == {"condition": "service_completed_successfully"}


def test_published_ports_are_on_loopback(compose):
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published += 1
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    assert published >= 3
    assert "ports" not in compose["services"]["redis"]


def test_the_setup_script_makes_credentials_the_services_accept(compose, tmp_path: Path):
    from cryptography import x509

    setup = compose["services"]["setup"]
    script = setup["command"][1]
    source = next(v.split(":")[0] for v in setup["volumes"] if v.split(":")[1] == script)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TASKTIDE_SECRETS": str(tmp_path),
        "TASKTIDE_DEV_CERTS": str(ROOT / "scripts" / "dev_certs.py"),
    }
    env.pop("TASKTIDE_AUTH_KEY", None)
    run = [setup["command"][0], str(ROOT / source)]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    key = read_key(f"@{tmp_path}/auth.key")
    check = Authenticator(key)
    worker = check.caller((tmp_path / "worker.token").read_text().strip())
    worker_argv = tasktide_argv(compose["services"]["worker"])
    queues = worker_argv[worker_argv.index("--queues") + 1].split(",")
    assert worker.role == "worker" and set(queues) <= set(worker.queues)
    assert check.caller((tmp_path / "producer.token").read_text().strip()).role == "producer"
    assert check.caller((tmp_path / "admin.token").read_text().strip()).role == "admin"
    assert oct((tmp_path / "auth.key").stat().st_mode & 0o777) == "0o600"

    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    names = set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )
    for name in GRPC_SERVERS:  # the peers' addresses, as the services and the worker dial them
        assert name in names

    # A second run keeps what exists: the tokens handed out stay valid.
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
