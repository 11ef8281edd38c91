"""A constant ping (the benchmark's baseline) and the dashboard page; the API root is ``scalper_site.api.docs``."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class PingView(APIView):
    """Answer a constant: the authenticated baseline the dashboard benchmark compares against."""

    @extend_schema(operation_id="ping", responses=inline_serializer("Pong", {"pong": serializers.BooleanField()}))
    def get(self, request):
        return Response({"pong": True})


@method_decorator([login_required, ensure_csrf_cookie], name="dispatch")
class DashboardView(View):
    """The dashboard page; its script reads the API and listens on ``/ws/failover/``.

    ``ensure_csrf_cookie``: the page's POSTs send the token from the cookie.
    """

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "dashboard.html", {"embedded": settings.EMBEDDED})
