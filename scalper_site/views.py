from __future__ import annotations

from django.conf import settings
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView


class ApiRootView(APIView):
    """List the API's entry points."""

    def get(self, request):
        return Response(
            {
                "schema": reverse("api-schema", request=request),
                "embedded": settings.EMBEDDED,
            }
        )
