"""API documentation by environment: public locally, superusers only in staging, none in production."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from gateway.deps import superuser
from meshplate_core.settings import Environment


def docs_router(app: FastAPI, environment: Environment) -> APIRouter | None:
    """The docs routes for this environment, or None where there are none (production: 404)."""
    if environment == "production":
        return None
    guards = [Depends(superuser)] if environment == "staging" else []
    router = APIRouter(include_in_schema=False, dependencies=guards)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    return router
