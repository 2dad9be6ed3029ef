"""The schema a client generates code from: every field described with an example, error codes
as an enum that covers every code the source can answer, raw uploads and the key scheme declared."""

from __future__ import annotations

import re

import httpx

from tests.support import REPO_ROOT

# FastAPI's own validation schemas and the generated multipart bodies are not ours to document.
NOT_OURS = re.compile(r"^(HTTPValidationError|ValidationError|Body_.*)$")
# Where error codes are written: ApiError(status, "code"), ImageError("code"), error bodies.
CODE_PATTERNS = [
    r'ApiError\(\s*\d+,\s*"([a-z_]+)"',
    r'ImageError\(\s*"([a-z_]+)"',
    r'_error\(\s*send,\s*\d+,\s*"([a-z_]+)"',
    r'error_response\(\s*\d+,\s*"([a-z_]+)"',
    r'"code": "([a-z_]+)"',
    r'\d{3}: "([a-z_]+)"',
    r'codes\.get\([^,]+, "([a-z_]+)"\)',
]


def _schema(service_url: str) -> dict:
    return httpx.get(f"{service_url}/openapi.json", timeout=30).json()


def test_every_field_has_a_description_and_an_example(service_url):
    missing = []
    for name, schema in _schema(service_url)["components"]["schemas"].items():
        if NOT_OURS.match(name) or schema.get("type") == "string":  # enums document themselves
            continue
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}: description")
            nested = (
                "$ref" in prop
                or "$ref" in prop.get("items", {})
                or any("$ref" in p or "$ref" in p.get("items", {}) for p in prop.get("anyOf", []))
            )
            if not nested and "examples" not in prop and "example" not in prop:
                missing.append(f"{name}.{field}: example")
    assert missing == []


def test_error_codes_are_an_enum_matching_the_source(service_url):
    enum = set(_schema(service_url)["components"]["schemas"]["ErrorCode"]["enum"])
    sources = [*(REPO_ROOT / "service").glob("*.py"), REPO_ROOT / "models" / "preprocess.py"]
    written = set()
    for path in sources:
        text = path.read_text()
        for pattern in CODE_PATTERNS:
            written |= set(re.findall(pattern, text))
    assert {"not_an_image", "photo_not_found", "rate_limited", "unauthorized", "overloaded"} <= written
    assert written == enum  # every code the source answers is listed, and no code is listed for nothing


def test_uploads_and_keys_are_declared(service_url):
    schema = _schema(service_url)
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/jpeg", "image/png", "image/webp", "image/heic"} <= set(body)
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    for path, method in [("/v1/classify", "post"), ("/v1/classes", "get"), ("/v1/model", "get")]:
        op = schema["paths"][path][method]
        assert op["security"] == [{"APIKeyHeader": []}], path
        assert {"401", "429"} <= set(op["responses"]), path
    assert "security" not in schema["paths"]["/v1/photos/{photo_id}"]["get"]
    assert {"304", "404"} <= set(schema["paths"]["/v1/photos/{photo_id}"]["get"]["responses"])
