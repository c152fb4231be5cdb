"""What a campaign costs: Meta's per-message rates by template category and the recipient's
country calling code, from `prices.csv` beside this file (the operator updates it when Meta
publishes a new rate card).

Meta charges a template message when it is delivered; non-template messages are free (they can
only go inside an open customer service window), and so are utility templates delivered inside
one. The estimate counts every recipient as delivered: an upper bound.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any, Final

CURRENCY: Final = "USD"
CATEGORIES: Final = ("marketing", "utility", "authentication")
REST_OF_WORLD: Final = "ZZ"


@dataclass(frozen=True, slots=True)
class Rates:
    country: str
    marketing: Decimal
    utility: Decimal
    authentication: Decimal

    def of(self, category: str) -> Decimal:
        return getattr(self, category) if category in CATEGORIES else Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceTable:
    by_prefix: Mapping[str, Rates]
    rest_of_world: Rates
    longest: int

    def rates_for(self, recipient: str) -> Rates:
        """The rates of the longest calling-code prefix of `recipient` (E.164 digits)."""
        for size in range(min(self.longest, len(recipient)), 0, -1):
            rates = self.by_prefix.get(recipient[:size])
            if rates is not None:
                return rates
        return self.rest_of_world

    def price(self, recipient: str, category: str, *, window_open: bool = False) -> Decimal:
        """One delivered message to `recipient`. `category` is the template's (lowercase), or
        `service` for a free-form message."""
        category = category.lower()
        if category == "service" or (category == "utility" and window_open):
            return Decimal(0)
        return self.rates_for(recipient).of(category)


def parse_prices(text: str) -> PriceTable:
    rows = csv.DictReader(
        io.StringIO(
            "".join(
                line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")
            )
        )
    )
    by_prefix: dict[str, Rates] = {}
    rest: Rates | None = None
    for row in rows:
        rates = Rates(
            row["country"].strip(),
            Decimal(row["marketing"]),
            Decimal(row["utility"]),
            Decimal(row["authentication"]),
        )
        if rates.country == REST_OF_WORLD:
            rest = rates
        for prefix in (row.get("calling_codes") or "").split():
            by_prefix[prefix] = rates
    if rest is None:
        raise ValueError(f"the price table has no {REST_OF_WORLD} (rest of world) row")
    return PriceTable(by_prefix, rest, max((len(p) for p in by_prefix), default=0))


@functools.cache
def price_table() -> PriceTable:
    text = resources.files("wa_cloud.campaigns").joinpath("prices.csv").read_text("utf-8")
    return parse_prices(text)


def estimate(
    recipients: Iterable[tuple[str, bool]], category: str, table: PriceTable | None = None
) -> dict[str, Any]:
    """`{"messages", "currency", "amount"}` for sending `category` to each (recipient, whether
    its customer service window is open)."""
    table = table or price_table()
    count, amount = 0, Decimal(0)
    for recipient, window_open in recipients:
        count += 1
        amount += table.price(recipient, category, window_open=window_open)
    return {"messages": count, "currency": CURRENCY, "amount": float(round(amount, 4))}
