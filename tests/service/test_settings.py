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
