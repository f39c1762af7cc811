"""The admin pages for task results render for a logged-in staff user, read the platform, filter by
state and task name, and change nothing."""

from __future__ import annotations

import uuid

import pytest
from shoptesting import wait_for

RECORDS = "/admin/tasktide/taskrecord/"


@pytest.fixture()
def staff(shop):
    """A staff user (not a superuser) allowed to view task results, logged in."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    web = Client()
    web.force_login(user)
    return web


@pytest.fixture()
def finished_tasks(shop, shop_worker):
    """One successful and one failed confirmation task, both finished."""
    from orders.models import Order
    from orders.tasks import send_order_confirmation

    order = Order.objects.create(email=f"{uuid.uuid4().hex[:8]}@example.com", item="tray", quantity=1)
    ok = send_order_confirmation.enqueue(order.pk)
    bad = send_order_confirmation.enqueue(10**9 + 1)
    for r in (ok, bad):
        wait_for(lambda r=r: r.refresh() or r.is_finished, timeout=60, worker=shop_worker)
    return ok, bad


def test_results_list_reads_states_from_the_platform(staff, finished_tasks):
    from tasktide.contrib.django.models import TaskRecord

    ok, bad = finished_tasks
    # Stored at enqueue time as QUEUED; the list page asks the platform and shows the final states.
    TaskRecord.objects.filter(id__in=[ok.id, bad.id]).update(state="QUEUED")
    page = staff.get(RECORDS)
    assert page.status_code == 200
    html = page.content.decode()
    assert "orders.tasks.send_order_confirmation" in html and ok.id in html and bad.id in html
    assert TaskRecord.objects.get(id=ok.id).state == "SUCCEEDED"
    # Out of retries: failed, or dead-lettered where the platform keeps dead letters.
    bad_state = TaskRecord.objects.get(id=bad.id).state
    assert bad_state in ("FAILED", "DEAD")

    failed = staff.get(RECORDS, {"state__exact": bad_state}).content.decode()
    assert bad.id in failed and ok.id not in failed
    succeeded = staff.get(RECORDS, {"state__exact": "SUCCEEDED"}).content.decode()
    assert ok.id in succeeded and bad.id not in succeeded
    by_name = staff.get(RECORDS, {"name__exact": "orders.tasks.build_sales_report"}).content.decode()
    assert ok.id not in by_name and bad.id not in by_name
    by_name = staff.get(RECORDS, {"name__exact": "orders.tasks.send_order_confirmation"}).content.decode()
    assert ok.id in by_name and bad.id in by_name


def test_result_page_shows_the_live_result_and_error(staff, finished_tasks):
    ok, bad = finished_tasks
    page = staff.get(f"{RECORDS}{ok.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "On the platform" in html and "SUCCEEDED" in html
    assert f"&quot;order&quot;: {ok.args[0]}" in html  # the return value, as JSON

    html = staff.get(f"{RECORDS}{bad.id}/change/").content.decode()
    assert ("FAILED" in html or "DEAD" in html) and "DoesNotExist" in html and "Traceback" in html
    assert ">3<" in html  # attempts: the first and two retries


def test_admin_is_read_only_and_staff_only(shop, staff, finished_tasks):
    from django.test import Client

    from tasktide.contrib.django.models import TaskRecord

    ok, _ = finished_tasks
    assert staff.get(f"{RECORDS}add/").status_code == 403
    assert staff.post(f"{RECORDS}{ok.id}/delete/").status_code == 403
    staff.post(f"{RECORDS}{ok.id}/change/", {"name": "changed"})
    assert TaskRecord.objects.get(id=ok.id).name == "orders.tasks.send_order_confirmation"
    anonymous = Client().get(RECORDS)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert staff.get("/admin/").status_code == 200
