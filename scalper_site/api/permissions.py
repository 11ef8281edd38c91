"""Who may call what: reads need any logged-in user, actions a staff user and a throttle."""

from __future__ import annotations

from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.throttling import ScopedRateThrottle

# One budget per user shared by every action (settings: DEFAULT_THROTTLE_RATES).
ACTION_THROTTLE_SCOPE = "dashboard-actions"


class IsStaff(IsAdminUser):
    """Allow staff users only: actions change the trader's state."""

    message = "This action needs a staff user."


class ActionViewMixin:
    """What every action view shares: authenticated staff only, throttled per user.

    Session requests also pass DRF's CSRF check (SessionAuthentication enforces it).
    """

    permission_classes = [IsAuthenticated, IsStaff]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = ACTION_THROTTLE_SCOPE
