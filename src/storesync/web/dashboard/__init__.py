"""The operator dashboard (mounted at /dashboard by `storesync.web.app.create_app`)."""

from storesync.web.dashboard.app import create_dashboard
from storesync.web.dashboard.settings import DashboardSettings

__all__ = ["DashboardSettings", "create_dashboard"]
