"""The panel's home page: every service's readiness (as `/health/ready` reports it) and the
requests this gateway answered over the last minute, with their 5xx."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette_admin import CustomView
from starlette_admin.routing import route

from gateway.admin.traffic import Traffic
from gateway.clients import HealthClient
from gateway.routes.health import redis_check
from gateway.settings import Settings


class Dashboard(CustomView):
    """Readiness and traffic, refreshed every 10 s."""

    menu_label = "Dashboard"
    icon = "fa fa-gauge"

    def __init__(self, traffic: Traffic) -> None:
        super().__init__(path="/")
        self._traffic = traffic

    @route("")
    async def index(self, request: Request) -> Response:
        assert self.templates is not None  # mounted
        settings: Settings = request.state.settings
        health: HealthClient = request.state.health
        checks = await health.check_all()
        checks["redis"] = await redis_check(request.state.redis, settings.health_timeout_s)
        return self.templates.TemplateResponse(
            request=request,
            name="dashboard.html",
            context={
                "title": "Dashboard",
                "checks": checks,
                "traffic": self._traffic.last_minute(),
            },
        )
