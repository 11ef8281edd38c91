"""``manage.py issue_token <username> [--ttl-days N]``: issue an API token and print it once."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken

MAX_TTL_DAYS = 3650


class Command(BaseCommand):
    help = (
        "Issue an API token for a user (header `Authorization: Token <key>`). The key is printed once, "
        "alone on standard output; the database keeps only its digest. It expires after --ttl-days "
        "(default SCALPER_API_TOKEN_TTL_DAYS); delete it in the admin (Knox > Auth tokens) to revoke it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="an existing, active user")
        parser.add_argument(
            "--ttl-days",
            type=int,
            default=settings.API_TOKEN_TTL_DAYS,
            help=f"days until the token expires, 1 to {MAX_TTL_DAYS} (default: %(default)s)",
        )

    def handle(self, *args, **opts) -> None:
        ttl_days: int = opts["ttl_days"]
        if not 1 <= ttl_days <= MAX_TTL_DAYS:
            raise CommandError(f"--ttl-days must be between 1 and {MAX_TTL_DAYS}, got {ttl_days}")
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: opts["username"]})
        except user_model.DoesNotExist:
            raise CommandError(f"no user named {opts['username']!r}") from None
        if not user.is_active:
            raise CommandError(f"the user {opts['username']!r} is inactive")
        instance, key = AuthToken.objects.create(user=user, expiry=timedelta(days=ttl_days))
        # The key alone on stdout, so `TOKEN=$(manage.py issue_token bot)` works; the rest goes to stderr.
        self.stdout.write(key)
        self.stderr.write(
            f"Issued an API token for {opts['username']!r}, expiring {instance.expiry:%Y-%m-%d %H:%M} UTC. "
            "It is shown only this once.",
            style_func=lambda text: text,
        )
