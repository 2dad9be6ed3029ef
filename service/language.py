"""The language of an answer: the `lang` query parameter, else Accept-Language, else English."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query, Response

from models.catalog import DEFAULT_LANGUAGE, LANGUAGES, negotiate_language


def answer_language(
    response: Response,
    lang: Annotated[
        str | None,
        Query(
            max_length=35,
            description=f"language of names and facts, one of {', '.join(LANGUAGES)}; wins over "
            "Accept-Language. Another value falls back to English (see Content-Language).",
            examples=["fr"],
        ),
    ] = None,
    accept_language: Annotated[
        str | None,
        Header(max_length=500, description="the client's languages, e.g. fr-FR,fr;q=0.9,en;q=0.8"),
    ] = None,
) -> str:
    """A FastAPI dependency: the chosen language, also sent back as Content-Language."""
    if lang is not None:
        primary = lang.strip().lower().split("-")[0]
        chosen = primary if primary in LANGUAGES else DEFAULT_LANGUAGE
    else:
        chosen = negotiate_language(accept_language)
    response.headers["Content-Language"] = chosen
    return chosen
