"""Every SQL statement of the service, loaded once from `sql/*.sql`.

Each statement sits under a `-- name: <name>` header; `Q.<name>` is its text. Keeping SQL in
files per aggregate makes each query reviewable in one place (procrastinate's habit). A NOTIFY
channel is written `{{channel.<key>}}` and filled in from db/channels.py, its one declaration; a
piece of SQL several statements share is written `{{<fragment>:<arg>}}` and filled in from
`sql/fragments/<fragment>.sql` (its `{arg}` replaced, its comment lines dropped).
"""

from __future__ import annotations

import re
from pathlib import Path

from wa_cloud.db import channels

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_CHANNEL = re.compile(r"\{\{channel\.(\w+)\}\}")
_FRAGMENT = re.compile(r"\{\{(\w+):(\w+)\}\}")


def _channel(match: re.Match[str]) -> str:
    try:
        return channels.BY_KEY[match.group(1)]
    except KeyError:
        raise ValueError(f"unknown NOTIFY channel {match.group(0)!r} in the SQL") from None


def _fragments(directory: Path) -> dict[str, str]:
    return {
        path.stem: "\n".join(
            line for line in path.read_text().splitlines() if not line.startswith("--")
        ).strip()
        for path in directory.glob("*.sql")
    }


class _Queries:
    def __init__(self, directory: Path) -> None:
        fragments = _fragments(directory / "fragments")

        def fragment(match: re.Match[str]) -> str:
            try:
                text = fragments[match.group(1)]
            except KeyError:
                raise ValueError(f"unknown SQL fragment {match.group(0)!r}") from None
            return text.replace("{arg}", match.group(2))

        statements: dict[str, str] = {}
        for path in sorted(directory.glob("*.sql")):
            text = _FRAGMENT.sub(fragment, _CHANNEL.sub(_channel, path.read_text()))
            parts = _HEADER.split(text)
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
