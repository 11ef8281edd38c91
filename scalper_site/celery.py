"""The Celery application: recovery step chains and queued integration runs."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scalper_site.settings")

app = Celery("scalper_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
