"""Schemathesis fuzzes every operation of /openapi.json on the live service: no 5xx, and every
response matches the documented status codes, content types and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import ignored_auth, positive_data_acceptance

# Bounded: 30 generated cases per upload operation (one per parameterless GET): seconds.
MAX_EXAMPLES = 30


# schemathesis's pytest loader (from_fixture) does not run under pytest 9, so each operation
# gets its own hypothesis test here, built from the live schema.
@pytest.fixture(scope="module")
def api_schema(service_url):
    return schemathesis.openapi.from_url(f"{service_url}/openapi.json", timeout=10)


def test_every_operation_conforms_to_its_schema(api_schema, service_url):
    failures, tested, calls = {}, [], []
    # reload swaps the model: it is tested, with real bundles, in test_reload.py
    for result in api_schema.exclude(path="/v1/admin/reload").get_all_operations():
        operation = result.ok()
        tested.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            # the default checks include not_a_server_error, status_code_conformance,
            # content_type_conformance and response_schema_conformance. Left out: any bytes
            # are a schema-valid "file", but only an image is a valid photo, so a documented
            # 400 for random bytes is right, not a rejected positive case. And ignored_auth:
            # X-API-Key is optional, off on this service (keys are tested in test_access.py).
            calls.append(case.operation.label)
            case.call_and_validate(
                base_url=service_url, timeout=60, excluded_checks=[positive_data_acceptance, ignored_auth]
            )

        try:
            fuzz()
        except Exception as exc:  # collect all operations' failures, then report them together
            failures[operation.label] = str(exc)[:2000]
    assert {
        "POST /v1/classify",
        "POST /v1/embed",
        "GET /healthz",
        "GET /readyz",
        "GET /v1/model",
        "GET /v1/classes",
        "GET /v1/photos/{photo_id}",
        "POST /v1/feedback",
    } <= set(tested)
    # parameterless GETs have one case each; the uploads get MAX_EXAMPLES each
    assert calls.count("POST /v1/classify") >= MAX_EXAMPLES // 2
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
