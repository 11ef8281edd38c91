from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys

import pytest

from scalper_site.env import env_bool, env_int, env_list
from scalper_site.testkit import BASE_DIR

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']), "
    "'key': s.SECRET_KEY, 'debug': s.DEBUG, 'redis': s.REDIS_URL, 'broker': s.CELERY_BROKER_URL, "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND']}))"
)


def _settings_in_child(tmp_path, **env: str) -> subprocess.CompletedProcess:
    child_env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DEBUG"}
    }
    child_env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=BASE_DIR, env=child_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow  # loads the settings in a child interpreter
def test_embedded_defaults_use_sqlite_and_generate_a_secret_key_once(tmp_path):
    first = _settings_in_child(tmp_path)
    assert first.returncode == 0, first.stderr
    values = json.loads(first.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(tmp_path / "db.sqlite3")
    assert values["debug"] is False
    assert values["layer"] == "channels_redis.core.RedisChannelLayer"
    key_file = tmp_path / "system" / "secret_key"
    assert key_file.read_text() == values["key"]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = json.loads(_settings_in_child(tmp_path).stdout)
    assert second["key"] == values["key"]


@pytest.mark.slow  # loads the settings in a child interpreter
def test_embedded_mode_finds_the_redis_url_published_under_the_data_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis.url").write_text("redis://:pw@127.0.0.1:6390/0\n")
    values = json.loads(_settings_in_child(tmp_path).stdout)
    assert values["redis"] == values["broker"] == "redis://:pw@127.0.0.1:6390/0"


@pytest.mark.slow  # loads the settings in a child interpreter
def test_database_url_without_secret_key_is_refused(tmp_path):
    result = _settings_in_child(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/x")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DATABASE_URL is set" in result.stderr


@pytest.mark.slow  # loads the settings in a child interpreter
def test_database_and_redis_urls_select_real_services(tmp_path):
    result = _settings_in_child(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/scalper",
        REDIS_URL="redis://127.0.0.1:6379/3",
        DJANGO_SECRET_KEY="k" * 50,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "scalper"
    assert values["broker"] == "redis://127.0.0.1:6379/3"
    assert not (tmp_path / "system" / "secret_key").exists()


@pytest.mark.services
def test_an_unreachable_database_fails_fast_and_says_why(tmp_path):
    code = "import django; django.setup(); from django.db import connection; connection.ensure_connection()"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SECRET_KEY"}}
    env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(tmp_path),
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/no_such_database", "DJANGO_SECRET_KEY": "k" * 50,
                "DATABASE_POOL_TIMEOUT": "2"})
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert 'database "no_such_database" does not exist' in result.stderr
    assert "couldn't get a connection after 2.00 sec" in result.stderr


@pytest.mark.slow  # loads the settings in a child interpreter
def test_invalid_boolean_in_environment_is_a_clear_error(tmp_path):
    result = _settings_in_child(tmp_path, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", " a, b,,c ")
    assert env_bool("X_BOOL") is True
    assert env_int("X_INT", 1) == 42
    assert env_list("X_LIST") == ["a", "b", "c"]
    assert env_int("X_MISSING", 7) == 7
    monkeypatch.setenv("X_INT", "4x")
    with pytest.raises(ValueError, match="X_INT='4x' is not an integer"):
        env_int("X_INT", 1)


# What a developer's or CI's shell may hold that would change what the checks see.
SECURITY_ENV = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS",
                "SCALPER_HTTPS", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
                "SECURE_PROXY_SSL_HEADER", "SCALPER_CSP"}


def readme_production_settings() -> dict[str, str]:
    """The variables of the README's "Production settings" block, as an operator would export them."""
    section = (BASE_DIR / "README.md").read_text().split("### Production settings\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    variables = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            variables[name] = value
    return variables


def _in_child(tmp_path, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV}
    child_env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(tmp_path),
                      "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **env})
    return subprocess.run([sys.executable, *argv], cwd=BASE_DIR, env=child_env, capture_output=True, text=True,
                          timeout=120)


DEPLOY_CHECK = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


@pytest.mark.slow  # runs manage.py in a child interpreter
def test_check_deploy_finds_nothing_with_the_readmes_production_settings(tmp_path):
    production = readme_production_settings()
    assert production["SCALPER_HTTPS"] == "1", production  # the block was found and read
    result = _in_child(tmp_path, DEPLOY_CHECK, **production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow  # runs manage.py in a child interpreter
def test_check_deploy_names_what_the_http_defaults_leave_off(tmp_path):
    """The embedded defaults serve http://127.0.0.1: the deploy check lists exactly what SCALPER_HTTPS turns on."""
    result = _in_child(tmp_path, DEPLOY_CHECK)
    assert result.returncode != 0
    found = set(re.findall(r"\(security\.(W\d+)\)", result.stderr))
    assert found == {"W004", "W008", "W012", "W016"}, result.stderr


PRINT_HTTPS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({name: getattr(s, name) for name in ('SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', "
    "'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
    "'SECURE_PROXY_SSL_HEADER')}))"
)


@pytest.mark.slow  # loads the settings in a child interpreter
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, [False, False, False, 0, False, False, None], id="defaults"),
        pytest.param({"SCALPER_HTTPS": "1"}, [True, True, True, 3600, False, False, None], id="https"),
        pytest.param({"SCALPER_HTTPS": "1", "SECURE_HSTS_SECONDS": "600",
                      "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
                     [True, True, True, 600, False, False, ["HTTP_X_FORWARDED_PROTO", "https"]], id="behind-a-proxy"),
    ],
)
def test_https_settings_come_from_the_environment(tmp_path, env, expected):
    result = _in_child(tmp_path, ["-c", PRINT_HTTPS], **env)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout).values()) == expected


@pytest.mark.slow  # loads the settings in a child interpreter
def test_an_unknown_csp_mode_is_a_clear_error(tmp_path):
    result = _in_child(tmp_path, ["-c", "import django; django.setup()"], SCALPER_CSP="strict")
    assert result.returncode != 0
    assert "SCALPER_CSP='strict' is not one of enforce, report-only, off" in result.stderr
