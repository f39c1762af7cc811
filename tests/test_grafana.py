"""The Grafana set-up of docker-compose.yml: provisioning files that parse and point at the compose
services, a dashboard that is valid JSON, and PromQL that names only metrics a running service
exports (scraped from a real `tasktide dev` and worker)."""

from __future__ import annotations

import json
import re
import signal
import uuid

import pytest
import yaml

from tasktide import Client, ClientSettings, TaskState
from tasktide_services.testing import spawn
from tests.processes import ROOT, free_port, own_redis, stop, wait_serving
from tests.test_metrics import Poll, names, value

GRAFANA = ROOT / "deploy" / "grafana"
METRIC = re.compile(r"\b(tasktide_[a-z_]+)\b")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "tasktide.json").read_text())


def expressions(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def test_provisioning_points_at_the_compose_services(dashboard: dict) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "tasktide.yaml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert {"prometheus", "jaeger"} <= set(by_uid)
    for d in by_uid.values():
        host = re.sub(r"^https?://", "", d["url"]).split(":")[0]
        assert host in compose["services"], d["url"]
    assert by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "jaeger"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tasktide.yaml").read_text())
    mounted = {v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    assert providers["providers"][0]["options"]["path"] in mounted
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used <= set(by_uid)
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


@pytest.fixture()
def dev(tmp_path):
    """`tasktide dev` with metrics, short leases, and a task dead after its second lost worker."""
    with own_redis(tmp_path / "redis") as redis_url:
        address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env = {
            "TASKTIDE_REDIS_URL": redis_url,
            "TASKTIDE_METRICS_INTERVAL": "0.1",
            "TASKTIDE_LEASE_SECONDS": "1",
            "TASKTIDE_MAX_DELIVERIES": "2",
            "TASKTIDE_TICK_SECONDS": "0.05",
        }
        proc = spawn("dev", "--address", address, "--metrics-address", metrics, env=env, cwd=ROOT)
        try:
            wait_serving(address, proc)
            yield address, f"http://{metrics}/metrics", {**env, "TASKTIDE_ADDRESS": address}
        finally:
            stop([proc])


def test_every_query_names_an_exported_metric(dashboard, dev, tmp_path) -> None:
    """Every metric a panel queries is on a service's /metrics once the flow it counts has happened."""
    address, url, env = dev
    q = f"q-{uuid.uuid4().hex[:10]}"
    poll = Poll(url)
    worker = spawn("worker", "tests.tasks_app:app", "-Q", q, env=env, cwd=ROOT)
    try:
        with Client(settings=ClientSettings.from_env({}, address=address)) as client:
            assert client.submit("t.add", [1, 2], queue=q).get(timeout=30) == 3
            marker = str(tmp_path / "m")
            flaky = client.submit("t.fails_once", [marker], queue=q, max_retries=2)
            assert flaky.get(timeout=30) == "second attempt ok"
            # A task whose worker is killed twice: redelivered once, then dead (MAX_DELIVERIES=2).
            slow = client.submit("t.slow", [60], queue=q)
            for started in (1, 2):
                poll.until(lambda s, n=started: value(s, "tasktide_tasks_started_total", queue=q, task="t.slow") == n)
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                if started == 1:
                    poll.until(lambda s: value(s, "tasktide_tasks_redelivered_total", queue=q) == 1)
                    worker = spawn("worker", "tests.tasks_app:app", "-Q", q, env=env, cwd=ROOT)
            poll.until(lambda s: value(s, "tasktide_tasks_dead_lettered_total", queue=q) == 1)
            assert slow.status() is TaskState.DEAD
    finally:
        stop([worker])
    exported = names(poll.last)
    queried = {m for e in expressions(dashboard) for m in METRIC.findall(e)}
    assert len(queried) >= 10
    assert sorted(queried - exported) == []
