"""The `webhooks/` corpus of real-shaped Meta payloads, and building inbound bodies like Meta."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path


def corpus_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "_webhooks", here.parents[3] / "webhooks"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the webhooks/ corpus is not installed beside the package")


def corpus_files(*groups: str) -> list[Path]:
    """Every valid corpus payload (optionally only some groups), sorted by path."""
    root = corpus_dir()
    chosen = groups or tuple(p.name for p in root.iterdir() if p.is_dir() and p.name != "invalid")
    return sorted(p for g in chosen for p in (root / g).glob("*.json"))


def text_message(
    phone_number_id: str,
    sender: str,
    body: str,
    *,
    display_phone_number: str = "15550783881",
    waba_id: str = "102290129340398",
    name: str = "Test Customer",
) -> bytes:
    """A one-message inbound delivery exactly as Meta shapes it."""
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_phone_number,
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": "wamid.SIM" + uuid.uuid4().hex,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": body},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(document, ensure_ascii=False).encode()
