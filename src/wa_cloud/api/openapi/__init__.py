"""`GET /openapi.json`: the OpenAPI 3.1 description of every HTTP operation, as plain data.

Hand-written, not derived from the handlers: it is the contract the handlers are tested
against (tests/test_openapi.py runs schemathesis on it). A route added to `app.ROUTES` without
an entry here fails that test, and so does an entry here that no route serves.

Request schemas say what each handler accepts (required fields, types, limits, and
`additionalProperties: false` where the handler refuses unknown fields); a body that passes
the schema can still break a rule the schema cannot express (a closed 24-hour window, a
duplicate number): that is the documented 409 or 422. Response schemas pin every field.

`schema` builds the pieces, `components` names the shared ones, `paths` holds the operations
one module per tag; this module assembles the document and serves it.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from wa_cloud.api.openapi.components import PARAMETERS, RESPONSES, SCHEMAS, SECURITY_SCHEMES
from wa_cloud.api.openapi.paths import all_paths
from wa_cloud.api.openapi.schema import Schema, json_body, ref

HTTP_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _version() -> str:
    try:
        return metadata.version("wa-cloud")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_document() -> Schema:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "wa-cloud",
            "version": _version(),
            "summary": "Multi-tenant WhatsApp Cloud API service.",
            "description": (
                'Errors are JSON `{"error": {"code", "message"}}`: 400 malformed, 401 no '
                "credentials, 403 refused, 404 not found or not yours, 409 conflict, 413 too "
                "large, 422 valid JSON that breaks a rule, 503 a dependency is down. Lists "
                'are `{"data": [...], "next": cursor or null}`.'
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "webhooks", "description": "From Meta: signed with the app secret."},
            {"name": "ops", "description": "Liveness, readiness, metrics, this document."},
            {"name": "pages", "description": "HTML pages opened from signed links."},
            {"name": "admin", "description": "The platform operator (WA_ADMIN_TOKEN)."},
            {"name": "tenant", "description": "A business, with one of its API keys."},
            {
                "name": "campaigns",
                "description": "A business's templates, broadcasts and opt-outs (its API keys).",
            },
        ],
        "paths": all_paths(),
        "webhooks": {
            "forwardedEvent": {
                "post": {
                    "operationId": "forwardedEvent",
                    "summary": "What we POST to your webhook (PUT /v1/webhooks)",
                    "description": (
                        "Signed: `X-WA-Cloud-Signature: sha256=<hex HMAC-SHA256(secret, "
                        '"<X-WA-Cloud-Timestamp>.<raw body>")>`. Answer 2xx; anything else '
                        "but 408/429 is not retried, network errors and 5xx are, with backoff."
                    ),
                    "parameters": [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in (
                            "X-WA-Cloud-Signature",
                            "X-WA-Cloud-Timestamp",
                            "X-WA-Cloud-Delivery",
                            "X-WA-Cloud-Event",
                        )
                    ],
                    "requestBody": json_body(ref("ForwardedEvent")),
                    "responses": {"200": {"description": "Any 2xx: delivered."}},
                }
            }
        },
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
        },
    }


DOCUMENT: Final = build_document()
_BODY: Final = json.dumps(DOCUMENT, separators=(",", ":")).encode()


def described_operations() -> list[tuple[str, str]]:
    """Every (METHOD, path) the document describes, sorted."""
    return sorted(
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    )


async def spec(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")
