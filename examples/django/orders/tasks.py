"""The shop's background work: Django tasks (run by tasktide through TasktideBackend) and one
tasktide-native task, called Celery-style."""

from __future__ import annotations

import asyncio
import datetime as dt

from django.core.mail import send_mail
from django.db.models import Count, Sum
from django.utils import timezone

from orders.models import Order, Report
from tasktide.contrib.django import tasktide_app

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task

app = tasktide_app("shop")


@task(queue_name="shop-emails", priority=10)
def send_order_confirmation(order_id: int) -> dict:
    order = Order.objects.get(pk=order_id)
    send_mail(
        subject=f"Order {order.pk} confirmed",
        message=f"Thank you. {order.quantity} x {order.item} are on their way.",
        from_email=None,
        recipient_list=[order.email],
    )
    Order.objects.filter(pk=order_id).update(confirmed_at=timezone.now())
    return {"order": order.pk, "to": order.email}


@task(queue_name="shop-reports", backend="reports", takes_context=True)
def build_sales_report(context, day: str = "") -> dict:
    """The day's totals; without a day (as the daily schedule in settings runs it), yesterday's."""
    date = dt.date.fromisoformat(day) if day else timezone.localdate() - dt.timedelta(days=1)
    totals = Order.objects.filter(created_at__date=date).aggregate(orders=Count("id"), items=Sum("quantity"))
    report = Report.objects.create(
        day=date, orders=totals["orders"], items=totals["items"] or 0, attempt=context.attempt
    )
    return {"report": report.pk, "orders": report.orders, "items": report.items, "attempt": context.attempt}


@app.task(name="shop.reserve_stock", queue="shop-warehouse", max_retries=3)
def reserve_stock(order_id: int) -> bool:
    return Order.objects.filter(pk=order_id).update(stock_reserved=True) == 1


@task(queue_name="shop-emails")
async def check_address(email: str) -> dict:
    """An async task: the worker runs it on one of its threads, in an event loop of its own."""
    await asyncio.sleep(0)
    local, _, domain = email.partition("@")
    return {"email": email, "deliverable": bool(local) and "." in domain}
