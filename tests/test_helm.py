"""The Helm chart (deploy/helm/tasktide): `helm lint` and `helm template` from the pinned helm
(deploy/helm/install-helm.sh builds it from the Go module proxy), every rendered object checked
against Kubernetes' schemas (kubernetes-validate ships them), and what the objects must say."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tasktide.v1 import results_pb2, scheduler_pb2, worker_pb2
from tests.conftest import ROOT, require_tool

CHART = ROOT / "deploy" / "helm" / "tasktide"
INSTALL = ROOT / "deploy" / "helm" / "install-helm.sh"
KUBE_VERSION = "1.33.0"  # the Kubernetes release the objects are checked against
BUILD_SECONDS = 1800  # a cold `go install` of helm on a small shared machine
HEALTH_NAMES = {
    "scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
    "registry": worker_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
    "results": results_pb2.DESCRIPTOR.services_by_name["Results"].full_name,
}


def sets(*values: str) -> list[str]:
    """`--set` arguments of helm, one per value."""
    return [arg for value in values for arg in ("--set", value)]


KEDA = sets("keda.enabled=true", "keda.queues={default,emails}", "keda.targetPerReplica=5")

# The per-test limit covers the test bodies only: the helm build runs once, in `helm`, under its own limit.
pytestmark = pytest.mark.timeout(120, func_only=True)

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def helm() -> str:
    """The pinned helm binary, built on first use (the Go module proxy, then the module cache)."""
    require_tool("go")
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=BUILD_SECONDS)
    assert proc.returncode == 0, f"{INSTALL}: {proc.stderr[-4000:]}"
    return proc.stdout.strip().splitlines()[-1]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    home = Path(helm).parent / "home"  # helm's own folders beside the binary, not in the user's home
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def render(helm: str) -> Callable[..., Objects]:
    def rendered(*args: str) -> Objects:
        proc = run_helm(
            helm, "template", "tt", str(CHART), "--namespace", "jobs", "--kube-version", KUBE_VERSION, *args
        )
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return rendered


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def check_scaled_object(obj: dict[str, Any]) -> None:
    """KEDA's CRD has no schema in kubernetes-validate: its shape is checked here."""
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    spec = obj["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
    assert spec["scaleTargetRef"]["name"] and spec["scaleTargetRef"]["kind"] == "Deployment"
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    for trigger in spec["triggers"]:
        assert trigger["type"] in {"external", "external-push"}
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), "trigger metadata values are strings"


def test_helm_is_the_pinned_version(helm: str) -> None:
    pinned = next(line for line in INSTALL.read_text().splitlines() if line.startswith("HELM_VERSION="))
    version = run_helm(helm, "version", "--template", "{{.Version}}").stdout.strip()
    assert version == pinned.split("=", 1)[1]
    built = subprocess.run(["go", "version", "-m", helm], capture_output=True, text=True, timeout=60).stdout
    assert f"helm.sh/helm/v3\t{version}\t" in built  # the module itself, as go.sum verified it


@pytest.mark.parametrize("values", [[], KEDA], ids=["defaults", "keda"])
def test_helm_lint_passes(helm: str, values: list[str]) -> None:
    proc = run_helm(helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "values",
    [
        [],
        KEDA,
        sets(
            "keda.enabled=true",
            "keda.push=false",
            "metrics.enabled=false",
            "services.scheduler.autoscaling.enabled=false",
            "dashboard.autoscaling.enabled=true",
            "dashboard.pdb.enabled=true",
            "worker.pdb.enabled=true",
            "redis.existingSecret=mine",
            "env.OTEL_TRACES_EXPORTER=otlp",
            "headlessServices=true",
        ),
    ],
    ids=["defaults", "keda", "options"],
)
def test_every_rendered_object_matches_the_kubernetes_schema(render: Callable[..., Objects], values: list[str]) -> None:
    objects = render(*values)
    assert objects
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            check_scaled_object(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_services_have_grpc_probes_on_their_health_service_resources_pdbs_and_hpas(
    render: Callable[..., Objects],
) -> None:
    objects = render()
    for name, health in HEALTH_NAMES.items():
        deployment = find(objects, "Deployment", f"tt-tasktide-{name}")
        c = container(deployment)
        assert c["command"] == ["tasktide", name]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": 50051, "service": health}, probe
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        assert "replicas" not in deployment["spec"]  # the HPA owns the count
        env = {e["name"]: e for e in c["env"]}
        assert env["TASKTIDE_LISTEN"]["value"] == "0.0.0.0:50051"
        assert env["TASKTIDE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "tt-tasktide-redis",
            "key": "TASKTIDE_REDIS_URL",
        }
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert find(objects, "Service", f"tt-tasktide-{name}")["spec"]["selector"] == selector
        assert (
            find(objects, "PodDisruptionBudget", f"tt-tasktide-{name}")["spec"]["selector"]["matchLabels"] == selector
        )
        hpa = find(objects, "HorizontalPodAutoscaler", f"tt-tasktide-{name}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    dashboard = container(find(objects, "Deployment", "tt-tasktide-dashboard"))
    assert dashboard["readinessProbe"]["tcpSocket"] == {"port": "http"}
    config = find(objects, "ConfigMap", "tt-tasktide-config")["data"]
    assert config["TASKTIDE_REGISTRY_ADDRESS"] == "tt-tasktide-registry:50051"
    assert find(objects, "Secret", "tt-tasktide-redis")["stringData"] == {"TASKTIDE_REDIS_URL": "redis://redis:6379/0"}
    assert not [o for o in objects if o["kind"] == "ScaledObject"]  # KEDA is opt-in
    headless = render("--set", "headlessServices=true")
    assert find(headless, "Service", "tt-tasktide-registry")["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in find(objects, "Service", "tt-tasktide-registry")["spec"]


def test_keda_scales_the_workers_through_the_registry(render: Callable[..., Objects]) -> None:
    objects = render(*KEDA)
    worker = find(objects, "Deployment", "tt-tasktide-worker")
    assert "replicas" not in worker["spec"]  # KEDA sets them
    scaled = find(objects, "ScaledObject", "tt-tasktide-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tt-tasktide-worker"
    assert scaled["spec"]["minReplicaCount"] == 0  # to zero and back
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external-push"
    registry = find(objects, "Service", "tt-tasktide-registry")
    grpc_port = next(p["port"] for p in registry["spec"]["ports"] if p["name"] == "grpc")
    assert trigger["metadata"] == {
        "scalerAddress": f"tt-tasktide-registry.jobs.svc:{grpc_port}",
        "queue": "default,emails",
        "targetPerReplica": "5",
    }
    env = {e["name"]: e.get("value") for e in container(find(objects, "Deployment", "tt-tasktide-registry"))["env"]}
    assert env["TASKTIDE_EXTERNAL_SCALER"] == "1"  # KEDA sends no token: asked for even with tokens checked
    plain = render()
    for name in ("registry", "scheduler"):
        plain_env = container(find(plain, "Deployment", f"tt-tasktide-{name}"))["env"]
        assert "TASKTIDE_EXTERNAL_SCALER" not in {e["name"] for e in plain_env}


def test_worker_image_command_and_secret_are_configurable(render: Callable[..., Objects]) -> None:
    objects = render(
        "--set-json",
        'worker.command=["tasktide","worker","shop.tasks:app","--queues","emails"]',
        *sets(
            "worker.image.repository=shop/app",
            "worker.image.tag=7",
            "redis.existingSecret=shop-redis",
            "redis.existingSecretKey=url",
            "worker.replicas=3",
        ),
    )
    worker = find(objects, "Deployment", "tt-tasktide-worker")
    c = container(worker)
    assert c["image"] == "shop/app:7"
    assert c["command"] == ["tasktide", "worker", "shop.tasks:app", "--queues", "emails"]
    assert worker["spec"]["replicas"] == 3
    env = {e["name"]: e for e in c["env"]}
    assert env["TASKTIDE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "shop-redis", "key": "url"}
    assert not [o for o in objects if o["kind"] == "Secret"]  # the user's Secret is used as it is
    assert container(find(objects, "Deployment", "tt-tasktide-scheduler"))["image"] == "tasktide:0.1.0"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (sets("keda.enabled=true", "services.registry.enabled=false"), "registry serves the external"),
        ([*sets("keda.enabled=true"), "--set-json", "keda.queues=[]"], "keda.queues needs at least one queue"),
        (sets("redis.url="), "redis.url (or redis.existingSecret) is required"),
        # values.schema.json: wrong types, ranges and unknown keys are refused before rendering
        (sets("keda.targetPerReplica=0"), "/keda/targetPerReplica"),
        (sets("keda.queues={bad name}"), "/keda/queues/0"),
        (sets("kedaa.enabled=true"), "additional properties 'kedaa' not allowed"),
        (sets("services.registry.replicas=two"), "/services/registry/replicas"),
    ],
)
def test_bad_values_fail_with_a_message(helm: str, values: list[str], message: str) -> None:
    proc = run_helm(helm, "template", "tt", str(CHART), "--kube-version", KUBE_VERSION, *values)
    assert proc.returncode != 0
    assert message in proc.stderr
