"""A number's provider from its row: the one place that reads `numbers.provider`.

The row carries `phone_number_id`, `provider`, `access_token_enc` (a Meta token, or a web-session
gateway's API key), `waba_id` and, for web sessions, `gateway_url` and `gateway_instance`. The
secret is opened here, only when a call is about to be made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from wa_cloud.errors import Conflict
from wa_cloud.graph.client import GraphClient
from wa_cloud.providers.base import Capabilities, Provider, ProviderFor
from wa_cloud.providers.cloud import CLOUD_CAPABILITIES, cloud_provider
from wa_cloud.providers.websession import WEBSESSION_CAPABILITIES, Gateway, WebSessionProvider
from wa_cloud.secretbox import SecretBox, SecretUnreadable
from wa_cloud.tenants import sealed


def capabilities_of(number: Mapping[str, Any]) -> Capabilities:
    """What a number's provider can do, read from its row without opening its secret."""
    if number.get("provider") == "websession":
        return WEBSESSION_CAPABILITIES
    return CLOUD_CAPABILITIES


def gateway_of(
    http: httpx.AsyncClient | None, box: SecretBox, number: Mapping[str, Any]
) -> Gateway:
    """The gateway instance of a web-session number's row."""
    if http is None:
        raise ValueError("a web-session number needs the URL guard's HTTP client")
    pnid = str(number["phone_number_id"])
    key = box.open(number["access_token_enc"], context=sealed.NUMBER_TOKEN.context(pnid))
    return Gateway(http, str(number["gateway_url"]), key, str(number["gateway_instance"]))


def number_provider(
    graph: GraphClient, http: httpx.AsyncClient | None, box: SecretBox, number: Mapping[str, Any]
) -> Provider:
    if number.get("provider") == "websession":
        return WebSessionProvider(gateway_of(http, box, number))
    return cloud_provider(graph, box, number)


def number_providers(graph: GraphClient, http: httpx.AsyncClient, box: SecretBox) -> ProviderFor:
    """A provider for a number's row (its secret opened just for this); `http` is the URL
    guard's client, as a gateway is a tenant's URL."""
    return lambda row: number_provider(graph, http, box, dict(row))


def request_providers(graph: GraphClient, http: httpx.AsyncClient, box: SecretBox) -> ProviderFor:
    """`number_providers` for an API request: a secret that cannot be opened is a 409."""

    def build(number: Mapping[str, Any]) -> Provider:
        try:
            return number_provider(graph, http, box, dict(number))
        except SecretUnreadable:
            # Ours to fix (a master key missing here), not the caller's: said plainly, no 500.
            raise Conflict(
                "This number's access token cannot be opened; the operator must restore the "
                "key it was sealed with, or register the number again.",
                "number_unavailable",
            ) from None

    return build
