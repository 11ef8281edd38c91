"""Who may call what: reads need any logged-in user, actions a staff user and a throttle, dangerous actions
(those that stop, resume or close trading) the ``failover.operate_trader`` permission as well."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from failover.services import operator_action_record

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


OPERATE_TRADER = "failover.operate_trader"  # "Can carry out dangerous trader actions" (failover's state model)


class CanOperateTrader(BasePermission):
    """Allow users holding ``failover.operate_trader`` (superusers hold every permission); audit a refusal."""

    message = "This action needs the permission to operate the trader (failover.operate_trader), not only staff."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.user.has_perm(OPERATE_TRADER):
            return True
        # Staff reached this far: a refused dangerous action is part of the audit trail too.
        operator_action_record(user=request.user.get_username(), action="PERMISSION_DENIED",
                               details={"path": request.path, "method": request.method, "outcome": "refused",
                                        "needs": OPERATE_TRADER})
        return False


class DangerousActionViewMixin(ActionViewMixin):
    """An action that stops, resumes or closes trading: staff and ``failover.operate_trader``, throttled."""

    permission_classes = [IsAuthenticated, IsStaff, CanOperateTrader]
