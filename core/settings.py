"""Configuration, only through ``PORTAL_*`` environment variables (SPEC section 5).

``Settings`` is passed into ``create_app(settings)`` and the CLI; nothing reads it at
import time, so tests build their own.
"""

from __future__ import annotations

import os
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTAL_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite://portal.sqlite3"

    mail_backend: Literal["file", "smtp", "console"] = "file"
    mail_dir: str = "mail-outbox"
    mail_from: str = "Patient Portal <no-reply@portal.invalid>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_seconds: float = 10.0
    # The dispatcher runs inside the server process by default; production may run
    # `portal mail-worker` processes instead and set this to false.
    mail_dispatch_in_server: bool = True
    mail_poll_seconds: float = 1.0
    mail_max_attempts: int = 6
    # SMTP connections a dispatcher uses at once, each carrying part of a batch.
    mail_connections: int = Field(default=4, ge=1, le=32)

    # Text messages (SPEC 9.3): `file` (one .txt per message), `console`, or `twilio`.
    sms_backend: Literal["file", "console", "twilio"] = "file"
    sms_dir: str = "sms-outbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    # The sending number (E.164) or a Messaging Service SID (MG…).
    twilio_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    twilio_timeout_seconds: float = 10.0
    # Phone numbers typed without a country code are read as numbers of this region.
    phone_region: str = Field(default="US", min_length=2, max_length=2)

    link_base_url: str = "http://localhost:8000/portal/activate"
    redis_url: str | None = None

    staff_link_ttl_minutes: int = Field(default=24 * 60, ge=1)
    self_service_link_ttl_minutes: int = Field(default=60, ge=1)
    # At most one self-service link per patient within this window (SECURITY ENUM-3).
    self_service_cooldown_minutes: int = Field(default=5, ge=0)
    # One reminder with a fresh link this long before an unused staff link expires;
    # 0 turns reminders off (SPEC 7.4).
    reminder_before_expiry_minutes: int = Field(default=360, ge=0)
    session_ttl_minutes: int = Field(default=30, ge=1)
    temporary_password_ttl_days: int = Field(default=7, ge=1)

    # Ask for the date of birth at redemption: never, when the risk is higher, or always
    # (SPEC 7.1).
    redeem_dob: Literal["never", "risk", "always"] = "risk"
    redeem_dob_max_failures: int = Field(default=5, ge=1)

    password_min_length: int = Field(default=12, ge=8, le=128)
    # NIST 63B / ASVS: at most 100 consecutive failures per account (SECURITY AUTHN-1).
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1)
    # argon2id hashes at once: half the cores, so hashing under a login storm always
    # leaves CPU for reads (SECURITY HASH-5).
    hash_concurrency: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1)
    # How much lower than the server's own threads the hashing threads run (Linux nice
    # steps; 0 = same priority).
    hash_nice: int = Field(default=10, ge=0, le=19)

    # Rate limits in the `limits` library's notation, applied per client address and per
    # account/email (SECURITY GQL-9, TOK-7).
    rate_limit_login: str = "10/minute"
    rate_limit_token: str = "20/minute"
    rate_limit_self_service: str = "5/minute"
    rate_limit_username_check: str = "60/minute"
    rate_limit_set_credentials: str = "30/minute"
    # Peers allowed to set X-Forwarded-For; empty means the socket address is the client.
    trusted_proxies: list[str] = Field(default_factory=list)

    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_body_bytes: int = 100_000
    max_page_size: int = 200
    max_bulk_ids: int = 10_000
    # Allows production to run on development defaults (file mail, SQLite) when a
    # deployment really means to, e.g. a single-host pilot.
    allow_insecure_defaults: bool = False

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def staff_link_ttl(self) -> timedelta:
        return timedelta(minutes=self.staff_link_ttl_minutes)

    @property
    def self_service_link_ttl(self) -> timedelta:
        return timedelta(minutes=self.self_service_link_ttl_minutes)

    @model_validator(mode="after")
    def _twilio_needs_credentials(self) -> Settings:
        if self.sms_backend == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token and self.twilio_from
        ):
            raise ValueError(
                "PORTAL_SMS_BACKEND=twilio needs PORTAL_TWILIO_ACCOUNT_SID,"
                " PORTAL_TWILIO_AUTH_TOKEN and PORTAL_TWILIO_FROM"
            )
        return self

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if not self.is_production or self.allow_insecure_defaults:
            return self
        problems = []
        if self.database_url.startswith("sqlite"):
            problems.append("PORTAL_DATABASE_URL is SQLite")
        if self.mail_backend != "smtp":
            problems.append("PORTAL_MAIL_BACKEND is not smtp")
        if self.sms_backend != "twilio":
            problems.append("PORTAL_SMS_BACKEND is not twilio")
        if not self.link_base_url.startswith("https://"):
            problems.append("PORTAL_LINK_BASE_URL is not https")
        if problems:
            raise ValueError(
                "refusing to start in production with development defaults: "
                + "; ".join(problems)
                + " (set PORTAL_ALLOW_INSECURE_DEFAULTS=true to override)"
            )
        return self
