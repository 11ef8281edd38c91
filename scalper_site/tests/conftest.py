"""Fixtures the API tests share: the OpenAPI document as served, and a logged-in user without staff rights."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The OpenAPI document as the API serves it (JSON, lazy strings resolved)."""
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


@pytest.fixture
def viewer() -> Client:
    """A logged-in user who is not staff."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("viewer", password="pw-123456-x", is_staff=False))
    return client
