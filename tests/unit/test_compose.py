"""docker-compose.yml, the Dockerfile and deploy/ checked without a Docker engine: the YAML parses,
every command is accepted by the real command-line parsers, the variables are ones tasktide or the
OpenTelemetry SDK reads, referenced files exist, and ports and addresses line up."""

from __future__ import annotations

import re

import opentelemetry.environment_variables as otel_api_env
import opentelemetry.sdk.environment_variables as otel_sdk_env
import pytest
import yaml

from tasktide import App, ClientSettings
from tasktide.cli import SERVER_COMMANDS, build_parser, load_app
from tasktide_services.cli import _parser as server_parser
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


def listen_port(service: dict) -> int:
    return host_port(service["environment"]["TASKTIDE_LISTEN"])[1]


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) >= {*TASKTIDE_SERVICES, "redis", "otel-collector", "jaeger", "prometheus"}
    for name in TASKTIDE_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["command"][0] == "tasktide"
    assert (ROOT / "Dockerfile").is_file()


def test_commands_are_accepted_by_the_cli(compose):
    for name in TASKTIDE_SERVICES:
        argv = compose["services"][name]["command"][1:]
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
