"""What the shop shows: a view enqueues through Django's tasks framework, a tasktide worker process
with Django set up runs the task, and the result is read back through Django's API; a rolled-back
order sends nothing."""

from __future__ import annotations

import datetime as dt
import uuid

from shoptesting import wait_for


def _email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


def test_order_view_enqueues_and_worker_runs_it(shop, shop_worker):
    from django.test import Client
    from orders.models import Order
    from orders.tasks import send_order_confirmation

    from tasktide.contrib.django.compat import TaskResultStatus

    web = Client()
    email = _email()
    resp = web.post("/orders/", {"email": email, "item": "teapot", "quantity": 2})
    assert resp.status_code == 201, resp.content
    order_id, result_id = resp.json()["order"], resp.json()["confirmation"]

    # The view reads the result back with get_result(), while the worker runs the task.
    def finished():
        body = web.get(f"/orders/{order_id}/").json()
        return body if body["confirmation"]["finished"] else None

    body = wait_for(finished, worker=shop_worker)
    assert body["confirmation"]["status"] == "SUCCESSFUL", body
    assert body["confirmation"]["return_value"] == {"order": order_id, "to": email}

    # Django's API directly: the result as the framework describes it.
    result = send_order_confirmation.get_result(result_id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"order": order_id, "to": email}
    assert result.args == [order_id] and result.kwargs == {}
    assert result.task.queue_name == "shop-emails" and result.task.priority == 10
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert len(result.worker_ids) == 1 and result.worker_ids[0]
    assert result.errors == []

    # The worker process did the work: the mail was written and the order updated in the database.
    assert any(f"To: {email}" in m and f"Order {order_id} confirmed" in m for m in shop.mail())
    assert Order.objects.get(pk=order_id).confirmed_at is not None
    # The tasktide-native task sent with delay_on_commit() ran on the same worker.
    wait_for(lambda: Order.objects.get(pk=order_id).stock_reserved, worker=shop_worker)


def test_result_refresh_follows_the_task(shop, shop_worker):
    from orders.models import Order
    from orders.tasks import send_order_confirmation

    from tasktide.contrib.django.compat import TaskResultStatus

    order = Order.objects.create(email=_email(), item="cup", quantity=1)
    result = send_order_confirmation.enqueue(order.pk)  # outside a transaction: sent at once
    assert result.status == TaskResultStatus.READY and not result.is_finished
    wait_for(lambda: result.refresh() or result.is_finished, worker=shop_worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"order": order.pk, "to": order.email}


def test_rolled_back_order_sends_nothing(shop, shop_worker):
    from django.test import Client
    from orders.models import STOCK_LIMIT, Order

    from tasktide.contrib.django.models import TaskRecord

    web = Client()
    orders_before, records_before = Order.objects.count(), TaskRecord.objects.count()
    refused = _email()
    resp = web.post("/orders/", {"email": refused, "item": "teapot", "quantity": STOCK_LIMIT + 1})
    assert resp.status_code == 409
    assert Order.objects.count() == orders_before
    assert TaskRecord.objects.count() == records_before

    # A good order afterwards goes through the same queues; when it is done, nothing of the refused
    # one has run: no mail to its address, no task recorded for it.
    accepted = _email()
    resp = web.post("/orders/", {"email": accepted, "item": "teapot", "quantity": 1})
    assert resp.status_code == 201
    order_id = resp.json()["order"]
    wait_for(lambda: web.get(f"/orders/{order_id}/").json()["confirmation"]["finished"], worker=shop_worker)
    wait_for(lambda: Order.objects.get(pk=order_id).stock_reserved, worker=shop_worker)
    mail = shop.mail()
    assert any(f"To: {accepted}" in m for m in mail)
    assert not any(refused in m for m in mail)
    assert TaskRecord.objects.count() == records_before + 1


def test_async_view_enqueues_report_with_aenqueue(shop, shop_worker):
    from django.test import Client
    from orders.models import Order, Report

    Order.objects.create(email=_email(), item="kettle", quantity=3)
    today = dt.datetime.now(dt.UTC).date()
    expected_orders = Order.objects.filter(created_at__date=today).count()
    web = Client()
    resp = web.post("/reports/", {"day": today.isoformat()})
    assert resp.status_code == 202
    result_id = resp.json()["report"]

    def finished():
        body = web.get(f"/reports/{result_id}/").json()
        return body if body["finished"] else None

    body = wait_for(finished, worker=shop_worker)
    assert body["status"] == "SUCCESSFUL", body
    value = body["return_value"]
    assert value["orders"] == expected_orders and value["attempt"] == 1  # takes_context: the attempt
    assert Report.objects.get(pk=value["report"]).orders == expected_orders
