"""`paths` of the ops tag: liveness, readiness, metrics and this document."""

from __future__ import annotations

from wa_cloud.api.openapi.schema import Schema, err, ok, operation, ref


def paths() -> dict[str, Schema]:
    return {
        "/healthz": {
            "get": operation(
                "healthz",
                "The process is alive",
                tag="ops",
                responses={"200": ok("Alive.", ref("Health"))},
            )
        },
        "/readyz": {
            "get": operation(
                "readyz",
                "The database is reachable and its schema current",
                tag="ops",
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
            "get": operation(
                "metrics",
                "Prometheus metrics",
                tag="ops",
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
            "get": operation(
                "openapi",
                "This document",
                tag="ops",
                responses={"200": ok("OpenAPI 3.1.", {"type": "object"})},
            )
        },
    }
