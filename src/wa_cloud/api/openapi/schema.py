"""Constructors of the document's pieces: JSON Schema shapes, `$ref`s to the components,
and operations with their error answers."""

from __future__ import annotations

from typing import Any, Final

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The same schema, also allowing null (OpenAPI 3.1: a type list)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def closed(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties, all required except `optional`."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


# A string the handler accepts: not blank once trimmed, no NUL (PostgreSQL text cannot hold one).
_NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
DIGITS = r"^[0-9]{5,20}$"
RECIPIENT = r"^(\+?[0-9]{6,20}|[A-Z]{2}\.[A-Za-z0-9.]+)$"


def text(max_length: int, description: str | None = None) -> Schema:
    schema: Schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": _NOT_BLANK,
    }
    if description:
        schema["description"] = description
    return schema


def digits(description: str) -> Schema:
    return {"type": "string", "pattern": DIGITS, "description": description}


TIMESTAMP: Final[Schema] = {"type": "string", "format": "date-time"}
UUID: Final[Schema] = {"type": "string", "format": "uuid"}


def page_of(item: str, *, single: bool = False) -> Schema:
    """The list shape `{"data": [...], "next": cursor|null}`; `single`: never a next page."""
    cursor: Schema = (
        {"type": "null"}
        if single
        else {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null on the last page.",
        }
    )
    return closed({"data": {"type": "array", "items": ref(item)}, "next": cursor})


def json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(description: str, schema: Schema, *, media_type: str = "application/json") -> Schema:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def err(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


# The query parameters of every paged list.
PAGING: Final[list[Schema]] = [param("Limit"), param("Cursor")]


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: dict[str, Schema],
    security: str | None = None,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    description: str | None = None,
) -> Schema:
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["security"] = [{security: []}] if security else []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    return op


_ERROR_RESPONSES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "Unprocessable",
    429: "RateLimited",
    503: "Unavailable",
}


def errors(*statuses: int) -> dict[str, Schema]:
    """The error answers of an authenticated operation: `statuses`, and always 401 (no or bad
    credentials), 429 (a tenant key over its rate) and 503 (the database is down)."""
    wanted = {*statuses, 401, 429, 503}
    return {str(status): err(_ERROR_RESPONSES[status]) for status in sorted(wanted)}


def with_body(
    operation_id: str,
    summary: str,
    *,
    body: Schema,
    tag: str,
    responses: dict[str, Schema],
    also: tuple[int, ...] = (),
    security: str | None = None,
    description: str | None = None,
) -> Schema:
    """An authenticated operation that takes a request `body`: its `responses`, then the error
    answers of `errors(*also)` and those of any body: 400 (not JSON), 413 (larger than the
    limit), 422 (valid JSON that breaks a rule)."""
    return operation(
        operation_id,
        summary,
        tag=tag,
        security=security,
        description=description,
        body=body,
        responses={**responses, **errors(400, 413, 422, *also)},
    )
