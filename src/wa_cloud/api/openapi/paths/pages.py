"""`paths` of the pages tag: HTML pages opened from signed links."""

from __future__ import annotations

from typing import Final

from wa_cloud.api.openapi.schema import Schema, err, ok, operation, ref

_HTML: Final[Schema] = {"type": "string"}


def _refused(description: str) -> Schema:
    """A refusal: the friendly page, or the JSON error body (as any other route's)."""
    return {
        "description": description,
        "content": {"text/html": {"schema": _HTML}, "application/json": {"schema": ref("Error")}},
    }


def paths() -> dict[str, Schema]:
    return {
        "/t/{token}": {
            "get": operation(
                "statusPage",
                "A tenant's status page, opened from the signed link of an invitation",
                tag="pages",
                parameters=[
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 512},
                    }
                ],
                responses={
                    "200": ok("The page.", _HTML, media_type="text/html"),
                    "403": _refused("The tenant is deactivated: a friendly page."),
                    "404": _refused("Expired, tampered with or unknown: a friendly page."),
                    "410": _refused("Replaced by a newer invitation's link: a friendly page."),
                    "503": err("Unavailable"),
                },
            )
        },
    }
