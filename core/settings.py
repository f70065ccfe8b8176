"""Configuration, only through ``PORTAL_*`` environment variables (SPEC section 5).

``Settings`` is passed into ``create_app(settings)`` and the CLI; nothing reads it at
import time, so tests build their own.
"""

from __future__ import annotations

import os
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.secrets import local_secret


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup v2 CPU quota
    (``cpu.max``, "quota period": "200000 100000" is 2 CPUs). ``os.cpu_count()`` is
    the host's: a container held to 2 CPUs on a 32-core host would otherwise start 16
    argon2 threads on its 2 CPUs, and a login storm would starve the event loop."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 2
    try:
        # cgroup v2: one line "0::/path/of/this/process".
        relative = next(
            line.split("::", 1)[1].strip()
            for line in Path(proc_cgroup).read_text().splitlines()
            if line.startswith("0::")
        )
        limit = Path(cgroup_root) / relative.lstrip("/") / "cpu.max"
        quota, period = limit.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) // int(period))
    except (OSError, StopIteration, ValueError):
        pass  # no cgroup v2 or no quota: the affinity mask is the limit
    return max(1, cpus)


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
    # Transient failures (no answer, timeouts, 4xx) are retried with capped backoff until
    # the message is this old; only a permanent reply gives up sooner.
    mail_give_up_after_hours: float = Field(default=72.0, gt=0)
    # How long a claimed batch is a worker's own; renewed while the batch is sent.
    mail_lease_seconds: float = Field(default=300.0, gt=0)
    # Consecutive database failures after which `portal mail-worker` exits non-zero.
    mail_worker_max_db_failures: int = Field(default=10, ge=1)
    # SMTP connections a dispatcher uses at once, each carrying part of a batch.
    mail_connections: int = Field(default=4, ge=1, le=32)

    # /readyz reports "not ready" when a pending message is this far past its due time
    # (no dispatcher is working the outbox).
    ready_outbox_max_lag_seconds: float = Field(default=600.0, gt=0)
    # Webhooks (SPEC 8.8). Only https endpoints whose addresses are all public, unless
    # this allows http and private/loopback addresses (tests, development).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # First retry after about this long, doubling (with jitter) up to an hour.
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    # A delivery failing this long disables its endpoint (the reason is shown to staff).
    webhook_retry_hours: float = Field(default=24.0, gt=0)
    # A worker's claim on a delivery; a crashed worker's rows come back after it.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # After rotateWebhookSecret the old secret keeps signing this long.
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)
    # Requests one worker has in flight at once (each to a different patient's head).
    webhook_concurrency: int = Field(default=16, ge=1, le=256)

    # Events a live-list subscriber may have waiting; a client that falls this far
    # behind is disconnected (close code 4008) instead of slowing anyone (SPEC 8.9).
    # The default holds one bulk action of PORTAL_MAX_BULK_IDS patients.
    live_buffer: int = Field(default=10_000, ge=1, le=100_000)

    # Text messages (SPEC 9.3): `file` (one .txt per message), `console`, `twilio`, or
    # `off` for a clinic that does not text (production accepts `twilio` or `off`).
    sms_backend: Literal["file", "console", "twilio", "off"] = "file"
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
    # Deadline for connecting to Redis and for each command; past it the rate limits fall
    # back to per-process budgets for a few seconds (core/ratelimit.py).
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=10)

    staff_link_ttl_minutes: int = Field(default=24 * 60, ge=1)
    self_service_link_ttl_minutes: int = Field(default=60, ge=1)
    # At most one self-service link per patient within this window (SECURITY ENUM-3).
    self_service_cooldown_minutes: int = Field(default=5, ge=0)
    # One reminder with a fresh link this long before an unused staff link expires;
    # 0 turns reminders off (SPEC 7.4).
    reminder_before_expiry_minutes: int = Field(default=360, ge=0)
    session_ttl_minutes: int = Field(default=30, ge=1)
    # A staff token stops working this long after it was issued (`portal
    # rotate-staff-token` issues a new one).
    staff_token_ttl_days: int = Field(default=90, ge=1, le=3650)
    temporary_password_ttl_days: int = Field(default=7, ge=1)

    # Ask for the date of birth at redemption: never, when the risk is higher, or always
    # (SPEC 7.1).
    redeem_dob: Literal["never", "risk", "always"] = "risk"
    redeem_dob_max_failures: int = Field(default=5, ge=1)

    password_min_length: int = Field(default=12, ge=8, le=128)
    # NIST 63B / ASVS: at most 100 consecutive failures per account (SECURITY AUTHN-1).
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1)
    # argon2id hashes at once: half the CPUs this process may use, so hashing under a
    # login storm always leaves CPU for reads (SECURITY HASH-5).
    hash_concurrency: int = Field(default_factory=lambda: max(1, usable_cpus() // 2), ge=1)
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
    # Seals cursors (SPEC 8.3) and derives link tokens (core.link_keys). Unset: a random
    # secret in the owner-only file .portal-secret; hosts behind one load balancer must
    # share one value.
    secret_key: SecretStr = Field(default_factory=lambda: SecretStr(local_secret()))
    # The key before a rotation: mail queued under it still carries its (working) link
    # until it is sent; new links use secret_key (docs/deploy.md, "Rotating the key").
    secret_key_previous: SecretStr | None = None
    # Path of a JSON manifest hash -> document: only those documents run (SPEC 8.5).
    trusted_documents: str | None = None
    # Exact origins (scheme://host[:port]) whose browser pages may call the API (SPEC 8.1).
    cors_origins: list[str] = Field(default_factory=list)

    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_body_bytes: int = 100_000
    max_page_size: int = 200
    # Rows one request may read (page sizes x aliases x fragment spreads, searches and
    # counts weighted; graph/limits.py), checked before any resolver runs.
    max_cost: int = Field(default=1000, ge=1)
    max_bulk_ids: int = 10_000
    # Transport limits (graph/transport.py, graph/middleware.py): a request's headers and
    # its body must arrive within these; open connections per process and per client
    # address; requests handled at once per process (503 beyond); a request's deadline.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_address: int = Field(default=100, ge=0)
    max_in_flight: int = Field(default=64, ge=1)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # argon2 calls waiting for a hashing thread; beyond it a login or password change is
    # refused with RATE_LIMITED instead of queueing without end.
    hash_queue_limit: int = Field(default=64, ge=1)
    # Allows production to run on development defaults (file mail, SQLite, SMTP in
    # clear, no secret key) when a deployment really means to, e.g. a single-host
    # pilot; each relaxed rule is then logged as a warning at start.
    allow_insecure_defaults: bool = False

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        # An origin is compared byte for byte with the browser's Origin header: a path,
        # a trailing slash, a wildcard or upper case would silently never match.
        for origin in origins:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}"
                or origin != origin.lower()
                or "*" in origin
                or parts.username is not None
            ):
                raise ValueError(f"not an exact origin like https://emr.example.com: {origin!r}")
        return origins

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
    def _lease_outlasts_a_message(self) -> Settings:
        # A message may take three SMTP timeouts; the lease must leave room for a few.
        floor = 2 * (3 * self.smtp_timeout_seconds + 1)
        if self.mail_lease_seconds < floor:
            raise ValueError(
                f"PORTAL_MAIL_LEASE_SECONDS must be at least {floor:g}"
                " (twice three PORTAL_SMTP_TIMEOUT_SECONDS plus one)"
            )
        return self

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

    def unsafe_for_production(self) -> list[str]:
        """The production rules this configuration breaks, each naming its setting."""
        if not self.is_production:
            return []
        problems = []
        if self.database_url.startswith("sqlite"):
            problems.append("PORTAL_DATABASE_URL is SQLite")
        if self.mail_backend != "smtp":
            problems.append("PORTAL_MAIL_BACKEND is not smtp")
        elif self.smtp_tls == "none":
            # The relay password and live links would cross the network in clear.
            problems.append("PORTAL_SMTP_TLS is none (use starttls or tls)")
        if self.sms_backend not in ("twilio", "off"):
            # file/console would write live links to disk or to the log.
            problems.append("PORTAL_SMS_BACKEND is not twilio or off")
        if not self.link_base_url.startswith("https://"):
            problems.append("PORTAL_LINK_BASE_URL is not https")
        if self.webhook_allow_private:
            # For tests only (SPEC 8.8): it also lifts the https rule for endpoints.
            problems.append("PORTAL_WEBHOOK_ALLOW_PRIVATE is true")
        if "secret_key" not in self.model_fields_set or not self.secret_key.get_secret_value():
            # A per-host file secret would make one host refuse another's cursors.
            problems.append("PORTAL_SECRET_KEY is not set")
        return problems

    @model_validator(mode="after")
    def _secret_keys_are_long_enough(self) -> Settings:
        for name, key in (
            ("PORTAL_SECRET_KEY", self.secret_key),
            ("PORTAL_SECRET_KEY_PREVIOUS", self.secret_key_previous),
        ):
            if key is not None and 0 < len(key.get_secret_value()) < 32:
                raise ValueError(f"{name} must be at least 32 characters (256 bits, random)")
        return self

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if self.allow_insecure_defaults:
            return self
        problems = self.unsafe_for_production()
        if problems:
            raise ValueError(
                "refusing to start in production with development defaults: "
                + "; ".join(problems)
                + " (set PORTAL_ALLOW_INSECURE_DEFAULTS=true to override)"
            )
        return self
