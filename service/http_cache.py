"""Conditional GET: an ETag per answer, and 304 Not Modified when the client already has it."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel


def etag_matches(request: Request, etag: str) -> bool:
    """RFC 9110 If-None-Match: a list of (weak or strong) tags, or `*`."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def cacheable(etag: str, cache_control: str, headers: dict[str, str]) -> dict[str, str]:
    """The caching headers of an answer (what a 304 must repeat too)."""
    return {"ETag": etag, "Cache-Control": cache_control, **headers}


def conditional_json(
    request: Request, body: BaseModel, etag: str, cache_control: str, headers: dict[str, str] | None = None
) -> Response:
    """`body` as JSON with its ETag, or an empty 304 when If-None-Match already names it."""
    all_headers = cacheable(etag, cache_control, headers or {})
    if etag_matches(request, etag):
        return Response(status_code=304, headers=all_headers)
    return JSONResponse(body.model_dump(mode="json"), headers=all_headers)


def conditional_bytes(
    request: Request, data: bytes, media_type: str, etag: str, cache_control: str
) -> Response:
    headers = cacheable(etag, cache_control, {})
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)
