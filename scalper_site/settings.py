"""Settings of the scalper, read from the environment.

With nothing set the product runs on its embedded defaults: SQLite and a
private Redis under the data folder. ``DATABASE_URL`` and ``REDIS_URL`` point it
at real services; the code path is the same.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from scalper_site import embedded_redis
from scalper_site.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("SCALPER_DATA_DIR", str(BASE_DIR / "data"))).resolve()

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
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(key)
        tmp.chmod(0o600)
        tmp.replace(path)
        return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "trading",
    "failover",
    "itests",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "scalper_site.middleware.SyncRequestStack",  # last: see its docstring
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
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # SCALPER_SQLITE_PATH lets a child process with its own data folder (an
            # integration run) share the product's database file.
            "NAME": Path(env_str("SCALPER_SQLITE_PATH", str(DATA_DIR / "db.sqlite3"))),
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
SWEEP_EVERY_S = env_int("SCALPER_SWEEP_EVERY_S", 30)
if SWEEP_EVERY_S < 1:
    raise ImproperlyConfigured(f"SCALPER_SWEEP_EVERY_S must be at least 1 second, got {SWEEP_EVERY_S}")
CELERY_BEAT_SCHEDULE = {
    "failover-sweep-stuck-steps": {"task": "failover.sweep_stuck_steps", "schedule": float(SWEEP_EVERY_S)},
    "itests-sweep-runs": {"task": "itests.sweep_runs", "schedule": float(SWEEP_EVERY_S)},
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [CELERY_BROKER_URL], "prefix": "scalper"},
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Operator actions (panic close, safe-mode exit, recovery retry, integration runs) share one budget per user.
    "DEFAULT_THROTTLE_RATES": {"dashboard-actions": env_str("API_ACTION_RATE", "30/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Scalper API",
    "DESCRIPTION": "Failover status, integration runs and trading state of the scalper.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# The module whose functions the trader calls to register, report and clear failures and read the gate
# (the shape is trading.trader.ports.FailoverServices): named here so trading never imports the failover app.
SCALPER_FAILOVER_SERVICES = "failover.services"

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
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
