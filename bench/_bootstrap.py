"""How the benchmarks that need the whole Django project set it up: imported first, before the project.

Two ways, as the benchmarks need them:
- ``on_machine_services``: REDIS_URL and DATABASE_URL from the environment; unset,
  the machine's Redis (database 9) and an embedded SQLite file in a temp folder;
- ``embedded``: everything private to the run, a temp data folder with its own
  SQLite file and an embedded Redis (stop it at the end).
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def on_machine_services(name: str) -> None:
    """Set the environment's defaults for benchmark ``name`` and start Django."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "scalper_site.settings"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    if not os.environ.get("DATABASE_URL"):
        os.environ.setdefault("SCALPER_DATA_DIR", tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret")
    os.environ.setdefault("CELERY_QUEUE", f"bench-{name}-{uuid.uuid4().hex[:8]}")
    import django

    django.setup()


def embedded(name: str) -> tuple[Path, Any]:
    """Start Django on a private data folder and an embedded Redis; return the folder and the Redis."""
    data = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ["SCALPER_DATA_DIR"] = str(data)
    os.environ["DJANGO_SETTINGS_MODULE"] = "scalper_site.settings"
    os.environ.pop("DATABASE_URL", None)
    from scalper_site.embedded_redis import EmbeddedRedis

    redis = EmbeddedRedis(data)
    os.environ["REDIS_URL"] = redis.start()
    import django

    django.setup()
    return data, redis
