"""``manage.py check_stack``: prove that Redis, the Celery workers and the result store answer."""

from __future__ import annotations

import secrets
import time

from django.core.management.base import BaseCommand, CommandError

from trading.tasks import probe_chain


class Command(BaseCommand):
    help = "Run a chain of probe tasks through the broker and the workers and print who served it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hops", type=int, default=3)
        parser.add_argument("--timeout", type=float, default=15.0)

    def handle(self, *args, **opts) -> None:
        token = secrets.token_hex(4)
        started = time.perf_counter()
        try:
            trail = probe_chain(token=token, hops=opts["hops"]).apply_async().get(timeout=opts["timeout"])
        except Exception as exc:  # any broker/backend/worker failure is the answer here
            raise CommandError(f"the probe chain did not complete: {exc!r}") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        if len(trail) != opts["hops"] or any(hop["token"] != token for hop in trail):
            raise CommandError(f"the probe chain came back wrong: {trail!r}")
        for index, hop in enumerate(trail, 1):
            self.stdout.write(f"hop {index}: {hop['host']} pid {hop['pid']}")
        self.stdout.write(self.style.SUCCESS(f"{opts['hops']} hops in {elapsed_ms:.1f} ms"))
