"""Every SQL statement of the service, loaded once from `sql/*.sql`.

Each statement sits under a `-- name: <name>` header; `Q.<name>` is its text. Keeping SQL in
files per aggregate makes each query reviewable in one place (procrastinate's habit).
"""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


class _Queries:
    def __init__(self, directory: Path) -> None:
        statements: dict[str, str] = {}
        for path in sorted(directory.glob("*.sql")):
            parts = _HEADER.split(path.read_text())
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
