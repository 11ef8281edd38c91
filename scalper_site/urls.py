from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from scalper_site import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", views.ApiRootView.as_view(), name="api-root"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include("failover.urls")),
]
