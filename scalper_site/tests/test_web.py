from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from knox.models import AuthToken

pytestmark = pytest.mark.django_db


def test_admin_login_page_answers(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


def test_api_root_requires_authentication(client):
    assert client.get("/api/").status_code == 403


def test_api_root_answers_a_logged_in_user(client):
    user = get_user_model().objects.create_user("op", password="pw-123456")
    client.force_login(user)
    response = client.get("/api/")
    assert response.status_code == 200
    assert response.json()["schema"].endswith("/api/schema/")


def test_api_root_answers_a_token(client):
    user = get_user_model().objects.create_user("script", password="pw-123456")
    _, key = AuthToken.objects.create(user=user)
    response = client.get("/api/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200


def test_openapi_schema_is_served(client):
    user = get_user_model().objects.create_user("op2", password="pw-123456")
    client.force_login(user)
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
