"""Settings of the scalper, read from the environment.

With nothing set the product runs on its embedded defaults: SQLite and a
private Redis under the data folder. ``DATABASE_URL`` and ``REDIS_URL`` point it
at real services; the code path is the same.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from failover.domain import files as private_files
from scalper_site import embedded_redis
from scalper_site.env import env_bool, env_int, env_list, env_str
from scalper_site.metrics.folder import metrics_folder_prepare

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("SCALPER_DATA_DIR", str(BASE_DIR / "data"))).resolve()
# The data folder holds the database (password hashes, sessions, token digests), the secret key and the
# trader's state: owner only, created 0700 and fixed to 0700 at every start of every process.
with contextlib.suppress(OSError):  # a folder this user may not change fails loudly where it is used
    private_files.secure_folder(DATA_DIR)
    private_files.secure_folder(DATA_DIR / "system")

# /metrics: every process writes the histograms it records to its own file in this folder (prometheus-client's
# multiprocess mode) and the web server adds them up at each scrape. The library reads the variable once, at its
# first import, which comes after the settings; child processes inherit it. Each start removes dead processes' files.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR") or str(DATA_DIR / "system" / "metrics")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
with contextlib.suppress(OSError):  # unwritable: samples are dropped (logged once), the scrape says the source is down
    metrics_folder_prepare(Path(PROMETHEUS_MULTIPROC_DIR))
# Loopback clients are served without credentials (off behind a proxy on this host that hides the client's address
# from uvicorn); any other client needs `Authorization: Bearer <SCALPER_METRICS_TOKEN>`.
SCALPER_METRICS_LOOPBACK = env_bool("SCALPER_METRICS_LOOPBACK", True)
SCALPER_METRICS_TOKEN = env_str("SCALPER_METRICS_TOKEN").strip()
if SCALPER_METRICS_TOKEN and len(SCALPER_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("SCALPER_METRICS_TOKEN must be at least 32 characters (or unset)")

DEBUG = env_bool("DEBUG", False)
EMBEDDED = not env_str("DATABASE_URL")


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if not EMBEDDED:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DATABASE_URL is set")
    # Embedded mode: one key per data folder, generated on first run, never committed.
    path = DATA_DIR / "system" / "secret_key"
    try:
        private_files.secure_file(path)  # 0600, even where an older version or a copy left it readable
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        private_files.atomic_write_text(path, key)  # created 0600
        return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Error reports (the DEBUG page, error mails) mask secrets: passwords in URLs, tokens, the webhook.
DEFAULT_EXCEPTION_REPORTER = "scalper_site.security.SanitizingExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "scalper_site.security.SanitizingExceptionReporterFilter"

# HTTPS: SCALPER_HTTPS=1 turns on the redirect, secure cookies and HSTS. Off by default so the
# embedded http://127.0.0.1 setup keeps working; the README's "Production settings" block turns it on.
HTTPS = env_bool("SCALPER_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
# A scraper on this machine speaks plain HTTP to the web server; /metrics has its own access rule.
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# An hour unless told: a browser that saw HSTS refuses plain HTTP for that long, so grow it once HTTPS is proven.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS: the header it sets to "https" (e.g. X-Forwarded-Proto). Set it only
# when the proxy overwrites that header on every request, or a client could claim HTTPS itself.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)

# Content-Security-Policy (django-csp): every script, style and socket of the pages comes from this site
# (the middleware adds the page's own ws:// or wss:// origin). SCALPER_CSP=report-only reports without blocking.
CSP_MODE = env_str("SCALPER_CSP", "enforce")
if CSP_MODE not in {"enforce", "report-only", "off"}:
    raise ImproperlyConfigured(f"SCALPER_CSP={CSP_MODE!r} is not one of enforce, report-only, off")
_csp_policy = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
CONTENT_SECURITY_POLICY = _csp_policy if CSP_MODE == "enforce" else None
CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp_policy if CSP_MODE == "report-only" else None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored as digests with an expiry (replaces rest_framework.authtoken's clear-text keys).
    "knox",
    # Login lockout after repeated failures (see the AXES_* settings below).
    "axes",
    "drf_spectacular",
    # Swagger UI and Redoc as static files of this site (no CDN).
    "drf_spectacular_sidecar",
    "channels",
    "trading",
    "failover",
    "itests",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The Content-Security-Policy header (SCALPER_CSP), on static files too.
    "scalper_site.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused by the lockout into the lockout page (after the view has run).
    "axes.middleware.AxesMiddleware",
    "scalper_site.middleware.SyncRequestStack",  # last: see its docstring
]

# The lockout backend first: it refuses a locked-out user before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "scalper_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "scalper_site" / "templates"],
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

WSGI_APPLICATION = "scalper_site.wsgi.application"
ASGI_APPLICATION = "scalper_site.asgi.application"

# Database: SQLite under the data folder unless DATABASE_URL names another.
if EMBEDDED:
    # SCALPER_SQLITE_PATH lets a child process with its own data folder (an
    # integration run) share the product's database file.
    _sqlite_path = Path(env_str("SCALPER_SQLITE_PATH", str(DATA_DIR / "db.sqlite3")))
    # SQLite would create the file with the umask's mode (often 0644) and gives its -wal and -shm files the
    # database's mode: the file is created 0600 before SQLite opens it, and the three are fixed at every start.
    with contextlib.suppress(OSError):
        private_files.create_private_file(_sqlite_path, companions=("-wal", "-shm"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _sqlite_path,
            "OPTIONS": {
                # Several processes share the file: WAL lets readers run beside the
                # writer, IMMEDIATE takes the write lock up front instead of failing
                # half-way through a transaction, and the timeout waits for it.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    _database: dict[str, Any] = dict(dj_database_url.parse(env_str("DATABASE_URL"), conn_max_age=0))
    DATABASES = {"default": _database}
    if _database["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", True):
        # Under ASGI every request runs its sync code on a fresh thread, so without a pool
        # each one would open a new connection (about 10 ms here). The pool keeps them.
        # A connection not had within the timeout is an error (the pool logs why it could not connect):
        # 30 s, psycopg's default, would stall a trader's pipeline that long on every write.
        pool = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_SIZE", 10),
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 5),
        }
        _database.setdefault("OPTIONS", {})["pool"] = pool

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "scalper_site" / "static"]

# The dashboard page and its login (Django's auth views, our template).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login lockout (django-axes), for the dashboard login and the admin login alike: after
# SCALPER_LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is refused for
# SCALPER_LOGIN_LOCKOUT_MINUTES, counted again from each refused try. Keyed on the pair, so an
# attacker cannot lock the operator out from another address. The address is REMOTE_ADDR, which
# uvicorn sets from X-Forwarded-For only for a peer in FORWARDED_ALLOW_IPS (loopback by default):
# behind a proxy on another host the operator names it there (README, "Configuration").
AXES_FAILURE_LIMIT = env_int("SCALPER_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SCALPER_LOGIN_LOCKOUT_MINUTES", 15))
if AXES_FAILURE_LIMIT < 1 or env_int("SCALPER_LOGIN_LOCKOUT_MINUTES", 15) < 1:
    raise ImproperlyConfigured("SCALPER_LOGIN_FAILURE_LIMIT and SCALPER_LOGIN_LOCKOUT_MINUTES must be at least 1")
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Headers a client sends are never trusted here: one place (the ASGI server) resolves proxies.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 403
# The database handler, wrapped to write one scalper.security line per failed login.
AXES_HANDLER = "scalper_site.logins.LoggingAxesHandler"

# Redis: the Celery broker and result store, the channel layer and the
# notification bus between processes. REDIS_URL names an existing server; without
# it, the URL the embedded server published under the data folder is used.
REDIS_URL = env_str("REDIS_URL") or embedded_redis.read_url_file(DATA_DIR)

CELERY_BROKER_URL = REDIS_URL or "redis://redis-not-configured.invalid:6379/0"
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ALWAYS_EAGER = False
# Several environments may share one Redis; each has its own queue name.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "scalper")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
# The beat process (`run_stack` starts one) runs the sweepers that finish what a lost worker left
# behind: recovery steps stuck RUNNING, plans due for a retry, integration runs gone quiet.
SWEEP_EVERY_S = env_int("SCALPER_SWEEP_EVERY_S", 10)
if SWEEP_EVERY_S < 1:
    raise ImproperlyConfigured(f"SCALPER_SWEEP_EVERY_S must be at least 1 second, got {SWEEP_EVERY_S}")
# Days of failover state history kept (each change of safe mode, reason, trading switch, with its version).
SCALPER_FAILOVER_HISTORY_DAYS = env_int("SCALPER_FAILOVER_HISTORY_DAYS", 30)
if SCALPER_FAILOVER_HISTORY_DAYS < 1:
    raise ImproperlyConfigured(f"SCALPER_FAILOVER_HISTORY_DAYS must be at least 1, got {SCALPER_FAILOVER_HISTORY_DAYS}")
# The equity curve: the trader samples the exchange wallet this often (and after every position close);
# samples older than the retention are deleted hourly.
SCALPER_EQUITY_SAMPLE_EVERY_S = env_int("SCALPER_EQUITY_SAMPLE_EVERY_S", 60)
if SCALPER_EQUITY_SAMPLE_EVERY_S < 5:
    raise ImproperlyConfigured(f"SCALPER_EQUITY_SAMPLE_EVERY_S must be at least 5, got {SCALPER_EQUITY_SAMPLE_EVERY_S}")
SCALPER_EQUITY_RETENTION_DAYS = env_int("SCALPER_EQUITY_RETENTION_DAYS", 90)
if SCALPER_EQUITY_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"SCALPER_EQUITY_RETENTION_DAYS must be at least 1, got {SCALPER_EQUITY_RETENTION_DAYS}")
# How often the dead-man guardian looks for accounts no trader holds the lease of.
DEADMAN_EVERY_S = env_int("SCALPER_DEADMAN_EVERY_S", 5)
if DEADMAN_EVERY_S < 1:
    raise ImproperlyConfigured(f"SCALPER_DEADMAN_EVERY_S must be at least 1 second, got {DEADMAN_EVERY_S}")


def _once_per_period(task: str, every_s: float) -> dict[str, Any]:
    """A beat entry sent through ``failover.scheduled``: a Redis lock per run, so a second beat does no harm."""
    return {"task": "failover.scheduled", "schedule": every_s, "kwargs": {"task": task, "period_s": every_s}}


CELERY_BEAT_SCHEDULE = {
    "failover-sweep-stuck-steps": _once_per_period("failover.sweep_stuck_steps", float(SWEEP_EVERY_S)),
    "itests-sweep-runs": _once_per_period("itests.sweep_runs", float(SWEEP_EVERY_S)),
    "failover-prune-state-history": _once_per_period("failover.prune_state_history", 3600.0),
    "trading-prune-equity-samples": _once_per_period("trading.prune_equity_samples", 3600.0),
    "failover-deadman-guard": _once_per_period("failover.deadman_guard", float(DEADMAN_EVERY_S)),
}

CHANNEL_LAYER_SOCKET_TIMEOUT_S = 15  # above channels_redis's 5 s blocking receive
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis waits for a message in BZPOPMIN for up to 5 s, and redis-py 8 gives every connection a
        # 5 s socket timeout by default: an idle consumer then died with TimeoutError about every 5.5 s. The
        # socket timeout must exceed the longest blocking wait (and still bounds a Redis that stops answering).
        "CONFIG": {
            "hosts": [{"address": CELERY_BROKER_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_S,
                       "socket_connect_timeout": 5}],
            "prefix": "scalper",
        },
    }
}
# The dashboard's websocket (failover/consumers.py): sockets per user in one web process, and how often
# an open socket checks that its session still exists (logout, expiry), closing it when it does not.
WS_MAX_SOCKETS_PER_USER = env_int("SCALPER_WS_MAX_PER_USER", 5)
WS_SESSION_CHECK_S = env_int("SCALPER_WS_SESSION_CHECK_S", 10)
# How often each dashboard socket re-reads its panels and pushes those that changed; 0: never.
WS_PANELS_INTERVAL_S: float = env_int("SCALPER_WS_PANELS_INTERVAL_S", 2)
if WS_MAX_SOCKETS_PER_USER < 1 or WS_SESSION_CHECK_S < 1:
    raise ImproperlyConfigured("SCALPER_WS_MAX_PER_USER and SCALPER_WS_SESSION_CHECK_S must be at least 1")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # `Authorization: Token <key>`; the database keeps only a digest and an expiry.
        "scalper_site.logins.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The schema documents the framework's refusals (400/401/403/406/415/429) on every operation.
    "DEFAULT_SCHEMA_CLASS": "scalper_site.api.schema.ApiAutoSchema",
    # JSON bodies only (anything else is a 415), bounded in size and nesting; one error shape, never an HTML 500.
    "DEFAULT_PARSER_CLASSES": ["scalper_site.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "scalper_site.api.errors.api_exception_handler",
    # Operator actions (panic close, safe-mode exit, recovery retry, integration runs) share one budget per user.
    "DEFAULT_THROTTLE_RATES": {"dashboard-actions": env_str("API_ACTION_RATE", "30/min")},
}

# API tokens (django-rest-knox): `manage.py issue_token <username>` prints one once; the database
# holds its SHA-512 digest and expiry. The header keeps the form the API has always used.
API_TOKEN_TTL_DAYS = env_int("SCALPER_API_TOKEN_TTL_DAYS", 30)
if API_TOKEN_TTL_DAYS < 1:
    raise ImproperlyConfigured(f"SCALPER_API_TOKEN_TTL_DAYS must be at least 1, got {API_TOKEN_TTL_DAYS}")
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Scalper API",
    "DESCRIPTION": "Failover status, integration runs, trading state, trade history, PnL, equity and per-symbol "
    "status of the scalper. Every endpoint needs a login session or `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/schema/swagger-ui/ and /api/schema/redoc/ load their scripts from this site's static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The module whose functions the trader calls to register, report and clear failures and read the gate
# (the shape is trading.trader.ports.FailoverServices): named here so trading never imports the failover app.
SCALPER_FAILOVER_SERVICES = "failover.services"

# The account lease's TTL in seconds (renewed at a third of it): a standby takes over within about this long
# after its leader dies. ``run_trader --lease-ttl`` overrides it; checked there (1..3600).
SCALPER_LEASE_TTL_S = env_str("SCALPER_LEASE_TTL_S", "10")

# Bybit credentials come only from the environment. SIM mode uses the
# simulator's documented test key pair, never these.
BYBIT_API_KEY = env_str("BYBIT_API_KEY")
BYBIT_API_SECRET = env_str("BYBIT_API_SECRET")
BYBIT_ENV = env_str("BYBIT_ENV", "mainnet")  # mainnet | testnet | demo

# Alert sinks beyond the database and the dashboard: off until configured.
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
TELEGRAM_BOT_TOKEN = env_str("TELEGRAM_BOT_TOKEN")
TELEGRAM_CHAT_ID = env_str("TELEGRAM_CHAT_ID")
TELEGRAM_API_BASE = env_str("TELEGRAM_API_BASE", "https://api.telegram.org")
ALERT_HTTP_TIMEOUT_S = float(env_str("ALERT_HTTP_TIMEOUT_S", "3"))
# Alerts waiting for one outside sink, per process; past it an alert is dropped for that sink (counted, logged).
SCALPER_ALERT_QUEUE_SIZE = env_int("SCALPER_ALERT_QUEUE_SIZE", 1000)
if SCALPER_ALERT_QUEUE_SIZE < 1:
    raise ImproperlyConfigured(f"SCALPER_ALERT_QUEUE_SIZE must be at least 1, got {SCALPER_ALERT_QUEUE_SIZE}")
# Email alerts: on when SCALPER_ALERT_EMAIL_TO names recipients, sent through Django's mail settings.
SCALPER_ALERT_EMAIL_TO = env_list("SCALPER_ALERT_EMAIL_TO", [])
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # TLS from the first byte, usually port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
# Seconds for each SMTP connect and answer: Django's default (None) would let a dead server hold the sender for ever.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
if EMAIL_TIMEOUT < 1:
    raise ImproperlyConfigured(f"EMAIL_TIMEOUT must be at least 1 second, got {EMAIL_TIMEOUT}")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "scalper@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "scalper_site.logformat.JsonFormatter"},
    },
    # LOG_FORMAT=json gives one JSON object a line (for log shippers); plain is for people.
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": env_str("LOG_FORMAT", "plain")}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Failed logins and lockouts: kept at INFO whatever LOG_LEVEL says.
        "scalper.security": {"level": "INFO"},
        # axes' own lines repeat ours at INFO (one per login); its warnings stay.
        "axes": {"level": "WARNING"},
    },
}
