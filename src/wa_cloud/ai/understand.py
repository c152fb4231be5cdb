"""What a customer's media says, through Gemini (the `google-genai` SDK): voice notes and audio
transcribed, images and stickers described, video and PDF summarised. The text is stored with
the message (`messages.media_text`) and goes into the model's turn.

Audio Gemini cannot read (WhatsApp's AMR, for one) is converted with pydub first. Files above
the inline limit are not sent (the message is kept; the assistant says it cannot see it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from wa_cloud.ai.models import ANSWER_BUDGET, Answer, ModelFailed
from wa_cloud.ai.usage import Feature
from wa_cloud.media.voice import AudioConversionError, to_mp3

GEMINI_MODEL: Final = "gemini-2.5-flash"
# Gemini takes inline files up to 20 MB per request (the body, base64 included).
INLINE_LIMIT: Final = 14 * 1024 * 1024
# What Gemini reads as audio; anything else is converted to MP3 first.
GEMINI_AUDIO: Final = frozenset(
    {"audio/wav", "audio/mp3", "audio/mpeg", "audio/aiff", "audio/aac", "audio/ogg", "audio/flac"}
)
PROMPTS: Final = {
    "transcription": (
        "Transcribe this voice message exactly, in its own language. Answer with the "
        "transcript only."
    ),
    "vision": "Describe this image in one or two sentences, including any text it shows.",
    "video": "Summarise this video in two or three sentences, including what is said in it.",
    "document": "Summarise this document in a few sentences: what it is and what it asks.",
}


@dataclass(frozen=True, slots=True)
class Understood:
    text: str
    feature: Feature
    answer: Answer


def _kind(message_type: str, mime: str) -> tuple[str, Feature] | None:
    """(prompt, usage feature) for a message's media, or None when it is not understood."""
    if message_type in ("audio", "voice") or mime.startswith("audio/"):
        return "transcription", "transcription"
    if message_type in ("image", "sticker") or mime.startswith("image/"):
        return "vision", "vision"
    if message_type == "video" or mime.startswith("video/"):
        return "video", "vision"
    if mime == "application/pdf":
        return "document", "vision"
    return None


class MediaReader:
    def __init__(self, api_key: str, base_url: str | None, http: httpx.AsyncClient) -> None:
        # Our own client: left to itself the SDK's async side uses aiohttp through a session
        # subclass that aiohttp deprecates.
        options = types.HttpOptions(
            base_url=base_url,
            httpx_async_client=http,
            timeout=int(ANSWER_BUDGET * 1000),
            retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.5, max_delay=5.0),
        )
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    async def read(self, message_type: str, content: bytes, mime: str) -> Understood | None:
        """What the media says; None when it is not a kind Gemini reads here."""
        mime = (mime or "").split(";")[0].strip().lower()
        kind = _kind(message_type, mime)
        if kind is None or len(content) > INLINE_LIMIT:
            return None
        prompt, feature = kind
        if feature == "transcription" and mime not in GEMINI_AUDIO:
            try:
                content = await asyncio.to_thread(to_mp3, content)
            except AudioConversionError:
                return None
            mime = "audio/mp3"
        try:
            async with asyncio.timeout(ANSWER_BUDGET):
                response = await self._client.aio.models.generate_content(
                    model=GEMINI_MODEL,
                    contents=[types.Part.from_bytes(data=content, mime_type=mime), PROMPTS[prompt]],
                )
        except (genai_errors.APIError, TimeoutError, OSError) as exc:
            raise ModelFailed(f"Gemini: {type(exc).__name__}") from exc
        usage = response.usage_metadata
        answer = Answer.reported(
            (response.text or "").strip(),
            GEMINI_MODEL,
            (usage.prompt_token_count or 0) if usage else 0,
            (usage.candidates_token_count or 0) if usage else 0,
        )
        return Understood(answer.text, feature, answer) if answer.text else None
