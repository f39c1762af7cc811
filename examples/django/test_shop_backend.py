"""TasktideBackend against the real platform: what the tasks framework can express (priority, queue
name, run_after, async enqueue, results), failures and retries, on-commit sending, clear errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from shoptesting import queue_stats, wait_for

ANY_QUEUE = {
    "default": {
        "BACKEND": "tasktide.contrib.django.TasktideBackend",
        "QUEUES": [],
        "OPTIONS": {"enqueue_on_commit": True},
    },
    "reports": {"BACKEND": "tasktide.contrib.django.TasktideBackend", "QUEUES": []},
}


def _fresh_queue() -> str:
    return f"shop-{uuid.uuid4().hex[:10]}"


def _order():
    from orders.models import Order

    return Order.objects.create(email=f"{uuid.uuid4().hex[:8]}@example.com", item="mug", quantity=1)


def test_rollback_sends_nothing_and_commit_sends_once(shop):
    """No worker consumes these queues, so what reached the platform stays counted there."""
    from django.db import transaction
    from django.test import override_settings
    from orders.tasks import reserve_stock, send_order_confirmation

    queue = _fresh_queue()
    with override_settings(TASKS=ANY_QUEUE):
        task = send_order_confirmation.using(queue_name=queue)
        with pytest.raises(RuntimeError), transaction.atomic():
            task.enqueue(1)
            reserve_stock.apply_async_on_commit((1,), queue=queue)
            raise RuntimeError("roll back")
        assert queue not in queue_stats(shop.address)

        with transaction.atomic():
            result = task.enqueue(2)
            reserve_stock.apply_async_on_commit((2,), queue=queue)
            assert queue not in queue_stats(shop.address)  # not before the commit
        assert queue_stats(shop.address)[queue].ready == 2
        # The result id chosen in the transaction finds the task sent at commit.
        assert task.get_result(result.id).args == [2]


def test_submit_redis_url_queues_tasks_without_a_call_to_the_scheduler(shop, platform):
    """With SUBMIT_REDIS_URL, enqueue() writes the task to the platform's Redis itself: it is queued
    even while the client's address leads nowhere."""
    from django.conf import settings
    from django.test import override_settings
    from orders.tasks import send_order_confirmation

    from tasktide_services.common.redis_server import free_port

    queue = _fresh_queue()
    nowhere = f"127.0.0.1:{free_port()}"
    direct = {**settings.TASKTIDE, "ADDRESS": nowhere, "SUBMIT_REDIS_URL": platform.settings.redis_url}
    with override_settings(TASKS=ANY_QUEUE, TASKTIDE=direct):
        result = send_order_confirmation.using(backend="reports", queue_name=queue).enqueue(3)
    assert queue_stats(shop.address)[queue].ready == 1
    assert send_order_confirmation.get_result(result.id).args == [3]


def test_priority_orders_work_on_a_queue(shop):
    """Tasks wait on a queue nobody consumes; then one worker runs them, highest priority first."""
    from django.test import override_settings
    from orders.tasks import send_order_confirmation

    from tasktide.contrib.django.conf import get_conf
    from tasktide.contrib.django.runner import build_worker_app
    from tasktide_services.testing import run_worker_thread

    queue = _fresh_queue()
    with override_settings(TASKS=ANY_QUEUE):
        task = send_order_confirmation.using(queue_name=queue)
        low = task.using(priority=-50).enqueue(_order().pk)
        high = task.using(priority=50).enqueue(_order().pk)
        assert queue_stats(shop.address)[queue].ready == 2
        app = build_worker_app(get_conf())
        with run_worker_thread(app, shop.address, queues=(queue,), concurrency=1, prefetch=1):
            wait_for(lambda: all(task.get_result(r.id).is_finished for r in (low, high)))
        low, high = task.get_result(low.id), task.get_result(high.id)
    assert (high.task.priority, low.task.priority) == (50, -50)
    assert high.return_value["order"] == high.args[0]
    # Each run stamps its order; one worker thread ran the high-priority task first.
    from orders.models import Order

    stamps = {o.pk: o.confirmed_at for o in Order.objects.filter(pk__in=[low.args[0], high.args[0]])}
    assert stamps[high.args[0]] < stamps[low.args[0]]


def test_run_after_holds_the_task_on_the_platform(shop, shop_worker, client):
    from orders.tasks import send_order_confirmation

    from tasktide import TaskState
    from tasktide.contrib.django.compat import TaskResultStatus

    run_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    result = send_order_confirmation.using(run_after=run_after).enqueue(_order().pk)
    assert client.status(result.id) is TaskState.SCHEDULED
    assert send_order_confirmation.get_result(result.id).status == TaskResultStatus.READY
    wait_for(lambda: result.refresh() or result.is_finished, worker=shop_worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= run_after - dt.timedelta(milliseconds=50)
    assert abs(send_order_confirmation.get_result(result.id).task.run_after - run_after) < dt.timedelta(seconds=0.01)


def test_failure_retries_then_reports_the_error(shop, shop_worker):
    """The default backend allows 2 retries; a missing order fails three times."""
    from orders.tasks import send_order_confirmation

    from tasktide.contrib.django.compat import TaskResultStatus

    result = send_order_confirmation.enqueue(10**9)
    wait_for(lambda: result.refresh() or result.is_finished, timeout=60, worker=shop_worker)
    assert result.status == TaskResultStatus.FAILED
    assert len(result.worker_ids) == 3 and len(result.errors) == 3
    assert result.errors[-1].exception_class_path == "orders.models.Order.DoesNotExist"
    assert "matching query does not exist" in result.errors[-1].traceback
    with pytest.raises(ValueError):
        _ = result.return_value


def test_aenqueue_and_aget_result(shop, shop_worker):
    from orders.tasks import build_sales_report

    from tasktide.contrib.django.compat import TaskResultStatus

    async def flow():
        result = await build_sales_report.aenqueue("2020-01-01")
        for _ in range(600):
            await result.arefresh()
            if result.is_finished:
                return result
            await asyncio.sleep(0.05)
        return result

    result = asyncio.run(flow())
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value["orders"] == 0
    assert result.backend == "reports"


def test_clear_errors_for_what_is_not_supported(shop, client):
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from orders.tasks import app, build_sales_report, send_order_confirmation

    from tasktide.contrib.django.compat import InvalidTaskError, TaskResultDoesNotExist
    from tasktide.contrib.django.conf import load

    bad = {"default": {"BACKEND": "tasktide.contrib.django.TasktideBackend", "OPTIONS": {"acks_late": True}}}
    with override_settings(TASKS=bad), pytest.raises(ImproperlyConfigured, match="unsupported option.*acks_late"):
        send_order_confirmation.get_backend()
    wrong = {"default": {"BACKEND": "tasktide.contrib.django.TasktideBackend", "OPTIONS": {"max_retries": "many"}}}
    with override_settings(TASKS=wrong), pytest.raises(ImproperlyConfigured, match="wrong type"):
        send_order_confirmation.get_backend()
    with pytest.raises(ImproperlyConfigured, match="unknown key.*BROKER_URL"):
        load({"BROKER_URL": "redis://"})
    with pytest.raises(InvalidTaskError, match="Queue 'elsewhere' is not valid"):
        send_order_confirmation.using(queue_name="elsewhere")
    with pytest.raises(TypeError):
        send_order_confirmation.enqueue(object())
    with pytest.raises(TaskResultDoesNotExist):
        send_order_confirmation.get_result("no-such-result")
    with pytest.raises(TaskResultDoesNotExist):
        send_order_confirmation.get_result(uuid.uuid4().hex)
    # A tasktide-native task's id is not a Django task result.
    native = client.submit("shop.reserve_stock", [0], queue=_fresh_queue())
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        send_order_confirmation.get_result(native.id)
    assert app.tasks["shop.reserve_stock"].name == "shop.reserve_stock"
    assert build_sales_report.get_backend().supports_defer


def test_worker_runs_only_tasks_of_the_project(shop, shop_worker, client):
    """A name on the wire is not a licence to import anything: outside the installed apps it fails."""
    import tasktide

    handle = client.submit("os.getcwd", [], queue="shop-emails")
    with pytest.raises(tasktide.TaskFailed) as failed:
        handle.get(timeout=20)
    assert failed.value.remote_type == "tasktide.UnknownTask"


def test_async_task_function_runs_on_the_worker(shop, shop_worker):
    from orders.tasks import check_address

    from tasktide.contrib.django.compat import TaskResultStatus

    result = check_address.enqueue("buyer@example.com")
    wait_for(lambda: result.refresh() or result.is_finished, worker=shop_worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"email": "buyer@example.com", "deliverable": True}
