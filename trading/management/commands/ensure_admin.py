"""``manage.py ensure_admin``: create the first admin user once."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from scalper_site.env import env_str


class Command(BaseCommand):
    help = (
        "Create the first superuser if none exists "
        "(SCALPER_ADMIN_USER / SCALPER_ADMIN_PASSWORD, or a generated password printed once). "
        "A password from the environment must pass the password validators."
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
        else:
            # The same rules as a password set in the admin: a weak one never becomes the admin's.
            try:
                validate_password(password, user=user_model(username=username))
            except ValidationError as exc:
                problems = " ".join(exc.messages)
                message = f"SCALPER_ADMIN_PASSWORD is refused: {problems} No admin user was created."
                raise CommandError(message) from None
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
