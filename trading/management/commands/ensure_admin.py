"""``manage.py ensure_admin``: create the first admin user once."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from scalper_site.env import env_str


class Command(BaseCommand):
    help = (
        "Create the first superuser if none exists "
        "(SCALPER_ADMIN_USER / SCALPER_ADMIN_PASSWORD, or a generated password printed once)."
    )

    def handle(self, *args, **opts) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            return
        username = env_str("SCALPER_ADMIN_USER", "admin")
        password = env_str("SCALPER_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin user '{username}' with password '{password}'. "
                    "It is shown only this once; change it in the admin."
                )
            )
        else:
            self.stdout.write(f"Created the admin user '{username}' from the environment.")
