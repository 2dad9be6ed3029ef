"""Admin endpoints, behind a bearer token from ADMIN_TOKEN: POST /v1/admin/reload."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from service.errors import ApiError

router = APIRouter()
_bearer = HTTPBearer(auto_error=False)  # our own 401/403 bodies, not FastAPI's


class ReloadResponse(BaseModel):
    status: str = Field(
        description="reloaded, or unchanged when CURRENT names the served version", examples=["reloaded"]
    )
    serving: str | None = Field(
        description="the version in service now", examples=["20261125T043000Z-1a2b3c"]
    )
    current: str | None = Field(
        description="the version the CURRENT pointer names", examples=["20261125T043000Z-1a2b3c"]
    )


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = request.app.state.settings.admin_token
    if token is None:  # no token configured: the admin surface does not exist
        raise ApiError(404, "not_found", "Not Found")
    if credentials is None:
        raise ApiError(
            401, "unauthorized", "An admin bearer token is required.", {"WWW-Authenticate": "Bearer"}
        )
    if not secrets.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "The bearer token is not the admin token.")


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    include_in_schema=True,
    summary="Load the version CURRENT names now (also retries a refused one)",
    responses={
        401: {},
        403: {},
        404: {},
        409: {"description": "the bundle was refused"},
        503: {"description": "the store or CURRENT cannot be read now; retry later"},
    },
)
async def reload(request: Request, _: Annotated[None, Depends(require_admin)]) -> ReloadResponse:
    outcome = await asyncio.to_thread(request.app.state.reloader.reload, retry_refused=True)
    if outcome.status == "refused":
        raise ApiError(
            409,
            "bundle_refused",
            f"version {outcome.current} refused: {outcome.error}; still serving {outcome.serving}",
        )
    if outcome.status == "unavailable":
        raise ApiError(
            503,
            "storage_unavailable",
            f"the bundle store cannot be read now ({outcome.error}); still serving {outcome.serving}",
            {"Retry-After": "5"},
        )
    return ReloadResponse(status=outcome.status, serving=outcome.serving, current=outcome.current)
