"""URL routes: the dashboard page, login, admin, the API and its schema."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from scalper_site import views
from scalper_site.api import docs
from scalper_site.metrics.views import MetricsView

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", docs.ApiRootView.as_view(), name="api-root"),
    path("api/ping", views.PingView.as_view(), name="api-ping"),
    # Nothing answers without authentication, the schema and its pages included (drf-spectacular serves them
    # to anyone by default).
    path("api/schema/", docs.SchemaView.as_view(), name="api-schema"),
    path("api/schema/swagger-ui/", docs.swagger_ui, name="api-swagger-ui"),
    path("api/schema/redoc/", docs.redoc, name="api-redoc"),
    path("api/", include("scalper_site.api.urls")),
    path("metrics", MetricsView.as_view(), name="metrics"),  # Prometheus; loopback or bearer token (README, "Metrics")
]
