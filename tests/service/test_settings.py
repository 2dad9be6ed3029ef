"""The service's settings: what the environment may say, and what it may not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import MIN_ADMIN_TOKEN, Settings


def test_an_empty_admin_token_turns_the_endpoint_off():
    assert Settings(admin_token="").admin_token is None
    assert Settings(admin_token="   ").admin_token is None
    assert Settings().admin_token is None


def test_a_short_admin_token_is_refused_at_start_up():
    with pytest.raises(ValidationError, match=f"at least {MIN_ADMIN_TOKEN} characters"):
        Settings(admin_token="x" * (MIN_ADMIN_TOKEN - 1))
    token = "y" * MIN_ADMIN_TOKEN
    assert Settings(admin_token=token).admin_token.get_secret_value() == token


def test_the_admin_token_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADMIN_TOKEN", "short")
    with pytest.raises(ValidationError):
        Settings()


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_service_runs_numpy_blas_on_the_threads_its_settings_give(job_run):
    # Two BLAS threads spinning beside the model's own pool made its calls slower and uneven
    # (docs/decisions.md); the service caps them when it starts, for the process's life.
    import asyncio

    from threadpoolctl import threadpool_limits

    from service.app import create_app

    root, _ = job_run
    app = create_app(Settings(artifacts_uri=str(root), blas_threads=1, reload_interval_s=0))
    before = threadpool_limits(None)  # this process's limits, restored after the test

    async def serve_and_look() -> set[int]:
        async with app.router.lifespan_context(app):
            return _blas_threads()

    try:
        threadpool_limits(2, user_api="blas")  # what a 2-core machine starts with
        assert _blas_threads() == {2}, "numpy has no BLAS library threadpoolctl can set"
        assert asyncio.run(serve_and_look()) == {1}
    finally:
        before.restore_original_limits()
