"""Every column that holds a sealed secret, in one table.

Each value is sealed with a context naming its column and row, so a ciphertext copied into
another row does not open; `wa-cloud rotate-key` walks this table to re-seal everything under
the current master key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: str
    key_column: str
    column: str
    purpose: str

    def context(self, key: str) -> str:
        return f"{self.purpose}:{key}"


NUMBER_TOKEN = SealedColumn(
    "numbers", "phone_number_id", "access_token_enc", "numbers.access_token"
)
NUMBER_PIN = SealedColumn("numbers", "phone_number_id", "pin_enc", "numbers.pin")
APP_SECRET = SealedColumn("apps", "app_id", "app_secret_enc", "apps.app_secret")
APP_VERIFY_TOKEN = SealedColumn("apps", "app_id", "verify_token_enc", "apps.verify_token")
# The key is the tenant id (its canonical text form, as str(UUID) gives it).
WEBHOOK_SECRET = SealedColumn(
    "tenant_webhooks", "tenant_id", "secret_enc", "tenant_webhooks.secret"
)
# A tenant's own model key for its number's assistant.
BOT_API_KEY = SealedColumn("bots", "phone_number_id", "api_key_enc", "bots.api_key")

# The header values of a number's HTTP tools, as one JSON object (ai/tools.py).
BOT_TOOL_SECRETS = SealedColumn("bots", "phone_number_id", "tool_secrets_enc", "bots.tool_secrets")

ALL = (
    NUMBER_TOKEN,
    NUMBER_PIN,
    APP_SECRET,
    APP_VERIFY_TOKEN,
    WEBHOOK_SECRET,
    BOT_API_KEY,
    BOT_TOOL_SECRETS,
)
