"""Settings, read once from the environment (prefix ``ASSIGN_``) and passed down."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./assign.db"


def normalize_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite:///`` URLs and pick the async driver."""
    for prefix in (
        "postgresql://",
        "postgres://",
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSIGN_", extra="ignore")

    database_url: str = Field(DEFAULT_SQLITE_URL, description="SQLAlchemy or postgresql:// URL")
    direct_database_url: str | None = Field(
        None,
        description="the database itself, when database_url is a pooler: for migrations, the "
        "dispatcher's lock and LISTEN",
    )
    admin_key: str | None = Field(None, description="bootstrap admin key")
    secret_key: str | None = Field(None, description="32+ characters; encryption key material")
    old_secret_keys: str = Field("", description="comma-separated former secrets, still decrypted")
    max_body_mb: float = Field(20, gt=0)
    timezone: str = "UTC"
    dispatch_interval: float = Field(2.0, gt=0)
    stale_timeout_minutes: float = Field(15.0, gt=0)
    server_timeout_minutes: float = Field(5.0, gt=0)
    retry_base_seconds: float = Field(30.0, ge=0)
    retry_max_seconds: float = Field(3600.0, ge=0)
    rate_limit_per_minute: int = Field(0, ge=0, description="requests per key per minute; 0 = off")
    key_cache_seconds: float = Field(
        5.0, ge=0, le=300, description="how long a process trusts a key it found; 0 = off"
    )
    db_pool_size: int = Field(10, ge=1)
    root_path: str = Field("", description="path prefix a proxy strips (ASGI root_path)")
    archive_after_days: float = Field(
        30.0, ge=0, description="links of requests closed longer ago leave the hot table; 0 = never"
    )
    history_days: float = Field(
        14.0, gt=0, description="attempts and throughput history kept this many days"
    )
    metrics_port: int = Field(9108, ge=0, le=65535, description="assign dispatch's /metrics")
    ui: bool = Field(True, description="serve the operator console at /ui")
    ui_session_hours: float = Field(12.0, gt=0, description="how long a console sign-in lasts")
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("direct_database_url")
    @classmethod
    def _normalize_direct(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else None

    @field_validator("secret_key")
    @classmethod
    def _secret_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("ASSIGN_SECRET_KEY must be at least 32 characters")
        return value

    @field_validator("root_path")
    @classmethod
    def _valid_root_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError("ASSIGN_ROOT_PATH must start with / (e.g. /assign)")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def uses_sqlite_file(self) -> bool:
        """Whether the database URL names an embedded SQLite file (migrated on start)."""
        return self.database_url.startswith("sqlite")

    @property
    def migration_url(self) -> str:
        """Where schema migrations run: the database itself when a pooler stands before it."""
        return self.direct_database_url or self.database_url

    @property
    def is_default_database(self) -> bool:
        return self.database_url == DEFAULT_SQLITE_URL

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sqlite_path(self) -> Path | None:
        """Path of the SQLite file, or None for PostgreSQL / in-memory."""
        if not self.uses_sqlite_file:
            return None
        path = self.database_url.split(":///", 1)[-1].split("?", 1)[0]
        if not path or path == ":memory:":
            return None
        return Path(path)

    @property
    def old_secret_list(self) -> list[str]:
        return [s.strip() for s in self.old_secret_keys.split(",") if s.strip()]

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
