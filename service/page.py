"""The page for people at `/`: one static HTML file (vanilla JS) that calls /v1/classify."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()


def page_html() -> str:
    # Read from the installed package, so the page ships inside the wheel (package-data).
    return resources.files("service").joinpath("static/index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})
