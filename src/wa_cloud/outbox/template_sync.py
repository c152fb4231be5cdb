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
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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


# What Meta accepts as a template's name and language code: nothing that can leave a directory
# or hide a file (a name comes from the Graph API's answer, not from us).
_TEMPLATE_NAME: Final = re.compile(r"[a-z0-9_]{1,512}")
_LANGUAGE_CODE: Final = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]{2,8})*")


def _unsafe_to_name_a_file(name: str, language: str) -> str | None:
    """Why a template cannot name a file, or None."""
    if not _TEMPLATE_NAME.fullmatch(name):
        return "not a template name Meta allows (a-z, 0-9, _)"
    if not _LANGUAGE_CODE.fullmatch(language):
        return "not a language code (like en or en_US)"
    return None


def pull_files(
    remote: Sequence[Mapping[str, Any]],
    directory: Path,
    on_skip: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write each of the WABA's templates as a file: `<name>.json`, or `<name>.<language>.json`
    when the name has several languages. A template whose name or language could not be a file
    in `directory` is not written; `on_skip` hears which and why."""
    directory.mkdir(parents=True, exist_ok=True)
    inside = directory.resolve()
    languages = Counter(key_of(template)[0] for template in remote)
    written: list[Path] = []
    for template in remote:
        name, language = key_of(template)
        reason = _unsafe_to_name_a_file(name, language)
        stem = name if languages[name] == 1 else f"{name}.{language}"
        path = directory / f"{stem}.json"
        # A link already in the directory could still lead out of it.
        if reason is None and not path.resolve().is_relative_to(inside):
            reason = f"{path} leads outside {directory}"
        if reason is None:
            try:
                path.write_text(
                    json.dumps(file_body(template), indent=2, ensure_ascii=False) + "\n", "utf-8"
                )
            except OSError as exc:  # a 512-character name is past most file systems' limit
                reason = f"{path} cannot be written: {exc.strerror}"
        if reason is None:
            written.append(path)
        elif on_skip is not None:
            on_skip(f"{name!r} ({language!r}): {reason}")
    return written
