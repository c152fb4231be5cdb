"""Process-local counters and the Prometheus text exposition.

Counters count what this process did (received, rejected, processed). What is true of the whole
deployment (deliveries pending, quarantined, the processing lag) is read from PostgreSQL at
scrape time, so any web process reports the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

HELP: Mapping[str, tuple[str, str]] = {
    "wa_webhook_deliveries_received_total": (
        "counter",
        "Signed webhook bodies committed to PostgreSQL by this process.",
    ),
    "wa_webhook_rejected_total": ("counter", "Webhook requests refused, by reason."),
    "wa_deliveries_processed_total": ("counter", "Deliveries indexed by this process's worker."),
    "wa_deliveries_quarantined_total": ("counter", "Deliveries this process's worker quarantined."),
    "wa_deliveries_retried_total": (
        "counter",
        "Delivery processing failures this process's worker will retry.",
    ),
    "wa_outbox_accepted_total": ("counter", "Sends Meta accepted, by this process."),
    "wa_outbox_errors_total": ("counter", "Send errors from Meta, by code and what happens next."),
    "wa_outbox_failed_total": ("counter", "Sends refused before Meta, by reason."),
    "wa_outbox_requeued_late_total": (
        "counter",
        "Sends too late for their slot, queued again instead of bunched.",
    ),
    "wa_outbox_held_back_total": (
        "counter",
        "Sends queued again behind an earlier one to the same recipient still on its way "
        "(in flight, or back in the queue).",
    ),
    "wa_outbox_recovered_total": ("counter", "Sends whose worker died, by what became of them."),
    "wa_outbox_lease_lost_total": (
        "counter",
        "Sends not made because their lease ran out before the dispatch mark (another worker "
        "may send them).",
    ),
    "wa_outbox_send_crashes_total": ("counter", "Sends that crashed (a bug), by this process."),
    "wa_outbox_numbers_flagged_total": (
        "counter",
        "Numbers flagged unable to send (token unreadable, claim crashed); their queue failed.",
    ),
    "wa_worker_restarts_total": ("counter", "Worker loops that died and were restarted, by loop."),
    "wa_forwards_delivered_total": (
        "counter",
        "Events this process forwarded to a tenant's webhook and it accepted (2xx).",
    ),
    "wa_forwards_retried_total": (
        "counter",
        "Forwarding attempts that failed and will be retried, by reason.",
    ),
    "wa_forwards_failed_total": ("counter", "Forwards given up, by reason."),
    "wa_events_orphaned_total": (
        "counter",
        "Events kept as orphaned by this process's worker: the number is unknown, or the "
        "delivery's source (platform app or a tenant's app) may not speak for it.",
    ),
    "wa_deliveries": (
        "gauge",
        "Stored deliveries by state (whole deployment; pending and quarantined counted up to a "
        "million, processed estimated).",
    ),
    "wa_processing_lag_seconds": (
        "gauge",
        "Age of the oldest delivery not yet processed (whole deployment).",
    ),
    "wa_orphaned_events": ("gauge", "Events for numbers no tenant owns (whole deployment)."),
    "wa_gc_frozen_objects": (
        "gauge",
        "Objects this process set aside from full garbage collections once started (modules, "
        "the app, the SDKs): 0 means each full collection walks them all again.",
    ),
}


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        if amount:
            self._values[(name, tuple(sorted(labels.items())))] += amount

    def render(self, gauges: Iterable[tuple[str, Mapping[str, str], float]] = ()) -> str:
        samples: dict[str, list[str]] = defaultdict(list)
        for (name, labels), value in sorted(self._values.items()):
            samples[name].append(f"{name}{_labels(dict(labels))} {value:g}")
        for name, gauge_labels, value in gauges:
            samples[name].append(f"{name}{_labels(gauge_labels)} {value:g}")
        lines: list[str] = []
        for name, (kind, text) in HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            lines += samples.get(name, [f"{name} 0"] if kind == "counter" else [])
        return "\n".join(lines) + "\n"
