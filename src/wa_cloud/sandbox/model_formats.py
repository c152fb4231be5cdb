"""Structured output for the sandbox's OpenAI-compatible fake, in OpenAI's wire shapes.

A request asks for JSON with Chat Completions' `response_format: {"type": "json_schema",
"json_schema": {"name", "schema", "strict"?, "description"?}}` or the Responses API's
`text: {"format": {"type": "json_schema", "name", "schema", "strict"?, "description"?}}`
(`json_object` and `text` too). Both are checked as OpenAI checks them, a strict schema
included (every object closed with `additionalProperties: false`, every property required).

What the model answers to a JSON-schema request: the next scripted structured answer
(`POST /_models/script {"structured": [{...}, "raw text"]}`; an object is sent as compact JSON,
a string as it is, to script a broken answer), else a value that fits the schema (every
nullable property null). A scripted failure for these requests alone: `"structured_fail"`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from wa_cloud.sandbox.control import ControlError
from wa_cloud.sandbox.model_tools import ToolRequestError

Json = dict[str, Any]
StructuredReply = Json | str

NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
FORMAT_TYPES: Final = ("text", "json_object", "json_schema")
# OpenAI's documented limits of a strict schema.
MAX_PROPERTIES: Final = 5000
MAX_DEPTH: Final = 10
SCHEMA_TYPES: Final = frozenset(
    {"string", "number", "integer", "boolean", "object", "array", "null"}
)


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the request asked the answer to be: text, any JSON object, or a schema's JSON."""

    kind: str = "text"
    name: str | None = None
    schema: Json | None = None
    strict: bool = False

    @property
    def structured(self) -> bool:
        return self.kind == "json_schema"


def _missing(param: str) -> ToolRequestError:
    return ToolRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid_type(param: str, expected: str) -> ToolRequestError:
    return ToolRequestError(
        f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type"
    )


def _format(given: Any, param: str, spec: Any, spec_param: str) -> OutputFormat:
    """One format object; `spec` is where the schema's own keys are (Chat nests them under
    `json_schema`, Responses puts them beside `type`)."""
    if not isinstance(given, dict):
        raise _invalid_type(param, "an object")
    kind = given.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    if kind not in FORMAT_TYPES:
        raise ToolRequestError(
            f"Invalid value: {kind!r}. Supported values are: 'json_object', 'json_schema', and "
            "'text'.",
            param=f"{param}.type",
            code="invalid_value",
        )
    if kind != "json_schema":
        return OutputFormat(kind)
    if spec is None:
        raise _missing(spec_param)
    if not isinstance(spec, dict):
        raise _invalid_type(spec_param, "an object")
    name = spec.get("name")
    if name is None:
        raise _missing(f"{spec_param}.name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ToolRequestError(
            f"Invalid '{spec_param}.name': string does not match pattern. Expected a string "
            "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param=f"{spec_param}.name",
            code="invalid_value",
        )
    schema = spec.get("schema")
    if schema is None:
        raise _missing(f"{spec_param}.schema")
    if not isinstance(schema, dict):
        raise _invalid_type(f"{spec_param}.schema", "an object")
    strict = spec.get("strict", False)
    if strict is None:
        strict = False
    if not isinstance(strict, bool):
        raise _invalid_type(f"{spec_param}.strict", "a boolean")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise _invalid_type(f"{spec_param}.description", "a string")
    if strict:
        _check_strict(schema, name, spec_param, (), 0, [0])
    return OutputFormat("json_schema", name, schema, strict)


def chat_format(body: Json) -> OutputFormat:
    """Chat Completions' `response_format`."""
    given = body.get("response_format")
    if given is None:
        return OutputFormat()
    spec = given.get("json_schema") if isinstance(given, dict) else None
    found = _format(given, "response_format", spec, "response_format.json_schema")
    if found.kind == "json_object":
        _require_json_word(body.get("messages"), "messages")
    return found


def response_format(body: Json) -> OutputFormat:
    """The Responses API's `text.format`."""
    text = body.get("text")
    if text is None:
        return OutputFormat()
    if not isinstance(text, dict):
        raise _invalid_type("text", "an object")
    given = text.get("format")
    if given is None:
        return OutputFormat()
    found = _format(given, "text.format", given, "text.format")
    if found.kind == "json_object":
        _require_json_word([body.get("instructions"), body.get("input")], "input")
    return found


def _require_json_word(where: Any, param: str) -> None:
    if "json" not in json.dumps(where, ensure_ascii=False).lower():
        raise ToolRequestError(
            f"'{param}' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param=param,
        )


def _strict_error(name: str, spec_param: str, context: tuple[str, ...], rule: str) -> Exception:
    return ToolRequestError(
        f"Invalid schema for response_format '{name}': In context={context!r}, {rule}",
        param=spec_param + ".schema" if spec_param.startswith("text") else "response_format",
        code="invalid_json_schema",
    )


def _types(schema: Json) -> list[str]:
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []


def _check_strict(
    schema: Any,
    name: str,
    spec_param: str,
    context: tuple[str, ...],
    depth: int,
    properties: list[int],
) -> None:
    """OpenAI's strict-mode rules: a closed object at the root and everywhere, every property
    required, known types only, bounded depth and size."""

    def fail(rule: str) -> Exception:
        return _strict_error(name, spec_param, context, rule)

    if not isinstance(schema, dict):
        raise fail("schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'.")
    if depth > MAX_DEPTH:
        raise fail(f"schema nesting is deeper than {MAX_DEPTH} levels.")
    if not context and _types(schema) != ["object"]:
        raise fail(
            f"schema must be a JSON Schema of 'type: \"object\"', got {schema.get('type')!r}."
        )
    for branch in schema.get("anyOf") or []:
        _check_strict(branch, name, spec_param, (*context, "anyOf"), depth + 1, properties)
    kinds = _types(schema)
    unknown = [k for k in kinds if k not in SCHEMA_TYPES]
    if unknown:
        raise fail(f"type {unknown[0]!r} is not supported.")
    if "object" in kinds:
        if schema.get("additionalProperties") is not False:
            raise fail("'additionalProperties' is required to be supplied and to be false.")
        given = schema.get("properties") or {}
        if not isinstance(given, dict):
            raise fail("'properties' must be an object.")
        required = schema.get("required")
        missing = [k for k in given if not isinstance(required, list) or k not in required]
        if missing:
            raise fail(
                "'required' is required to be supplied and to be an array including every key "
                f"in properties. Missing '{missing[0]}'."
            )
        properties[0] += len(given)
        if properties[0] > MAX_PROPERTIES:
            raise fail(f"a schema may have at most {MAX_PROPERTIES} properties.")
        for key, sub in given.items():
            _check_strict(
                sub, name, spec_param, (*context, "properties", key), depth + 1, properties
            )
    if "array" in kinds and "items" in schema:
        _check_strict(schema["items"], name, spec_param, (*context, "items"), depth + 1, properties)


def fitting_value(schema: Any) -> Any:
    """A value the schema accepts, as plain as can be: null where allowed, else empty."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return None if None in schema["enum"] else schema["enum"][0]
    if schema.get("anyOf"):
        return fitting_value(schema["anyOf"][0])
    kinds = _types(schema)
    if "null" in kinds or not kinds:
        return None
    kind = kinds[0]
    if kind == "object":
        given = schema.get("properties") or {}
        return {k: fitting_value(v) for k, v in given.items()}
    return {"string": "", "number": 0, "integer": 0, "boolean": False, "array": []}.get(kind)


def fits(value: Any, schema: Any) -> bool:
    """Whether `value` fits the schema (types, required and closed objects, enums, anyOf)."""
    if not isinstance(schema, dict):
        return True
    if schema.get("anyOf"):
        return any(fits(value, branch) for branch in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = _types(schema)
    if kinds and not any(_is(value, k) for k in kinds):
        return False
    if isinstance(value, dict):
        given = schema.get("properties") or {}
        if any(k not in value for k in schema.get("required") or []):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(given):
            return False
        return all(fits(v, given.get(k)) for k, v in value.items())
    if isinstance(value, list) and "items" in schema:
        return all(fits(v, schema["items"]) for v in value)
    return True


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "object": dict, "array": list}.get(kind, object))


def structured_text(fmt: OutputFormat, scripted: StructuredReply | None) -> tuple[str, str | None]:
    """The answer's text for a JSON-schema request, and a note for the request log when a
    scripted object does not fit the schema (a strict model would never say it)."""
    if isinstance(scripted, str):
        return scripted, None
    value = fitting_value(fmt.schema) if scripted is None else scripted
    note = None
    if scripted is not None and not fits(scripted, fmt.schema):
        note = f"Scripted structured answer does not fit the schema '{fmt.name}'."
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")), note


def parse_structured(value: Any, where: str) -> StructuredReply:
    """A scripted structured answer from the control API: an object, or a string sent as is."""
    if not isinstance(value, dict | str):
        raise ControlError(f"{where} must be an object (sent as JSON) or a string (sent as is).")
    return value


def format_json(fmt: OutputFormat) -> Json:
    """The format as a response repeats it (Responses' `text.format`)."""
    if not fmt.structured:
        return {"type": fmt.kind}
    return {"type": "json_schema", "name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}
