"""URL routes: the dashboard page, login, admin, the API and its schema."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import IsAuthenticated

from scalper_site import views

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", views.ApiRootView.as_view(), name="api-root"),
    path("api/ping", views.PingView.as_view(), name="api-ping"),
    # Nothing answers without authentication, the schema included (drf-spectacular serves it to anyone by default).
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="api-schema"),
    path("api/", include("scalper_site.api.urls")),
]
