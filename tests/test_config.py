"""Settings from the environment: defaults, production secrets, dev secrets, no secret in repr."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wa_cloud.config import REQUIRED_IN_PRODUCTION, Settings
from wa_cloud.errors import ConfigurationError
from wa_cloud.secretbox import SecretBox

SECRET_VARS = ("WA_SECRET_KEY", "WA_APP_SECRET", "WA_ADMIN_TOKEN")


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.port == 8000
    assert settings.graph_base_url == "https://graph.facebook.com"
    assert settings.graph_version == "v23.0"
    assert settings.data_dir == Path(".wa-cloud")
    assert settings.log_format == "json"
    assert settings.dev is False
    assert settings.public_url is None
    assert settings.base_url == "http://localhost:8000"
    for secret in (
        settings.secret_key,
        settings.app_secret,
        settings.admin_token,
        settings.verify_token,
        settings.app_id,
        settings.openai_api_key,
        settings.gemini_api_key,
        settings.smtp_url,
    ):
        assert secret is None


def test_dev_logs_to_the_console_by_default() -> None:
    assert Settings.from_env({}, dev=True).log_format == "console"
    assert Settings.from_env({}, dev=True).dev is True
    assert Settings.from_env({"WA_LOG_FORMAT": "json"}, dev=True).log_format == "json"
    assert Settings.from_env({"WA_LOG_FORMAT": "console"}).log_format == "console"


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/wa",
            "PORT": "9001",
            "WA_DATA_DIR": "/var/lib/wa",
            "WA_GRAPH_BASE_URL": "http://127.0.0.1:8900/",
            "WA_GRAPH_VERSION": "v24.0",
            "WA_APP_ID": "123",
            "WA_SECRET_KEY": "k",
            "WA_APP_SECRET": "s",
            "WA_ADMIN_TOKEN": "a",
            "WA_PUBLIC_URL": "https://wa.example/",
        }
    )
    assert settings.database_url == "postgresql://u:p@db:5432/wa"
    assert settings.port == 9001
    assert settings.data_dir == Path("/var/lib/wa")
    assert settings.graph_base_url == "http://127.0.0.1:8900"
    assert settings.graph_version == "v24.0"
    assert settings.app_id == "123"
    assert (settings.secret_key, settings.app_secret, settings.admin_token) == ("k", "s", "a")
    assert settings.base_url == "https://wa.example"
    assert Settings.from_env({"PORT": "9002"}).base_url == "http://localhost:9002"


def test_blank_values_count_as_unset() -> None:
    settings = Settings.from_env({"WA_SECRET_KEY": "  ", "PORT": "", "WA_GRAPH_VERSION": " "})
    assert settings.secret_key is None
    assert settings.port == 8000
    assert settings.graph_version == "v23.0"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"WA_WORKER_POLL_SECONDS": "soon"}, "WA_WORKER_POLL_SECONDS"),
        ({"WA_LOG_FORMAT": "xml"}, "WA_LOG_FORMAT"),
    ],
)
def test_bad_values_are_configuration_errors(environ: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        Settings.from_env(environ)


def test_require_production_secrets_names_every_missing_one_in_one_line() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({}).require_production_secrets()
    message = str(caught.value)
    assert "\n" not in message
    for name in SECRET_VARS:
        assert name in message
    assert set(REQUIRED_IN_PRODUCTION) == set(SECRET_VARS)

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"WA_SECRET_KEY": "k"}).require_production_secrets()
    message = str(caught.value)
    assert "WA_APP_SECRET" in message and "WA_ADMIN_TOKEN" in message
    assert "WA_SECRET_KEY" not in message

    Settings.from_env(
        {"WA_SECRET_KEY": "k" * 32, "WA_APP_SECRET": "s", "WA_ADMIN_TOKEN": "a" * 32}
    ).require_production_secrets()


def test_production_refuses_short_master_key_and_admin_token() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {"WA_SECRET_KEY": "k" * 31, "WA_APP_SECRET": "s", "WA_ADMIN_TOKEN": "a" * 32}
        ).require_production_secrets()
    message = str(caught.value)
    assert "WA_SECRET_KEY" in message and "WA_ADMIN_TOKEN" not in message
    assert "k" * 31 not in message
    with pytest.raises(ConfigurationError, match="WA_ADMIN_TOKEN"):
        Settings.from_env(
            {"WA_SECRET_KEY": "k" * 32, "WA_APP_SECRET": "s", "WA_ADMIN_TOKEN": "short"}
        ).require_production_secrets()


def test_private_urls_are_refused_unless_allowed_and_dev_allows_them() -> None:
    assert Settings.from_env({}).allow_private_urls is False
    assert Settings.from_env({}, dev=True).allow_private_urls is True
    assert Settings.from_env({"WA_ALLOW_PRIVATE_URLS": "true"}).allow_private_urls is True
    assert Settings.from_env({"WA_ALLOW_PRIVATE_URLS": "0"}, dev=True).allow_private_urls is False
    with pytest.raises(ConfigurationError, match="WA_ALLOW_PRIVATE_URLS"):
        Settings.from_env({"WA_ALLOW_PRIVATE_URLS": "maybe"})
    assert Settings.from_env({}).raw_retention_days == 7
    assert Settings.from_env({"WA_RAW_RETENTION_DAYS": "2"}).raw_retention_days == 2


def _environment_without_secrets(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_VARS and k != "DATABASE_URL" and not k.startswith("WA_")
    }
    env["WA_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_commands_refuse_to_start_without_secrets(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wa_cloud.cli", command],
        env=_environment_without_secrets(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for name in SECRET_VARS:
        assert name in lines[0]
    assert not (tmp_path / "data").exists(), "nothing may be started or written"


def test_serve_names_only_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wa_cloud.cli", "serve"],
        env=_environment_without_secrets(tmp_path, WA_SECRET_KEY="k", WA_ADMIN_TOKEN="a"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "WA_APP_SECRET" in lines[0]
    assert "WA_SECRET_KEY" not in lines[0] and "WA_ADMIN_TOKEN" not in lines[0]


def test_dev_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Settings.from_env({"WA_DATA_DIR": str(data_dir)}, dev=True).with_dev_secrets()
    path = data_dir / "dev-secrets.json"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["WA_SECRET_KEY"] == first.secret_key
    assert stored["WA_APP_SECRET"] == first.app_secret
    assert stored["WA_ADMIN_TOKEN"] == first.admin_token
    assert stored["WA_VERIFY_TOKEN"] == first.verify_token
    for value in (first.secret_key, first.app_secret, first.admin_token, first.verify_token):
        assert value and len(value) >= 16
    first.require_production_secrets()

    written = path.read_bytes()
    second = Settings.from_env({"WA_DATA_DIR": str(data_dir)}, dev=True).with_dev_secrets()
    assert (second.secret_key, second.app_secret, second.admin_token, second.verify_token) == (
        first.secret_key,
        first.app_secret,
        first.admin_token,
        first.verify_token,
    )
    assert second.app_id == first.app_id
    assert path.read_bytes() == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_dev_secrets_keep_values_set_in_the_environment(tmp_path: Path) -> None:
    environ = {"WA_DATA_DIR": str(tmp_path), "WA_SECRET_KEY": "from-env", "WA_APP_ID": "42"}
    settings = Settings.from_env(environ, dev=True).with_dev_secrets()
    assert settings.secret_key == "from-env"
    assert settings.app_id == "42"
    assert settings.admin_token and settings.app_secret
    again = Settings.from_env({"WA_DATA_DIR": str(tmp_path)}, dev=True).with_dev_secrets()
    assert again.admin_token == settings.admin_token
    assert again.app_secret == settings.app_secret


def test_repr_never_shows_secret_values() -> None:
    values = {
        "secret_key": "master-key-value-1",
        "app_secret": "app-secret-value-2",
        "admin_token": "admin-token-value-3",
        "verify_token": "verify-token-value-4",
        "openai_api_key": "sk-openai-value-5",
        "gemini_api_key": "gemini-key-value-6",
        "smtp_url": "smtp://mailer:smtp-pass-value-7@mail.example:587",
        "database_url": "postgresql://wa:db-pass-value-8@db.example:5432/wa",
    }
    settings = Settings(**values, app_id="1000000000000001")  # type: ignore[arg-type]
    for shown in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        for value in values.values():
            assert value not in shown
        for fragment in ("value-", "pass", "sk-"):
            assert fragment not in shown
    assert "1000000000000001" in repr(settings)  # what is not secret still helps debugging
    box = SecretBox("master-key-value-1")
    assert "master-key-value-1" not in repr(box)
