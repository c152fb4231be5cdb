"""multipart/form-data parsing with the standard library.

Media uploads (ours, `POST /v1/media`, and the sandbox Meta's) are the only multipart bodies;
parsing them with `email` avoids a dependency (Starlette's `Request.form()` needs
python-multipart, which the project does not install).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    data: bytes
    filename: str | None
    content_type: str | None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def is_multipart(content_type: str) -> bool:
    return content_type.lower().startswith("multipart/form-data")


def parse(body: bytes, content_type: str) -> dict[str, Part]:
    """The parts of a multipart body by field name (the last one wins); {} if it is not one."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return {}
    parts: dict[str, Part] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        declared = part.get("content-type")
        parts[name] = Part(name, data, filename, str(declared) if declared else None)
    return parts


def summary(parts: dict[str, Part]) -> dict[str, object]:
    """What the request log shows of a form: field values, and files by name and size only."""
    shown: dict[str, object] = {}
    for name, part in parts.items():
        if part.filename is not None:
            shown[name] = {
                "filename": part.filename,
                "content_type": part.content_type,
                "size": len(part.data),
            }
        else:
            shown[name] = part.text
    return shown
