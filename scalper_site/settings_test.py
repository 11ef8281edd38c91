"""Settings for the fast test group: eager Celery and an in-memory channel layer.

These two shortcuts are for unit tests only; the ``services`` group runs with
``scalper_site.settings`` against real Redis, PostgreSQL and Celery workers.
"""

from __future__ import annotations

from scalper_site.settings import *  # noqa: F401,F403

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
