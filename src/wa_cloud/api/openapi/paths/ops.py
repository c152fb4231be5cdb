"""`paths` of the ops tag: liveness, readiness, metrics and this document."""

from __future__ import annotations

from functools import partial
from typing import Final

from wa_cloud.api.openapi.schema import Schema, err, ok, operation, ref

# Every operation here: the ops tag, no credentials in the document.
_operation: Final = partial(operation, tag="ops")


def paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": _operation(
                "healthz",
                "The process is alive",
                responses={"200": ok("Alive.", ref("Health"))},
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "The database is reachable and its schema current",
                responses={
                    "200": ok("Ready.", ref("Ready")),
                    "503": ok(
                        "`database_unavailable`, `migrations_pending`, or `worker_degraded` "
                        "(a worker loop of this process died and is restarting).",
                        ref("Error"),
                    ),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                description="With `WA_METRICS_TOKEN` set: `Authorization: Bearer <it>`.",
                responses={
                    "200": ok(
                        "Prometheus text format 0.0.4.",
                        {"type": "string"},
                        media_type="text/plain",
                    ),
                    "401": err("Unauthorized"),
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                responses={"200": ok("OpenAPI 3.1.", {"type": "object"})},
            )
        },
    }
