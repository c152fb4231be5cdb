"""Settings from the environment, read in one place.

`Settings.from_env` reads the service's settings; everything else receives a `Settings`. (The
CLI also asks whether `WA_GRAPH_BASE_URL` was set at all, for `wa-cloud dev`'s sandbox, and the
embedded PostgreSQL sets `XDG_RUNTIME_DIR` for its socket when it is missing.) In production
the three secrets are required; `wa-cloud dev` generates them once and keeps them in
`WA_DATA_DIR` so restarts keep the same keys.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from wa_cloud.errors import ConfigurationError

REQUIRED_IN_PRODUCTION = ("WA_SECRET_KEY", "WA_APP_SECRET", "WA_ADMIN_TOKEN")
# A bearer token or master key shorter than this can be guessed or brute-forced offline.
MIN_SECRET_LENGTH = 32
MAX_WEBHOOK_BYTES = 3 * 1024 * 1024


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    port: int = 8000
    data_dir: Path = Path(".wa-cloud")
    app_id: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    verify_token: str | None = field(default=None, repr=False)
    graph_base_url: str = "https://graph.facebook.com"
    graph_version: str = "v23.0"
    admin_token: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    # Old master keys, still able to open what they sealed while `wa-cloud rotate-key` runs.
    previous_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    public_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    ai_model: str = "gpt-4.1-mini"
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str | None = None
    log_format: str = "json"
    dev: bool = False
    # Worker tuning: how long a claimed delivery stays ours, and how often a failing one is retried.
    worker_lease_seconds: float = 30.0
    worker_max_attempts: int = 8
    worker_batch_size: int = 500  # the most an indexer claims at once (under a backlog)
    worker_poll_seconds: float = 2.0
    # A campaign send left `unknown` with no status of Meta naming it after this long is sent
    # again (Meta reports every message it accepts within seconds, unless our receiver is down).
    campaign_resend_after_seconds: float = 900.0
    db_pool_size: int = 10
    # Graph API: how long a call may take before it is an error (a send: outcome unknown).
    graph_timeout_seconds: float = 10.0
    # Events forwarded to tenants' webhooks: the first retry's wait (it doubles, with jitter)
    # and how many attempts before a forward is given up.
    forward_retry_base_seconds: float = 5.0
    forward_max_attempts: int = 15
    # Tenant-supplied URLs (media by URL, forwarding, tools, gateways) may reach loopback and
    # private addresses only when this is set: `wa-cloud dev` and tests with loopback fakes.
    allow_private_urls: bool = False
    # Raw webhook bodies and forwarded payloads are deleted after this (Meta retries for 7 days).
    raw_retention_days: float = 7.0
    # When set, /metrics needs `Authorization: Bearer <token>`.
    metrics_token: str | None = field(default=None, repr=False)
    # Connections kept for webhook ingest alone, so API traffic can never starve it.
    ingest_pool_size: int = 4
    # Per API key: sustained requests a second and the burst above it (429 with Retry-After).
    api_rate_per_second: float = 50.0
    api_rate_burst: int = 200

    def __repr__(self) -> str:
        shown = {
            "database_url": "'***'" if self.database_url else "None",
            "port": self.port,
            "app_id": self.app_id,
            "app_secret": _mask(self.app_secret),
            "admin_token": _mask(self.admin_token),
            "secret_key": _mask(self.secret_key),
            "dev": self.dev,
        }
        return "Settings(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dev: bool = False) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, kind: type[float] = float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None

        def flag(name: str, *, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigurationError(f"{name} must be true or false, got {raw!r}")

        settings = cls(
            database_url=get("DATABASE_URL"),
            port=int(number("PORT", 8000, int)),
            data_dir=Path(get("WA_DATA_DIR") or ".wa-cloud"),
            app_id=get("WA_APP_ID"),
            app_secret=get("WA_APP_SECRET"),
            verify_token=get("WA_VERIFY_TOKEN"),
            graph_base_url=(get("WA_GRAPH_BASE_URL") or "https://graph.facebook.com").rstrip("/"),
            graph_version=get("WA_GRAPH_VERSION") or "v23.0",
            admin_token=get("WA_ADMIN_TOKEN"),
            secret_key=get("WA_SECRET_KEY"),
            previous_secret_keys=tuple(
                k.strip() for k in (get("WA_PREVIOUS_SECRET_KEYS") or "").split(",") if k.strip()
            ),
            public_url=get("WA_PUBLIC_URL"),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            ai_model=get("WA_AI_MODEL") or "gpt-4.1-mini",
            gemini_api_key=get("GEMINI_API_KEY"),
            gemini_base_url=get("WA_GEMINI_BASE_URL"),
            smtp_url=get("SMTP_URL"),
            mail_from=get("WA_MAIL_FROM"),
            log_format=get("WA_LOG_FORMAT") or ("console" if dev else "json"),
            dev=dev,
            worker_lease_seconds=number("WA_WORKER_LEASE_SECONDS", 30.0),
            worker_max_attempts=int(number("WA_WORKER_MAX_ATTEMPTS", 8, int)),
            worker_batch_size=int(number("WA_WORKER_BATCH_SIZE", 500, int)),
            worker_poll_seconds=number("WA_WORKER_POLL_SECONDS", 2.0),
            campaign_resend_after_seconds=number("WA_CAMPAIGN_RESEND_AFTER_SECONDS", 900.0),
            db_pool_size=int(number("WA_DB_POOL_SIZE", 10, int)),
            graph_timeout_seconds=number("WA_GRAPH_TIMEOUT_SECONDS", 10.0),
            forward_retry_base_seconds=number("WA_FORWARD_RETRY_BASE_SECONDS", 5.0),
            forward_max_attempts=int(number("WA_FORWARD_MAX_ATTEMPTS", 15, int)),
            allow_private_urls=flag("WA_ALLOW_PRIVATE_URLS", default=dev),
            raw_retention_days=number("WA_RAW_RETENTION_DAYS", 7.0),
            metrics_token=get("WA_METRICS_TOKEN"),
            ingest_pool_size=int(number("WA_INGEST_POOL_SIZE", 4, int)),
            api_rate_per_second=number("WA_API_RATE_PER_SECOND", 50.0),
            api_rate_burst=int(number("WA_API_RATE_BURST", 200, int)),
        )
        if settings.log_format not in ("json", "console"):
            raise ConfigurationError("WA_LOG_FORMAT must be 'json' or 'console'")
        return settings

    def require_production_secrets(self) -> None:
        """Refuse to run a production process without its secrets: one line names them all."""
        missing = [
            name
            for name, value in zip(
                REQUIRED_IN_PRODUCTION,
                (self.secret_key, self.app_secret, self.admin_token),
                strict=True,
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                "missing required environment variable(s): " + ", ".join(missing)
            )
        short = [
            name
            for name, value in (
                ("WA_SECRET_KEY", self.secret_key),
                ("WA_ADMIN_TOKEN", self.admin_token),
            )
            if value is not None and len(value) < MIN_SECRET_LENGTH
        ]
        if short:
            raise ConfigurationError(
                f"too short (at least {MIN_SECRET_LENGTH} characters): " + ", ".join(short)
            )

    def with_dev_secrets(self) -> Settings:
        """Fill unset secrets from `WA_DATA_DIR/dev-secrets.json`, generated on first use."""
        path = self.data_dir / "dev-secrets.json"
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text())
        generated = {
            "WA_SECRET_KEY": stored.get("WA_SECRET_KEY") or secrets.token_urlsafe(32),
            "WA_APP_SECRET": stored.get("WA_APP_SECRET") or secrets.token_hex(16),
            "WA_ADMIN_TOKEN": stored.get("WA_ADMIN_TOKEN") or "adm_" + secrets.token_urlsafe(24),
            "WA_VERIFY_TOKEN": stored.get("WA_VERIFY_TOKEN") or secrets.token_urlsafe(16),
            "WA_APP_ID": stored.get("WA_APP_ID") or "1000000000000001",
        }
        if generated != stored:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Created private: never readable by others, not even for a moment.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(json.dumps(generated, indent=2))
        return replace(
            self,
            secret_key=self.secret_key or generated["WA_SECRET_KEY"],
            app_secret=self.app_secret or generated["WA_APP_SECRET"],
            admin_token=self.admin_token or generated["WA_ADMIN_TOKEN"],
            verify_token=self.verify_token or generated["WA_VERIFY_TOKEN"],
            app_id=self.app_id or generated["WA_APP_ID"],
        )
