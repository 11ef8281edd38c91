"""``manage.py run_trader``: the trader process (SIM, DRY_RUN, LIVE) or a REPLAY run."""

from __future__ import annotations

import signal
import sys
from importlib import import_module
from pathlib import Path
from typing import cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.exchange.connect import BYBIT, SIM, ExchangeTarget
from trading.exchange.lease import AccountLease, account_key, redis_client
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS

MODES = ("SIM", "REPLAY", "DRY_RUN", "LIVE")


def parse_symbols(raw: str) -> list[str]:
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise CommandError("--symbols needs at least one symbol, e.g. BTCUSDT,ETHUSDT")
    bad = [s for s in symbols if not s.isalnum()]
    if bad:
        raise CommandError(f"not symbol names: {', '.join(bad)}")
    return list(dict.fromkeys(symbols))


def lease_ttl_s(flag: float | None) -> float:
    """The lease TTL: the flag, else ``SCALPER_LEASE_TTL_S``; within 1..3600 seconds."""
    from trading.exchange.lease import MAX_TTL_S, MIN_TTL_S

    raw = flag if flag is not None else getattr(settings, "SCALPER_LEASE_TTL_S", "10")
    try:
        ttl = float(raw)
    except (TypeError, ValueError):
        raise CommandError(f"the lease TTL must be a number of seconds, not {raw!r}") from None
    if not MIN_TTL_S <= ttl <= MAX_TTL_S:
        raise CommandError(f"the lease TTL must be within {MIN_TTL_S:g}..{MAX_TTL_S:g} s, not {ttl:g}")
    return ttl


def folder_wait_s(flag: float) -> float:
    """The wait for the data folder's lock: 0..3600 seconds (a start never waits without a bound)."""
    if not 0.0 <= flag <= 3600.0:  # also false for NaN
        raise CommandError(f"--folder-wait must be within 0..3600 s, not {flag:g}")
    return flag


def account_lease(target: ExchangeTarget, *, run_id: str, ttl_s: float) -> AccountLease:
    """The lease of the account ``target`` trades on (its endpoint and API key; never the secret)."""
    endpoint = target.base_url if target.kind == SIM else f"bybit:{target.bybit_env}"
    return AccountLease(
        redis_client(settings.REDIS_URL),
        account_key(endpoint, target.keys()[0]),
        ttl_s=ttl_s,
        run_id=run_id,
    )


def bybit_keys_set() -> bool:
    """Say whether both Bybit keys are set; a blank one (a stray space in an env file) counts as missing."""
    return bool(str(settings.BYBIT_API_KEY or "").strip() and str(settings.BYBIT_API_SECRET or "").strip())


class Command(BaseCommand):
    help = "Run the trader: SIM against the simulator, DRY_RUN/LIVE against Bybit, or REPLAY a data set."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mode", choices=MODES, default="SIM")
        parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
        parser.add_argument("--sim-url", default="http://127.0.0.1:8765", help="the simulator's address (SIM)")
        parser.add_argument("--run-id", default="", help="environment id (integration runs); empty for the product")
        parser.add_argument("--data-dir", default="", help="defaults to SCALPER_DATA_DIR")
        parser.add_argument("--confirm-live", action="store_true", help="required for LIVE: real orders, real money")
        parser.add_argument("--allow-fault-hooks", action="store_true", help="let integration scenarios arm faults")
        parser.add_argument("--ping-interval", type=int, default=20)
        parser.add_argument("--ping-timeout", type=int, default=10)
        parser.add_argument("--max-runtime", type=float, default=None, help="stop after this many seconds")
        parser.add_argument("--lease-ttl", type=float, default=None,
                            help="the account lease's TTL in seconds (default SCALPER_LEASE_TTL_S, 10)")
        parser.add_argument("--folder-wait", type=float, default=20.0,
                            help="seconds to wait for another trader to leave the data folder (or for its disk "
                                 "to take the lock file) before giving up (exit code 3)")
        parser.add_argument("--replay", default="", help="REPLAY: a JSONL(.gz) file of Bybit public messages")
        parser.add_argument("--events", type=int, default=200_000,
                            help="REPLAY: generated messages when no file (generated once, kept under the data folder)")
        parser.add_argument("--seed", type=int, default=1, help="REPLAY: seed of the generated data")

    def handle(self, *args, **opts) -> None:
        mode = opts["mode"]
        symbols = parse_symbols(opts["symbols"])
        data_dir = Path(opts["data_dir"]).resolve() if opts["data_dir"] else settings.DATA_DIR
        if mode == "REPLAY":
            from trading.engine.replay import replay_main

            sys.exit(
                replay_main(
                    symbols=symbols,
                    path=opts["replay"],
                    events=opts["events"],
                    seed=opts["seed"],
                    out=self.stdout,
                    data_dir=data_dir,
                )
            )
        if mode == "LIVE":
            if not opts["confirm_live"]:
                raise CommandError("LIVE sends real orders: add --confirm-live to start it")
            if not bybit_keys_set():
                raise CommandError("LIVE needs BYBIT_API_KEY and BYBIT_API_SECRET in the environment")
        if mode == "DRY_RUN" and not bybit_keys_set():
            raise CommandError("DRY_RUN reads the account: BYBIT_API_KEY and BYBIT_API_SECRET must be set")
        if mode == "SIM":
            unknown = [s for s in symbols if s not in DEFAULT_INSTRUMENTS]
            if unknown:
                raise CommandError(f"the simulator does not list {', '.join(unknown)}")
            target = ExchangeTarget(kind=SIM, base_url=opts["sim_url"])
        else:
            target = ExchangeTarget(kind=BYBIT, bybit_env=settings.BYBIT_ENV)
        if not settings.REDIS_URL:
            raise CommandError("no Redis: set REDIS_URL, or start the product with `make run`")
        ttl_s = lease_ttl_s(opts["lease_ttl"])

        from scalper_site.db_threads import ClosingOnError
        from trading import alerts, control
        from trading.trader.ports import FailoverServices
        from trading.trader.process import Trader, TraderSettings

        # The failover side is named by a setting (a module, hence import_module), so trading depends only
        # on the shape it needs; the module's functions are checked against it by the trader's tests.
        # Called from the trader's own threads, which no request cycle tidies: a connection the database dropped
        # is closed after the error, so the next call gets a fresh one.
        services = cast(FailoverServices, ClosingOnError(import_module(settings.SCALPER_FAILOVER_SERVICES)))
        trader = Trader(
            TraderSettings(
                mode=mode,
                symbols=symbols,
                run_id=opts["run_id"],
                data_dir=data_dir,
                target=target,
                ping_interval_s=opts["ping_interval"],
                ping_timeout_s=opts["ping_timeout"],
                allow_fault_hooks=opts["allow_fault_hooks"],
                max_runtime_s=opts["max_runtime"],
                lease_ttl_s=ttl_s,
                folder_wait_s=folder_wait_s(opts["folder_wait"]),
            ),
            services=services,
            control=control,
            alerts=alerts,
            lease=account_lease(target, run_id=opts["run_id"], ttl_s=ttl_s),
        )
        signal.signal(signal.SIGTERM, trader.request_stop)
        signal.signal(signal.SIGINT, trader.request_stop)
        sys.exit(trader.run())
