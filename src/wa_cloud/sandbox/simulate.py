"""`wa-cloud simulate`: post correctly signed webhooks to a running server, as Meta would."""

from __future__ import annotations

from pathlib import Path

import httpx

from wa_cloud.inbound.signature import sign
from wa_cloud.sandbox.corpus import text_message


def read_bodies(files: list[str]) -> list[tuple[str, bytes]]:
    return [(f, Path(f).read_bytes()) for f in files]


async def simulate(
    url: str, secret: str, files: list[str], text: str | None, to: str, sender: str
) -> int:
    bodies = read_bodies(files)
    if text is not None:
        bodies.append(("text", text_message(to, sender, text)))
    if not bodies:
        print("nothing to send: give corpus files or --text")
        return 2
    failures = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for name, body in bodies:
            response = await client.post(
                url,
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-hub-signature-256": sign(body, secret),
                },
            )
            print(f"{response.status_code} {name}")
            failures += response.status_code != 200
    return 1 if failures else 0
