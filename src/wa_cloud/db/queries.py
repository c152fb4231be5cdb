"""Every SQL statement of the service, loaded once from `sql/*.sql`.

Each statement sits under a `-- name: <name>` header; `Q.<name>` is its text. Keeping SQL in
files per aggregate makes each query reviewable in one place (procrastinate's habit). A NOTIFY
channel is written `{{channel.<key>}}` and filled in from db/channels.py, its one declaration.
"""

from __future__ import annotations

import re
from pathlib import Path

from wa_cloud.db import channels

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_CHANNEL = re.compile(r"\{\{channel\.(\w+)\}\}")


def _channel(match: re.Match[str]) -> str:
    try:
        return channels.BY_KEY[match.group(1)]
    except KeyError:
        raise ValueError(f"unknown NOTIFY channel {match.group(0)!r} in the SQL") from None


class _Queries:
    def __init__(self, directory: Path) -> None:
        statements: dict[str, str] = {}
        for path in sorted(directory.glob("*.sql")):
            parts = _HEADER.split(_CHANNEL.sub(_channel, path.read_text()))
            for name, body in zip(parts[1::2], parts[2::2], strict=True):
                if name in statements:
                    raise ValueError(f"query {name!r} is defined twice ({path.name})")
                statements[name] = body.strip().rstrip(";")
        self._statements = statements

    def __getattr__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None


Q = _Queries(Path(__file__).with_name("sql"))
