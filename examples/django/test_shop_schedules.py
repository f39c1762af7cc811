"""Periodic schedules declared in TASKTIDE["SCHEDULES"]: `manage.py tasktide_sync_schedules` puts them
on the real platform idempotently, a schedule fires and the worker runs its Django task, and the
admin's read-only Schedules page reads them from the platform."""

from __future__ import annotations

import re
import uuid
from io import StringIO

import pytest
from shoptesting import wait_for

from tasktide import Client

REPORT, CHECK = "shop-daily-sales-report", "shop-address-check"
SCHEDULES = "/admin/tasktide/periodicschedule/"


@pytest.fixture()
def platform_client(shop):
    with Client(address=shop.address) as client:
        yield client


def sync(*args: str) -> str:
    from django.core.management import call_command

    out = StringIO()
    call_command("tasktide_sync_schedules", *args, stdout=out)
    return out.getvalue()


def tasktide_with(schedules: dict) -> dict:
    from django.conf import settings

    return {**settings.TASKTIDE, "SCHEDULES": schedules}


@pytest.fixture()
def declared(platform_client):
    """The shop's declared schedules, freshly put on the platform."""
    for name in (REPORT, CHECK):
        platform_client.delete_schedule(name, missing_ok=True)
    out = sync()
    yield out
    platform_client.resume_schedule(REPORT)


def test_sync_puts_the_declared_schedules_with_the_tasks_defaults(declared, platform_client):
    assert f"created   {REPORT}: orders.tasks.build_sales_report cron 5 0 * * * (UTC)" in declared
    assert "2 created, 0 updated, 0 unchanged" in declared
    report = platform_client.get_schedule(REPORT)
    assert (report.task_name, report.cron, report.queue) == (
        "orders.tasks.build_sales_report",
        "5 0 * * *",
        "shop-reports",
    )
    check = platform_client.get_schedule(CHECK)
    assert (check.task_name, check.every, check.queue) == ("orders.tasks.check_address", 6 * 3600.0, "shop-emails")
    assert check.args == ["postmaster@example.com"]
    assert report.next_run is not None and not report.paused


def test_sync_again_changes_nothing_and_keeps_a_pause(declared, platform_client):
    before = {s.name: s for s in platform_client.list_schedules()}
    platform_client.pause_schedule(REPORT)
    out = sync()
    assert "0 created, 0 updated, 2 unchanged" in out, out
    after = {s.name: s for s in platform_client.list_schedules()}
    assert after[REPORT].paused  # an operator's pause survives a deploy
    assert after[CHECK].next_run == before[CHECK].next_run  # an unchanged schedule keeps its next run


def test_a_changed_declaration_updates_and_prune_deletes_the_undeclared(declared, platform_client):
    from django.test import override_settings

    stray = f"shop-stray-{uuid.uuid4().hex[:8]}"
    platform_client.put_schedule(stray, "orders.tasks.check_address", ["x@example.com"], every=3600)
    changed = {
        REPORT: {"TASK": "orders.tasks.build_sales_report", "CRON": "15 1 * * *", "TIMEZONE": "Europe/Paris"},
        CHECK: {"TASK": "orders.tasks.check_address", "EVERY": 6 * 3600, "ARGS": ["postmaster@example.com"]},
    }
    with override_settings(TASKTIDE=tasktide_with(changed)):
        out = sync("--prune")
    assert f"updated   {REPORT}: orders.tasks.build_sales_report cron 15 1 * * * (Europe/Paris)" in out, out
    assert f"deleted   {stray}" in out
    names = {s.name for s in platform_client.list_schedules()}
    assert stray not in names and {REPORT, CHECK} <= names
    assert platform_client.get_schedule(REPORT).timezone == "Europe/Paris"


def test_a_declared_schedule_fires_and_the_worker_runs_its_django_task(shop, shop_worker, platform_client):
    from django.test import override_settings

    name, email = f"shop-often-{uuid.uuid4().hex[:8]}", f"{uuid.uuid4().hex[:8]}@example.com"
    with override_settings(TASKTIDE=tasktide_with({name: {"TASK": "orders.tasks.check_address", "EVERY": 1,
                                                          "ARGS": [email]}})):  # fmt: skip
        sync()
    try:
        fired = wait_for(lambda: platform_client.get_schedule(name).last_task_id, timeout=60, worker=shop_worker)
        result = platform_client.result(fired, timeout=60)
        assert result == {"email": email, "deliverable": True}
    finally:
        platform_client.delete_schedule(name, missing_ok=True)


def test_bad_schedule_settings_are_refused_with_the_reason():
    from django.core.exceptions import ImproperlyConfigured

    from tasktide.contrib.django.conf import load

    cases = {
        "needs exactly one of CRON and EVERY": {"s": {"TASK": "a.b"}},
        "unknown key(s) WHEN": {"s": {"TASK": "a.b", "EVERY": 5, "WHEN": "now"}},
        "['EVERY'] must be a number of seconds above 0": {"s": {"TASK": "a.b", "EVERY": 0}},
        "['ARGS'] must be a list": {"s": {"TASK": "a.b", "EVERY": 5, "ARGS": "x"}},
        "['TASK'] must name a task": {"s": {"EVERY": 5}},
    }
    for message, schedules in cases.items():
        with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
            load({"SCHEDULES": schedules}, env={})


# -- the admin page ---------------------------------------------------------------------------------


def _web(perms: tuple[str, ...]):
    from django.contrib.auth.models import Permission, User
    from django.test import Client as WebClient

    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    web = WebClient()
    web.force_login(user)
    return web


def test_admin_lists_schedules_from_the_platform_and_filters_them(declared, platform_client):
    web = _web(("view_periodicschedule",))
    index = web.get("/admin/").content.decode()
    assert "Periodic schedules" in index
    page = web.get(SCHEDULES).content.decode()
    assert REPORT in page and CHECK in page and "cron 5 0 * * * (UTC)" in page and "every 21600 s" in page
    searched = web.get(SCHEDULES, {"q": "sales"}).content.decode()
    assert REPORT in searched and CHECK not in searched
    platform_client.pause_schedule(REPORT)
    paused = web.get(SCHEDULES, {"paused": "1"}).content.decode()
    assert REPORT in paused and CHECK not in paused
    running = web.get(SCHEDULES, {"paused": "0"}).content.decode()
    assert CHECK in running and REPORT not in running


def test_admin_schedule_page_shows_the_platform_schedule_and_changes_nothing(declared, platform_client):
    web = _web(("view_periodicschedule",))
    page = web.get(f"{SCHEDULES}{CHECK}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "orders.tasks.check_address" in text and "postmaster@example.com" in text and "shop-emails" in text
    assert web.get(f"{SCHEDULES}no-such-schedule/change/").status_code == 404
    # No add, delete or history pages exist.
    for url in (f"{SCHEDULES}{CHECK}/delete/", f"{SCHEDULES}{CHECK}/history/", f"{SCHEDULES}add/"):
        assert web.get(url).status_code == 404, url
        assert web.post(url).status_code in (403, 404), url
    assert platform_client.get_schedule(CHECK).name == CHECK  # still there


def test_admin_schedules_need_the_view_permission(declared):
    web = _web(())
    assert web.get(SCHEDULES).status_code == 403
    assert web.get(f"{SCHEDULES}{CHECK}/change/").status_code == 403
