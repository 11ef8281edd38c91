"""Under ASGI the request stack runs in the request's thread: a handful of thread switches, not one per middleware."""

from __future__ import annotations

import asyncio

import pytest
from asgiref import sync
from django.core.asgi import get_asgi_application
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


async def _get(app, path: str) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []
    received = False

    async def receive() -> dict:
        nonlocal received
        if received:
            await asyncio.sleep(3600)
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def _switches(monkeypatch, middleware: list[str]) -> tuple[int, int]:
    counted = []
    original = sync.SyncToAsync.__init__

    def counting(self, *args, **kwargs):
        counted.append(1)
        original(self, *args, **kwargs)

    with override_settings(MIDDLEWARE=middleware):
        app = get_asgi_application()
        monkeypatch.setattr(sync.SyncToAsync, "__init__", counting)
        status = asyncio.run(_get(app, "/api/ping"))
        monkeypatch.setattr(sync.SyncToAsync, "__init__", original)
    return status, len(counted)


def test_the_middleware_chain_and_the_view_run_with_few_thread_switches(monkeypatch, settings):
    stock = [m for m in settings.MIDDLEWARE if m != "scalper_site.middleware.SyncRequestStack"]
    status, ours = _switches(monkeypatch, list(settings.MIDDLEWARE))
    assert status == 403  # through every middleware to the view, which refuses an anonymous caller
    _, without = _switches(monkeypatch, stock)
    # Ours: into the chain, into the view, and the request signals' receivers; stock: two per middleware more.
    assert ours <= 5 and without >= 2 * ours, (ours, without)
