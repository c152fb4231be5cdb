"""Apply alembic migrations: the only way the schema changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def script_location() -> Path:
    here = Path(__file__).resolve()
    # A wheel carries the migrations inside the package; an editable install uses the repo's.
    for candidate in (here.parents[1] / "_alembic", here.parents[3] / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("alembic migrations not found beside the package")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Synchronous: alembic's env runs its own event loop (call via asyncio.to_thread)."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def execute_script(op: Any, script: str) -> None:
    """Run a migration's SQL one statement at a time (asyncpg prepares each statement and
    refuses several at once). Statements end with a semicolon at the end of a line."""
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)
