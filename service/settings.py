"""The service's typed settings, read from the environment once at start-up."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.preprocess import DEFAULT_MAX_PIXELS

# A bearer token guessable in reach of an online attack is no protection: 32 characters at least.
MIN_ADMIN_TOKEN = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    artifacts_uri: str = Field("artifacts", description="bundle root: folder or s3://bucket/prefix")
    weights_file: str | None = Field(
        None,
        description="Keras weights file to use instead of the bundle's weights source "
        "(e.g. ImageNet weights on an air-gapped host); its SHA-256 must match the bundle's",
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    default_top_k: int = Field(5, ge=1, le=20)
    n_examples: int = Field(3, ge=0, le=10)
    photo_attribution: str = Field(
        "Fruits-360 (Mihai Oltean, Horea Muresan), CC BY-SA 4.0",
        description="credit shown with every training photo an answer offers as an example",
    )
    photo_max_age_s: int = Field(86400, ge=0, description="Cache-Control max-age of /v1/photos answers")
    tf_threads: int | None = Field(None, ge=1)
    blas_threads: int = Field(
        1,
        ge=1,
        description="numpy's BLAS threads (search, probe, projection): the model has its own pool, "
        "and BLAS threads spinning beside it made the model calls slower and their times uneven",
    )
    log_level: str = "info"
    # Micro-batching (service/batching.py): concurrent photos share one model call.
    max_batch_size: int = Field(32, ge=1, le=256, description="photos per model call, at most")
    max_batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="how long the first photo of a batch waits for company"
    )
    max_queue_depth: int = Field(
        64, ge=1, description="photos waiting for the model beyond which requests get 503"
    )
    # Uploads and connections: memory and sockets stay bounded whatever the clients do.
    max_concurrent_decodes: int = Field(
        2,
        ge=1,
        le=64,
        description="photos decoded and preprocessed at once; a 64 Mpx canvas takes ~0.5 GB while "
        "it decodes, so this bounds the decoding memory (others wait, within max_queue_depth)",
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="seconds a client has to send a whole request body; later: 408 and the "
        "connection is closed (a client trickling bytes holds no socket or spooled file for long)",
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="open connections (and requests in progress) beyond which requests get 503 overloaded",
    )
    # Hot reload (service/reload.py): a new CURRENT version is loaded, checked, swapped in.
    reload_interval_s: float = Field(
        30.0, ge=0, description="seconds between checks of the CURRENT pointer; 0: no polling"
    )
    admin_token: SecretStr | None = Field(
        None,
        description="bearer token for POST /v1/admin/reload, at least 32 characters; unset or "
        "empty: no admin endpoint",
    )

    # Clients (service/access.py). Keys are configured by their SHA-256, never in clear.
    api_key_sha256: str = Field(
        "",
        description="comma-separated SHA-256 hex digests of the accepted X-API-Key values; empty: "
        "no key needed (e.g. printf %s KEY | sha256sum)",
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="requests a minute per API key (per address without keys); 0: no limit"
    )
    cors_origins: str = Field(
        "",
        description="comma-separated origins allowed to call the API from a browser, e.g. https://app.example",
    )
    feedback_uri: str | None = Field(
        None, description="where POST /v1/feedback writes (folder or s3://); default <ARTIFACTS_URI>/feedback"
    )
    feedback_window_s: float = Field(
        86400.0, gt=0, description="how long after an answer POST /v1/feedback accepts its request id"
    )
    feedback_max_answers: int = Field(
        100_000,
        ge=1,
        description="answers remembered for feedback, at most (~200 bytes each); the oldest are "
        "forgotten first",
    )
    log_client_ip: bool = Field(False, description="write clients' IP addresses in the access log")

    @property
    def api_key_digests(self) -> frozenset[str]:
        return frozenset(d.strip().lower() for d in self.api_key_sha256.split(",") if d.strip())

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("api_key_sha256")
    @classmethod
    def _digests(cls, value: str) -> str:
        for digest in (d.strip() for d in value.split(",") if d.strip()):
            if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise ValueError("API_KEY_SHA256 lists SHA-256 hex digests (64 hex digits each)")
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _token_or_off(cls, value: object) -> object:
        """An empty token turns the endpoint off; a short one is refused at start-up."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        secret = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if len(secret) < MIN_ADMIN_TOKEN:
            raise ValueError(f"ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters (or empty: off)")
        return value
