from __future__ import annotations

from django.apps import AppConfig


class ItestsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "itests"
    verbose_name = "Integration tests"
