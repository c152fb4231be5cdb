"""A local emulator of Meta's WhatsApp Cloud (Graph) API for development and tests.

`create_sandbox(SandboxConfig(...))` returns a Starlette app that answers the Graph endpoints
this project uses with Meta's shapes, errors and limits, posts signed status and inbound
webhooks, and exposes a control API under `/_sandbox/`.
"""

from __future__ import annotations

from wa_cloud.sandbox.app import create_sandbox
from wa_cloud.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_sandbox"]
