"""Templates as code: compare the files in `templates_meta/` with a WABA's templates, push the
difference, pull the WABA's templates as files.

A template is its (name, language). What Meta lets change: an APPROVED, REJECTED or PAUSED
template's components (and, unless it is APPROVED, its category), by `POST /{template_id}`.
Anything else (an APPROVED template's category, the parameter format, a template still in
review or disabled) needs a new name, and the plan says so instead of trying. A template on the
WABA with no file is left alone unless pruning is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from wa_cloud.graph.errors import GraphError

Action = Literal["create", "edit", "unchanged", "needs_new_name", "wait", "delete", "remote_only"]
EDITABLE: Final = frozenset({"APPROVED", "REJECTED", "PAUSED"})
FILE_KEYS: Final = ("name", "language", "category", "parameter_format", "components")


class TemplateAccount(Protocol):
    """A WABA's templates, through a number's token (providers/cloud.py)."""

    async def templates(self) -> list[dict[str, Any]]: ...

    async def create_template(self, template: Mapping[str, Any]) -> dict[str, Any]: ...

    async def edit_template(self, template_id: str, change: Mapping[str, Any]) -> None: ...

    async def delete_template(self, name: str, hsm_id: str) -> None: ...


@dataclass(slots=True)
class Change:
    action: Action
    name: str
    language: str
    reason: str = ""
    local: Mapping[str, Any] | None = None
    remote: Mapping[str, Any] | None = None
    result: str = field(default="")  # after a push: "ok" or Meta's error

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        done = f" [{self.result}]" if self.result else ""
        return f"{self.action:<14} {self.name} ({self.language}){why}{done}"


def key_of(template: Mapping[str, Any]) -> tuple[str, str]:
    return str(template.get("name", "")), str(template.get("language", ""))


def _format(template: Mapping[str, Any]) -> str:
    return str(template.get("parameter_format") or "POSITIONAL").upper()


def _same_components(a: Any, b: Any) -> bool:
    """Equal as Meta keeps them: component and format names compare without case."""

    def canon(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: (v.upper() if k in ("type", "format") and isinstance(v, str) else canon(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [canon(v) for v in value]
        return value

    return bool(json.dumps(canon(a), sort_keys=True) == json.dumps(canon(b), sort_keys=True))


def compare(local: Mapping[str, Any], remote: Mapping[str, Any]) -> Change:
    name, language = key_of(local)
    change = Change("unchanged", name, language, local=local, remote=remote)
    category = str(local.get("category", "")).upper()
    same_category = category == str(remote.get("category", "")).upper()
    same_components = _same_components(local.get("components"), remote.get("components"))
    if same_category and _format(local) == _format(remote) and same_components:
        return change
    status = str(remote.get("status", "")).upper()
    if _format(local) != _format(remote):
        change.action, change.reason = "needs_new_name", "the parameter format cannot change"
    elif not same_category and status == "APPROVED":
        change.action = "needs_new_name"
        change.reason = (
            f"an approved template's category cannot change ({remote.get('category')} -> "
            f"{category})"
        )
    elif status in EDITABLE:
        change.action = "edit"
        change.reason = "components" + ("" if same_category else " and category")
    elif status in ("PENDING", "IN_APPEAL"):
        change.action, change.reason = "wait", f"{status}: Meta is reviewing it; edit it after"
    else:
        change.action, change.reason = "needs_new_name", f"a {status} template cannot be edited"
    return change


def plan(
    local: Sequence[Mapping[str, Any]], remote: Sequence[Mapping[str, Any]], *, prune: bool = False
) -> list[Change]:
    """What a push would do, file by file, then the WABA's templates no file names."""
    on_waba = {key_of(t): t for t in remote}
    changes: list[Change] = []
    for template in local:
        found = on_waba.pop(key_of(template), None)
        if found is None:
            name, language = key_of(template)
            changes.append(Change("create", name, language, local=template))
        else:
            changes.append(compare(template, found))
    for (name, language), template in sorted(on_waba.items()):
        action: Action = "delete" if prune else "remote_only"
        reason = "" if prune else "on the WABA, not in the files (push --prune deletes it)"
        changes.append(Change(action, name, language, reason, remote=template))
    return changes


def edit_body(change: Change) -> dict[str, Any]:
    assert change.local is not None and change.remote is not None
    body: dict[str, Any] = {"components": list(change.local.get("components") or [])}
    if str(change.remote.get("status", "")).upper() != "APPROVED":
        body["category"] = str(change.local.get("category", "")).upper()
    return body


async def apply(account: TemplateAccount, changes: list[Change]) -> list[Change]:
    """Create, edit and delete as planned; each change records Meta's answer. One refusal
    does not stop the others."""
    for change in changes:
        try:
            if change.action == "create" and change.local is not None:
                created = await account.create_template(file_body(change.local))
                change.result = f"ok: {created.get('status', 'PENDING')}"
            elif change.action == "edit" and change.remote is not None:
                await account.edit_template(str(change.remote.get("id")), edit_body(change))
                change.result = "ok: PENDING"
            elif change.action == "delete" and change.remote is not None:
                await account.delete_template(change.name, str(change.remote.get("id")))
                change.result = "ok"
        except GraphError as exc:
            change.result = f"refused by Meta ({exc.code}): {exc.details or exc.message}"
    return changes


def file_body(template: Mapping[str, Any]) -> dict[str, Any]:
    """A template as its file holds it: Meta's create body, nothing of its state."""
    body = {k: template[k] for k in FILE_KEYS if k in template}
    body.setdefault("parameter_format", "POSITIONAL")
    return body


def load_readable(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The templates of files and directories (their *.json) that read as JSON objects; the
    rest are template_rules.check_paths's to report."""
    found: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            try:
                document = json.loads(file.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(document, dict):
                found.append(document)
    return found


def pull_files(remote: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Write each of the WABA's templates as a file: `<name>.json`, or `<name>.<language>.json`
    when the name has several languages."""
    directory.mkdir(parents=True, exist_ok=True)
    languages: dict[str, int] = {}
    for template in remote:
        languages[str(template.get("name"))] = languages.get(str(template.get("name")), 0) + 1
    written: list[Path] = []
    for template in remote:
        name, language = key_of(template)
        stem = name if languages[name] == 1 else f"{name}.{language}"
        path = directory / f"{stem}.json"
        path.write_text(json.dumps(file_body(template), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
