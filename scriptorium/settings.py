"""Configuration, read once at process start and passed down.

Every value comes from ``SCRIPTORIUM_*`` environment variables (``__`` separates a section
from its field, e.g. ``SCRIPTORIUM_DB__URL``) or a ``.env`` file. Nothing reads the
environment at import time: entry points call :func:`load_settings` and hand the result to
what they build.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from scriptorium.modes import DEFAULT_MAX_CROPS, DEFAULT_MIN_CROPS

DEFAULT_SECRET = "change-me"  # noqa: S105 - the sentinel production refuses to start with


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class DatabaseSettings(BaseModel):
    url: str = "postgresql+psycopg://scriptorium:scriptorium@127.0.0.1:5432/scriptorium"
    pool_size: int = 5
    statement_timeout_ms: int = 30_000


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    visibility_timeout_s: int = 3600  # far above the page hard time limit
    # A worker's watchdog: it exits (for its supervisor to restart it) when the broker has not
    # answered for ``liveness_timeout_s``, or when it sat idle for ``stall_timeout_s`` while its
    # queues held messages (a consumer wedged after a reconnect).
    watchdog_interval_s: float = 5.0
    liveness_timeout_s: int = 120
    stall_timeout_s: int = 180


class StorageSettings(BaseModel):
    endpoint: str = "127.0.0.1:9000"
    access_key: str = "scriptorium"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    bucket: str = "scriptorium"
    secure: bool = False
    region: str | None = None
    presign_ttl_s: int = 3600
    # Endpoint used when signing links for clients, when it differs from the internal one.
    public_endpoint: str | None = None


class EngineSettings(BaseModel):
    model_path: str = "/models/DeepSeek-OCR"  # a local directory in the published layout, or a hub id
    # The family this worker must serve; None: whatever the checkpoint is (detected from config.json).
    family: ModelFamily | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    attention: str = "auto"  # auto | sdpa | flash_attention_2 | eager
    min_crops: int = DEFAULT_MIN_CROPS
    max_crops: int = DEFAULT_MAX_CROPS
    # None below: the family's profile value (worker/engine/profiles.py, docs/ENGINE.md).
    max_context: int | None = None  # prompt + output per page
    max_new_tokens: int | None = None  # None: the profile's cap, or the context minus the prompt
    ngram_size: int | None = None  # 0 turns the no-repeat guard off
    ngram_window: int | None = None
    ngram_whitelist: list[int] | None = None
    batch_token_budget: int = 65_536  # prompt + new tokens of all pages in one call (≈3.75 GiB KV in bf16)
    max_batch_pages: int = 8
    warmup: bool = True


class ModelsSettings(BaseModel):
    """Which model families this fleet reads documents with, and the one a document gets when
    neither it, its batch or watch, nor its tenant names one."""

    served: list[ModelFamily] = Field(default_factory=lambda: [DEFAULT_MODEL_FAMILY], min_length=1)
    default: ModelFamily = DEFAULT_MODEL_FAMILY

    @model_validator(mode="after")
    def _default_is_served(self) -> ModelsSettings:
        self.served = list(dict.fromkeys(self.served))
        if self.default not in self.served:
            raise ValueError(
                f"models.default {self.default.value!r} is not in models.served "
                f"({', '.join(family.value for family in self.served)})"
            )
        return self


class PrepareSettings(BaseModel):
    dpi: int = 144
    max_bytes: int = 512 * 1024 * 1024
    max_pages: int = 2000
    max_page_pixels: int = 40_000_000  # a page rasterised above this fails as page_too_large
    render_timeout_s: int = 120
    render_memory_mb: int = 2048
    # A worker's warm render child is replaced after this many documents (and after any fault).
    render_child_max_documents: int = Field(default=100, ge=1)


class LimitsSettings(BaseModel):
    max_upload_bytes: int = 512 * 1024 * 1024
    page_attempts: int = 3
    lease_s: int = 120
    page_soft_time_limit_s: int = 540
    page_hard_time_limit_s: int = 600
    lost_message_after_s: int = 300  # a queued page without progress this long is re-sent
    sweep_interval_s: float = 15.0
    dispatch_depth: int = 64  # most page messages kept in the broker per queue
    # Each GPU worker process says it is alive this often (its gpu_workers row); one silent for
    # gpu_worker_gone_after_s no longer counts, and its family's pages wait visibly.
    gpu_heartbeat_s: float = Field(default=5.0, gt=0)
    gpu_worker_gone_after_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> LimitsSettings:
        if self.gpu_worker_gone_after_s < 2 * self.gpu_heartbeat_s:
            raise ValueError("limits.gpu_worker_gone_after_s must be at least twice limits.gpu_heartbeat_s")
        return self


class LogSettings(BaseModel):
    level: str = "INFO"
    json_output: bool | None = None  # None: JSON in production, readable otherwise


class ApiSettings(BaseModel):
    host: str = "0.0.0.0"  # noqa: S104 - the API container listens on all interfaces
    port: int = 8000
    public_url: str = "http://localhost:8000"
    retry_after_s: int = 5
    # How long a rotated API key keeps working next to its replacement.
    key_rotation_grace_s: int = Field(default=86_400, ge=0)


class ConsoleSettings(BaseModel):
    """The web console under /console: session cookies signed with SECRET_KEY."""

    session_ttl_s: int = 43200  # a sign-in lasts this long, then the key is asked for again
    secure_cookie: bool = False  # always mark the cookie Secure (it is whenever the request is https)


class WebhookSettings(BaseModel):
    """Delivery of signed completion webhooks (Standard Webhooks)."""

    allow_http: bool = False  # plain http receivers; development and tests only
    # Non-global networks receivers may nevertheless resolve to (e.g. ["127.0.0.1/32"] in tests).
    allowed_networks: list[str] = Field(default_factory=list)
    connect_timeout_s: float = 5.0
    total_timeout_s: float = 15.0
    # Delay after the 1st, 2nd, … failed attempt; once exhausted the delivery is dead.
    retry_schedule_s: list[int] = Field(default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 36000])
    retry_jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    retry_after_max_s: int = 86_400  # cap on a receiver's Retry-After
    secret_rotation_grace_s: int = 86_400  # the old secret keeps signing this long after a rotation
    poll_interval_s: float = 2.0  # how often beat asks the sender to look for due deliveries
    claim_lease_s: int = 60  # a claimed delivery whose sender died is retried after this
    batch_size: int = 16  # deliveries sent concurrently by one sender

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        for network in self.allowed_networks:
            ipaddress.ip_network(network, strict=False)
        if not 0 < self.connect_timeout_s <= self.total_timeout_s:
            raise ValueError("webhooks.connect_timeout_s must be positive and at most total_timeout_s")
        if self.claim_lease_s <= self.total_timeout_s:
            raise ValueError("webhooks.claim_lease_s must be above webhooks.total_timeout_s")
        if not 0 <= self.retry_jitter < 1:
            raise ValueError("webhooks.retry_jitter must be in [0, 1)")
        if any(delay < 0 for delay in self.retry_schedule_s) or self.batch_size < 1:
            raise ValueError("webhooks.retry_schedule_s must not be negative and batch_size must be positive")
        return self


class IntakeSettings(BaseModel):
    """Batch intake: archive expansion limits, manifests, copies from named sources, watched prefixes."""

    archive_max_expanded_bytes: int = 4 * 1024 * 1024 * 1024  # everything an archive unpacks to
    archive_max_entries: int = 10_000  # members of an archive, nested archives included
    archive_max_ratio: float = 100.0  # unpacked ÷ packed bytes, per entry and for the whole archive
    archive_ratio_floor_bytes: int = 1024 * 1024  # below this many unpacked bytes any ratio is harmless
    archive_max_depth: int = 2  # archives inside archives, counting the uploaded one as 1
    manifest_max_bytes: int = 64 * 1024 * 1024
    run_budget_s: float = 60.0  # one intake run stops after this and queues the next one
    prepare_window: int = 32  # a batch's documents waiting for preparation at once (a shallow broker)
    window_poll_s: float = 2.0  # how soon intake looks again when the window is full
    copy_concurrency: int = 8  # objects copied from a source in parallel by one run
    source_attempts: int = 3  # tries to fetch an object before it is rejected as unavailable
    watch_poll_interval_s: float = 30.0  # how often a watched prefix is listed (the polling fallback)
    watch_list_limit: int = 1000  # objects one poll takes from one watch


class SourceSettings(BaseModel):
    """An S3 endpoint batches and watches may read from; rows name it, never store its keys."""

    endpoint: str
    access_key: str = ""
    secret_key: SecretStr = SecretStr("")
    secure: bool = False
    region: str | None = None
    tenants: list[str] = Field(default_factory=list)  # tenant names allowed to use it; empty: all
    buckets: list[str] = Field(default_factory=list)  # buckets it may be read from; empty: any


class RateLimitSettings(BaseModel):
    """Per-tenant API request limits (a token bucket in Redis); a tenant's own limits override these."""

    requests_per_s: float = 50.0  # sustained requests per second; 0 turns the limit off
    burst: int = 200  # requests allowed back to back before the rate applies


class MetricsSettings(BaseModel):
    # Each worker's Prometheus exporter (needs PROMETHEUS_MULTIPROC_DIR); 0 turns it off.
    worker_port: int = 9100


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCRIPTORIUM_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)  # signs console session cookies
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    prepare: PrepareSettings = Field(default_factory=PrepareSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    # Named S3 sources, e.g. SCRIPTORIUM_SOURCES__ARCHIVE__ENDPOINT / __ACCESS_KEY / __SECRET_KEY.
    sources: dict[str, SourceSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.environment is not Environment.PRODUCTION:
            return self
        defaults = [
            name
            for name, value in (
                ("SCRIPTORIUM_SECRET_KEY", self.secret_key),
                ("SCRIPTORIUM_STORAGE__SECRET_KEY", self.storage.secret_key),
            )
            if value.get_secret_value() in ("", DEFAULT_SECRET)
        ]
        if defaults:
            raise ValueError(f"production refuses to start with default secrets: set {', '.join(defaults)}")
        return self

    @model_validator(mode="after")
    def _sources_cannot_reach_internal_storage(self) -> Settings:
        """A named source is read with the credentials its tenants never see, on their behalf: one
        on the internal storage endpoint that may read the internal bucket would let a tenant
        read every tenant's uploads. Refuse to start unless its bucket list leaves that out."""
        storage = self.storage
        internal = {endpoint_address(storage.endpoint, secure=storage.secure)}
        if storage.public_endpoint:
            internal.add(endpoint_address(storage.public_endpoint, secure=storage.secure))
        for name, source in self.sources.items():
            if endpoint_address(source.endpoint, secure=source.secure) not in internal:
                continue
            if source.buckets and storage.bucket not in source.buckets:
                continue
            reach = "lists the internal bucket" if source.buckets else "has no bucket list"
            raise ValueError(
                f"source {name!r} ({source.endpoint}) is the internal storage endpoint and {reach}, so "
                f"tenants could read bucket {storage.bucket!r} through it: set "
                f"SCRIPTORIUM_SOURCES__{name.upper()}__BUCKETS to the buckets it serves, without "
                f"{storage.bucket!r}"
            )
        return self

    @property
    def json_logs(self) -> bool:
        if self.log.json_output is not None:
            return self.log.json_output
        return self.environment is Environment.PRODUCTION


def endpoint_address(endpoint: str, *, secure: bool) -> tuple[str, int]:
    """(host, port) an S3 endpoint setting reaches: ``host:port`` or a URL (whose scheme decides
    TLS), case and trailing dots ignored, the scheme's default port filled in, and every
    loopback name (``localhost``, ``127.x.x.x``, ``::1``) one host."""
    text = endpoint.strip()
    if "://" not in text:
        text = ("https://" if secure else "http://") + text
    parts = urlsplit(text)
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as error:
        raise ValueError(f"endpoint {endpoint!r} has an invalid port") from error
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    return ("localhost" if loopback else host), port


def load_settings(env_file: Path | str | None = ".env", **overrides: Any) -> Settings:
    """Build the settings for this process from the environment (and ``env_file``)."""
    return Settings(_env_file=env_file, **overrides)


def env_variables() -> dict[str, str]:
    """Every SCRIPTORIUM_* variable the settings read, with its default rendered as text."""
    variables: dict[str, str] = {}
    defaults = Settings.model_construct()
    for name, field in Settings.model_fields.items():
        value = getattr(defaults, name, field.get_default(call_default_factory=True))
        if isinstance(value, BaseModel):
            for sub_name in type(value).model_fields:
                variables[f"SCRIPTORIUM_{name.upper()}__{sub_name.upper()}"] = _render(
                    getattr(value, sub_name)
                )
        else:
            variables[f"SCRIPTORIUM_{name.upper()}"] = _render(value)
    return variables


def _render(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)
