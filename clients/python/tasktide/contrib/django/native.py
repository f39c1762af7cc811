"""tasktide-native tasks in Django code: an App configured from the TASKTIDE setting.

    from tasktide.contrib.django import tasktide_app
    app = tasktide_app("shop")

    @app.task(max_retries=3)
    def reserve_stock(order_id): ...

    reserve_stock.delay_on_commit(order.id)      # as in Celery

List the App in TASKTIDE["APPS"] ("shop.tasks.app") so that `manage.py tasktide_worker` runs its tasks.
"""

from __future__ import annotations

from typing import Any

from tasktide._app import App
from tasktide._settings import ClientSettings


class DjangoApp(App):
    """An App whose client settings are the project's TASKTIDE setting, read on first use."""

    @property
    def settings(self) -> ClientSettings:
        if self._settings is None:
            from tasktide.contrib.django.conf import get_conf

            self._settings = get_conf().client
        return self._settings


def tasktide_app(name: str, **kwargs: Any) -> App:
    return DjangoApp(name, **kwargs)
