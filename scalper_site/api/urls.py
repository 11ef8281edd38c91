"""Routes of the dashboard API (mounted under ``/api/``)."""

from __future__ import annotations

from django.urls import path, re_path

from scalper_site.api import account_views, errors, failover_views, integration_views, trading_views

urlpatterns = [
    path("failover/status", failover_views.FailoverStatusView.as_view(), name="failover-status"),
    path("failover/state/history", failover_views.FailoverStateHistoryView.as_view(), name="failover-state-history"),
    path("failover/conditions", failover_views.SafeModeConditionsView.as_view(), name="failover-conditions"),
    path("failover/episodes", failover_views.SafeModeEpisodesView.as_view(), name="failover-episodes"),
    path("failover/retry-recovery", failover_views.RecoveryRetryView.as_view(), name="failover-retry-recovery"),
    path("failover/exit-safe-mode", failover_views.SafeModeExitView.as_view(), name="failover-exit-safe-mode"),
    path("failover/enter-safe-mode", failover_views.SafeModeEnterView.as_view(), name="failover-enter-safe-mode"),
    path("trader/halt", failover_views.TraderHaltView.as_view(), name="trader-halt"),
    path("trader/resume", failover_views.TraderResumeView.as_view(), name="trader-resume"),
    path("tests/integration/scenarios", integration_views.ScenarioListView.as_view(), name="integration-scenarios"),
    path("tests/integration/run", integration_views.RunStartView.as_view(), name="integration-run"),
    path("tests/integration/runs", integration_views.RunListView.as_view(), name="integration-runs"),
    path(
        "tests/integration/runs/<str:run_id>",
        integration_views.RunReportView.as_view(),
        name="integration-run-report",
    ),
    path("health", trading_views.HealthView.as_view(), name="health"),
    path("alerts", trading_views.AlertListView.as_view(), name="alerts"),
    path("positions", trading_views.PositionListView.as_view(), name="positions"),
    path("orders", trading_views.OrderListView.as_view(), name="orders"),
    path("positions/<str:symbol>/close", trading_views.PositionCloseView.as_view(), name="position-close"),
    path("orders/<str:order_link_id>/cancel", trading_views.OrderCancelView.as_view(), name="order-cancel"),
    path("dashboard/panels", account_views.DashboardPanelsView.as_view(), name="dashboard-panels"),
    path("execution/panic-close", trading_views.PanicCloseView.as_view(), name="execution-panic-close"),
    path("trades", account_views.TradeListView.as_view(), name="trades"),
    path("pnl/summary", account_views.PnlSummaryView.as_view(), name="pnl-summary"),
    path("equity", account_views.EquityView.as_view(), name="equity"),
    path("symbols/status", account_views.SymbolStatusView.as_view(), name="symbols-status"),
    # Last: any other path under /api/ (a run id with a slash in it, a typo) is the API's JSON 404, not an HTML page.
    re_path(r"^.*$", errors.NotFoundView.as_view(), name="api-not-found"),
]
