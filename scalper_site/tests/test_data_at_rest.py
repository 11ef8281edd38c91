"""Data at rest: the data folder is 0700 and its secrets and databases 0600, on creation and fixed at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalper_site.testkit import BASE_DIR

pytestmark = pytest.mark.slow  # loads the settings in a child interpreter

PRIVATE = ("", "system", "system/secret_key", "db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm")

# Load the settings, write to the SQLite database, and report the modes while it is open: SQLite removes
# its -wal and -shm files when the last connection closes.
USE_THE_DATABASE = f"""
import django, json, os, stat
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS probe (x)")
    cursor.execute("INSERT INTO probe VALUES (1)")
    print(json.dumps({{name or ".": oct(stat.S_IMODE(os.stat(settings.DATA_DIR / name).st_mode))
                      for name in {PRIVATE!r}}}))
"""


def _start_a_process(data: Path) -> dict[str, str]:
    """Start a product process on ``data`` under umask 022; return the modes it left, by name."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SECRET_KEY", "SCALPER_SQLITE_PATH"}}
    env.update({"DJANGO_SETTINGS_MODULE": "scalper_site.settings", "SCALPER_DATA_DIR": str(data),
                "REDIS_URL": "redis://127.0.0.1:1/0"})
    # umask 022, the usual default: without the product's care every new file would be world-readable.
    result = subprocess.run(["sh", "-c", 'umask 022 && exec "$0" -c "$1"', sys.executable, USE_THE_DATABASE],
                            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_new_data_folder_is_created_private(tmp_path):
    modes = _start_a_process(tmp_path / "data")
    assert modes == {".": "0o700", "system": "0o700", "system/secret_key": "0o600",
                     "db.sqlite3": "0o600", "db.sqlite3-wal": "0o600", "db.sqlite3-shm": "0o600"}


def test_a_start_fixes_a_data_folder_left_readable(tmp_path):
    data = tmp_path / "data"
    _start_a_process(data)
    key = (data / "system" / "secret_key").read_text()
    # As an older version, a copy or a restore from backup may leave them: readable by every user.
    for path in (data, data / "system"):
        path.chmod(0o755)
    for path in (data / "system" / "secret_key", data / "db.sqlite3"):
        path.chmod(0o644)

    modes = _start_a_process(data)

    assert modes == {".": "0o700", "system": "0o700", "system/secret_key": "0o600",
                     "db.sqlite3": "0o600", "db.sqlite3-wal": "0o600", "db.sqlite3-shm": "0o600"}
    assert (data / "system" / "secret_key").read_text() == key  # the same key: sessions survive the fix
