"""Settings of the example shop: Django with its tasks run by tasktide.

Environment: TASKTIDE_ADDRESS (the platform, default 127.0.0.1:50051), SHOP_DATABASE (SQLite file),
SHOP_MAIL_DIR (where sent mail is written, one file per message).
"""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-shop-only-not-a-secret")
DEBUG = os.environ.get("SHOP_DEBUG", "") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

try:  # Django 6 has the tasks framework built in; on Django 5.2 it is the django-tasks backport.
    import django.tasks  # noqa: F401

    TASKS_APP = []
except ImportError:
    TASKS_APP = ["django_tasks"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    *TASKS_APP,
    "tasktide.contrib.django",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "shopsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", str(BASE_DIR / "db.sqlite3")),
        # The web process and worker processes share the file: writers wait for each other (IMMEDIATE)
        # and readers do not block writers (WAL).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

MAIL_DIR = os.environ.get("SHOP_MAIL_DIR", str(BASE_DIR / "sent-mail"))
if django.VERSION >= (6, 1):  # mail backends are configured as MAILERS from Django 6.1 on
    MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.filebased.EmailBackend", "OPTIONS": {"file_path": MAIL_DIR}}
    }
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = MAIL_DIR
DEFAULT_FROM_EMAIL = "shop@example.com"

# Order mail is sent once the order's transaction commits; reports are requested from async views
# and sent at once (no transaction to wait for).
TASKS = {
    "default": {
        "BACKEND": "tasktide.contrib.django.TasktideBackend",
        "QUEUES": ["shop-emails"],
        "OPTIONS": {"enqueue_on_commit": True, "max_retries": 2},
    },
    "reports": {
        "BACKEND": "tasktide.contrib.django.TasktideBackend",
        "QUEUES": ["shop-reports"],
    },
}

TASKTIDE = {
    "APPS": ["orders.tasks.app"],
    "WORKER": {"QUEUES": ["shop-emails", "shop-reports", "shop-warehouse"], "CONCURRENCY": 4},
    # Put on the platform at deploy time by `python manage.py tasktide_sync_schedules`.
    "SCHEDULES": {
        "shop-daily-sales-report": {"TASK": "orders.tasks.build_sales_report", "CRON": "5 0 * * *"},
        "shop-address-check": {
            "TASK": "orders.tasks.check_address",
            "EVERY": 6 * 3600,
            "ARGS": ["postmaster@example.com"],
            "PRIORITY": -10,
        },
    },
}
