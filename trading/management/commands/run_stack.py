"""``manage.py run_stack``: bring the whole product up on this machine (``make run``)."""

from __future__ import annotations

import signal
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from scalper_site import launcher
from scalper_site.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from scalper_site.env import env_str


class Command(BaseCommand):
    help = "Start Redis (embedded unless REDIS_URL is set), a Celery worker and the web server; Ctrl-C stops all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="web server address (default: loopback)")
        parser.add_argument("--port", type=int, default=8000, help="web server port (default: 8000)")
        parser.add_argument("--worker-concurrency", type=int, default=2)
        parser.add_argument(
            "--skip-setup", action="store_true", help="do not migrate, collect static or create the admin"
        )
        parser.add_argument("--sim-port", type=int, default=8765, help="the exchange simulator's port")
        parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="what the SIM trader trades")
        parser.add_argument("--no-sim", action="store_true", help="start neither the simulator nor the trader")
        parser.add_argument("--no-trader", action="store_true", help="start the simulator but no trader")

    def _print_line(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def handle(self, *args, **opts) -> None:
        if not opts["skip_setup"]:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            call_command("ensure_admin")

        embedded: EmbeddedRedis | None = None
        redis_url = env_str("REDIS_URL")
        if not redis_url:
            embedded = EmbeddedRedis(settings.DATA_DIR)
            try:
                redis_url = embedded.start()
            except EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"[launcher] embedded Redis on {redis_url.split('@')[-1]} (data folder {settings.DATA_DIR})"
            )

        beat_schedule = Path(settings.DATA_DIR) / "run" / "celerybeat-schedule"
        beat_schedule.parent.mkdir(parents=True, exist_ok=True)
        supervisor = launcher.Supervisor(
            launcher.product_processes(
                python=launcher.python_executable(),
                web_host=opts["host"],
                web_port=opts["port"],
                worker_concurrency=opts["worker_concurrency"],
                sim_port=None if opts["no_sim"] else opts["sim_port"],
                trader_symbols=None if opts["no_trader"] else opts["symbols"],
                beat_schedule=beat_schedule,
            ),
            base_env=launcher.child_env(redis_url=redis_url, data_dir=settings.DATA_DIR),
            cwd=settings.BASE_DIR,
            out=self._print_line,
        )
        signal.signal(signal.SIGINT, supervisor.request_stop)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        self.stdout.write(
            f"[launcher] web UI http://{opts['host']}:{opts['port']}/  admin http://{opts['host']}:{opts['port']}/admin/"
        )
        try:
            code = supervisor.run()
        finally:
            if embedded is not None:
                embedded.stop()
                self.stdout.write("[launcher] embedded Redis stopped")
        self.stdout.write("[launcher] all processes stopped")
        if code:
            raise CommandError("a process of the product kept failing; see the lines above")
