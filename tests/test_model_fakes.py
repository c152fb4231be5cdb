"""The sandbox's model fakes driven by the real SDKs over loopback: `openai.AsyncOpenAI`
(chat completions, responses, speech, its own retries) and `google.genai` (generateContent
with inline media), their refusals, and the control API under `/_models/`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import serve_asgi
from wa_cloud.sandbox import SandboxConfig, create_sandbox
from wa_cloud.sandbox.models import DEFAULT_REPLY, GEMINI_ANSWERS

OPENAI_KEY = "sk-sandbox-test-key"
GEMINI_KEY = "AIza-sandbox-test-key"
# A few bytes that stand in for a voice note: the fake decodes base64, it never plays it.
VOICE_NOTE = b"OggS" + bytes(range(256)) * 4


@dataclass
class Fakes:
    base_url: str
    control: httpx.AsyncClient

    async def script(self, *replies: Any) -> dict[str, Any]:
        response = await self.control.post("/_models/script", json={"replies": list(replies)})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def records(self) -> list[dict[str, Any]]:
        response = await self.control.get("/_models/requests")
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    app = create_sandbox(SandboxConfig(webhook_url=None, app_secret="x"))
    async with (
        serve_asgi(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=15) as control,
    ):
        yield Fakes(base_url, control)


@contextlib.asynccontextmanager
async def openai_client(
    fakes: Fakes, *, key: str = OPENAI_KEY, max_retries: int = 0
) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        api_key=key, base_url=fakes.base_url + "/openai/v1", max_retries=max_retries, timeout=20
    )
    async with client:
        yield client


@contextlib.asynccontextmanager
async def gemini_client(fakes: Fakes, *, key: str = GEMINI_KEY) -> AsyncIterator[genai.Client]:
    """The Gemini client on our own httpx client: left to itself, google-genai's async side
    uses aiohttp when installed, through a ClientSession subclass that aiohttp answers with a
    DeprecationWarning (an error under this project's warning filter)."""
    async with httpx.AsyncClient(timeout=20) as http:
        options = genai_types.HttpOptions(
            base_url=fakes.base_url + "/gemini", httpx_async_client=http
        )
        client = genai.Client(api_key=key, vertexai=False, http_options=options)
        try:
            yield client
        finally:
            await client.aio.aclose()
            client.close()


async def test_chat_completion_echo(fakes: Fakes) -> None:
    async with openai_client(fakes) as client:
        completion = await client.chat.completions.create(
            model="echo",
            messages=[
                {"role": "system", "content": "You are a shop assistant."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "text", "text": "¿cuánto cuesta?"}]},
            ],
        )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "echo"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "¿cuánto cuesta?"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4  # 15 characters / 4, rounded up
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion._request_id is not None and completion._request_id.startswith("req_")

    (record,) = await fakes.records()
    assert record["api"] == "chat"
    assert record["path"] == "/openai/v1/chat/completions"
    assert record["model"] == "echo"
    assert record["headers_authorization_present"] is True
    assert record["status"] == 200
    assert isinstance(record["body"], dict) and len(record["body"]["messages"]) == 4
    assert OPENAI_KEY not in json.dumps(record)


async def test_scripted_replies_then_the_default(fakes: Fakes) -> None:
    scripted = await fakes.control.post("/_models/script", json={"replies": ["one", "two"]})
    assert scripted.status_code == 200, scripted.text
    assert scripted.json()["replies"] == ["one", "two"]
    async with openai_client(fakes) as client:

        async def ask(model: str) -> str | None:
            completion = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
            return completion.choices[0].message.content

        # echo never consumes a scripted reply
        assert [await ask(m) for m in ("gpt-4o-mini", "echo", "gpt-4o-mini", "gpt-4o-mini")] == [
            "one",
            "hi",
            "two",
            DEFAULT_REPLY,
        ]
        await fakes.control.post("/_models/script", json={"empty": True})
        assert await ask("gpt-4o-mini") == ""
        assert await ask("echo") == ""
        cleared = await fakes.control.delete("/_models/script")
        assert cleared.json() == {
            "replies": [],
            "structured": [],
            "structured_fail": [],
            "fail": [],
            "delay_seconds": 0.0,
            "empty": False,
        }
        assert await ask("echo") == "hi"


async def test_queued_500_is_retried_by_the_sdk(fakes: Fakes) -> None:
    await fakes.control.post("/_models/script", json={"fail": [500], "replies": ["recovered"]})
    async with openai_client(fakes, max_retries=2) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
    assert completion.choices[0].message.content == "recovered"
    assert [r["status"] for r in await fakes.records()] == [500, 200]


async def test_queued_429_in_openai_shape(fakes: Fakes) -> None:
    await fakes.control.post("/_models/script", json={"fail": [429]})
    async with openai_client(fakes) as client:
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
        assert raised.value.status_code == 429
        assert raised.value.code == "rate_limit_exceeded"
        assert raised.value.type == "requests"
        assert raised.value.response.headers["retry-after"] == "0"
        # The queue is consumed: the next call answers.
        completion = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "again"}]
        )
        assert completion.choices[0].message.content == "again"


async def test_streaming_is_refused_in_openai_shape(fakes: Fakes) -> None:
    async with openai_client(fakes) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "hi"}], stream=True
            )
    assert raised.value.param == "stream"


async def test_responses_with_reasoning_effort(fakes: Fakes) -> None:
    await fakes.control.post("/_models/script", json={"replies": ["Cuesta 20 euros."]})
    async with openai_client(fakes) as client:
        response = await client.responses.create(
            model="gpt-5-mini",
            instructions="Answer in Spanish.",
            input=[
                {"role": "user", "content": "hola"},
                {"role": "user", "content": [{"type": "input_text", "text": "¿precio?"}]},
            ],
            reasoning={"effort": "low"},
        )
        assert response.object == "response"
        assert response.status == "completed"
        assert response.output_text == "Cuesta 20 euros."
        # A reasoning model's message is not output[0]: output_text is how to read it.
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert response.reasoning is not None and response.reasoning.effort == "low"
        assert response.usage is not None
        assert response.usage.output_tokens == 4
        assert response.usage.input_tokens_details.cached_tokens == 0
        assert response.usage.output_tokens_details.reasoning_tokens == 0

        echoed = await client.responses.create(model="echo", input="solo texto")
        assert echoed.output_text == "solo texto"
        assert [item.type for item in echoed.output] == ["message"]

        with pytest.raises(openai.BadRequestError) as raised:
            await client.responses.create(
                model="echo", input="x", extra_body={"reasoning": {"effort": "huge"}}
            )
        assert raised.value.param == "reasoning.effort"

    records = await fakes.records()
    assert [r["api"] for r in records] == ["responses"] * 3
    body = records[0]["body"]
    assert isinstance(body, dict) and body["reasoning"] == {"effort": "low"}


async def ffmpeg_probe(path: Path) -> str:
    """What ffmpeg says decoding `path` (imageio-ffmpeg ships no ffprobe)."""
    process = await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-hide_banner", "-i", str(path), "-f", "null", "-"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    probe = stderr.decode(errors="replace")
    assert process.returncode == 0, probe
    return probe


def duration_seconds(probe: str) -> float:
    found = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe)
    assert found, probe
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


async def test_speech_is_ogg_opus(fakes: Fakes, tmp_path: Path) -> None:
    async with openai_client(fakes) as client:
        short = await client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hola.", response_format="opus"
        )
        long = await client.audio.speech.create(
            model="gpt-4o-mini-tts",
            voice="alloy",
            input="Hola, gracias por escribirnos. El precio es de veinte euros.",
            response_format="opus",
        )
        mp3 = await client.audio.speech.create(model="tts-1", voice="alloy", input="Hola.")
    assert short.response.headers["content-type"] == "audio/ogg"
    audio = short.content
    assert audio[:4] == b"OggS" and b"OpusHead" in audio[:64]
    probes = {}
    for name, result in (("short", short), ("long", long)):
        path = tmp_path / f"{name}.ogg"
        path.write_bytes(result.content)
        probes[name] = await ffmpeg_probe(path)
        assert "Input #0, ogg" in probes[name]
        assert re.search(r"Audio: opus, 48000 Hz, mono", probes[name]), probes[name]
    assert duration_seconds(probes["short"]) == pytest.approx(0.5, abs=0.1)
    assert duration_seconds(probes["long"]) == pytest.approx(4.0, abs=0.2)
    # The default format is mp3, as OpenAI's.
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    (tmp_path / "default.mp3").write_bytes(mp3.content)
    assert "Audio: mp3" in await ffmpeg_probe(tmp_path / "default.mp3")
    assert [r["api"] for r in await fakes.records()] == ["speech"] * 3


async def test_gemini_transcribes_inline_audio(fakes: Fakes) -> None:
    async with gemini_client(fakes) as client:
        response = await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=[
                genai_types.Part.from_bytes(data=VOICE_NOTE, mime_type="audio/ogg"),
                "Transcribe this voice note.",
            ],
            config=genai_types.GenerateContentConfig(system_instruction="You transcribe."),
        )
    assert response.text == GEMINI_ANSWERS["audio"]
    assert response.candidates and response.candidates[0].finish_reason == "STOP"
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == "gemini-2.5-flash"

    (record,) = await fakes.records()
    assert record["api"] == "gemini"
    # The version is the SDK's own (v1 in google-genai 3.x; v1beta before).
    assert re.fullmatch(r"/gemini/v1\w*/models/gemini-2\.5-flash:generateContent", record["path"])
    assert record["model"] == "gemini-2.5-flash"
    assert record["headers_authorization_present"] is True
    assert record["mime_types"] == ["audio/ogg"]
    dumped = json.dumps(record)
    assert base64.b64encode(VOICE_NOTE).decode() not in dumped
    assert GEMINI_KEY not in dumped
    assert f'"data_length": {len(base64.b64encode(VOICE_NOTE))}' in dumped


async def test_gemini_images_text_and_configured_answers(fakes: Fakes) -> None:
    configured = await fakes.control.post(
        "/_models/gemini", json={"image": "An image: a blue door."}
    )
    assert configured.status_code == 200, configured.text
    async with gemini_client(fakes) as client:
        image = await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=[
                genai_types.Part.from_bytes(data=b"\x89PNG....", mime_type="image/png"),
                "What is this?",
            ],
        )
        text = await client.aio.models.generate_content(
            model="gemini-2.5-flash", contents="solo texto, por favor"
        )
        pdf = await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=[genai_types.Part.from_bytes(data=b"%PDF-1.7", mime_type="application/pdf")],
        )
    assert image.text == "An image: a blue door."
    assert text.text == "solo texto, por favor"
    assert pdf.text == GEMINI_ANSWERS["document"]


async def test_gemini_failures_in_google_shape(fakes: Fakes) -> None:
    await fakes.control.post("/_models/gemini", json={"fail": [503, 429]})
    async with gemini_client(fakes) as client:
        # The SDK does not retry unless HttpOptions.retry_options asks it to.
        with pytest.raises(genai_errors.ServerError) as server:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert server.value.code == 503 and server.value.status == "UNAVAILABLE"
        with pytest.raises(genai_errors.ClientError) as client_error:
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert client_error.value.code == 429
        assert client_error.value.status == "RESOURCE_EXHAUSTED"
        answered = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert answered.text == "hi"


async def test_gemini_sdk_retries_when_asked(fakes: Fakes) -> None:
    await fakes.control.post("/_models/gemini", json={"fail": [500]})
    async with gemini_client(fakes) as client:
        retry = genai_types.HttpRetryOptions(attempts=2, initial_delay=0.01, max_delay=0.02)
        response = await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents="again",
            config=genai_types.GenerateContentConfig(
                http_options=genai_types.HttpOptions(retry_options=retry)
            ),
        )
    assert response.text == "again"
    assert [r["status"] for r in await fakes.records()] == [500, 200]


async def test_missing_or_wrong_key_is_refused(fakes: Fakes) -> None:
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    missing = await fakes.control.post("/openai/v1/chat/completions", json=chat)
    assert missing.status_code == 401
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    empty = await fakes.control.post(
        "/openai/v1/chat/completions", json=chat, headers={"authorization": "Bearer"}
    )
    assert empty.status_code == 401

    gemini = await fakes.control.post(
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )
    assert gemini.status_code == 403
    assert gemini.json()["error"]["status"] == "PERMISSION_DENIED"
    assert gemini.json()["error"]["code"] == 403

    records = await fakes.records()
    assert [r["headers_authorization_present"] for r in records] == [False, False, False]

    keys = await fakes.control.post("/_models/keys", json={"openai": "sk-right", "gemini": "g"})
    assert keys.json() == {"openai": True, "gemini": True}
    async with openai_client(fakes, key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "hi"}]
            )
        assert raised.value.code == "invalid_api_key"
    async with openai_client(fakes, key="sk-right") as client:
        models = [m.id async for m in client.models.list()]
        assert "echo" in models
    async with gemini_client(fakes, key="wrong") as gemini_wrong:
        with pytest.raises(genai_errors.ClientError) as refused:
            await gemini_wrong.aio.models.generate_content(model="gemini-2.5-flash", contents="x")
        assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert "sk-wrong" not in json.dumps(await fakes.records())


async def test_control_api_refuses_bad_scripts(fakes: Fakes) -> None:
    for body in ({"fail": [200]}, {"replies": "x"}, {"delay_seconds": -1}, {"empty": "yes"}):
        refused = await fakes.control.post("/_models/script", json=body)
        assert refused.status_code == 400, body
    assert (await fakes.control.post("/_models/gemini", json={"audio": 3})).status_code == 400


async def test_delay_is_added_per_call(fakes: Fakes) -> None:
    await fakes.control.post("/_models/script", json={"delay_seconds": 0.3})
    async with openai_client(fakes) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "slow"}]
        )
        assert loop.time() - started >= 0.3


async def test_gemini_refuses_what_gemini_refuses(fakes: Fakes) -> None:
    headers = {"x-goog-api-key": GEMINI_KEY}
    url = "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    raw_bytes = {"inlineData": {"mimeType": "audio/ogg", "data": "not base64!"}}
    bad = await fakes.control.post(
        url, json={"contents": [{"role": "user", "parts": [raw_bytes]}]}, headers=headers
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "Base64 decoding failed" in bad.json()["error"]["message"]
    no_contents = await fakes.control.post(url, json={}, headers=headers)
    assert no_contents.status_code == 400
    streaming = await fakes.control.post(
        "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent", json={}, headers=headers
    )
    assert streaming.status_code == 404
    assert streaming.json()["error"]["status"] == "NOT_FOUND"
