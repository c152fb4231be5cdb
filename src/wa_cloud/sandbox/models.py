"""Loopback fakes of the model APIs the assistants call: an OpenAI-compatible API under
`/openai/v1` (chat completions, responses, speech, the model list) and the Gemini Developer API
under `/gemini` (generateContent). They speak the wire format closely enough that the real
`openai.AsyncOpenAI(base_url=<sandbox>/openai/v1)` and `google.genai.Client(http_options=
HttpOptions(base_url=<sandbox>/gemini))` work unpatched, so a test exercises our use of the SDKs
(their retries, parsing and errors), not a mock of them.

What a model says is deterministic: model "echo" repeats the last user text; any other model
gives the next scripted reply, else DEFAULT_REPLY; Gemini describes the media it was sent (a
transcript for audio). A scripted reply may be function (tool) calls, and a scripted text may
quote the tool results sent back (see `model_tools`). A request for structured output (a JSON
schema) gets the next scripted structured answer, else a value fitting its schema, whatever
the model (see `model_formats`). The control API under `/_models/` queues
replies and failures, adds latency, sets the expected keys, and lists what the fakes received,
never a key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import imageio_ffmpeg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wa_cloud.sandbox import model_formats as formats
from wa_cloud.sandbox import model_tools as tools
from wa_cloud.sandbox.control import ControlError
from wa_cloud.sandbox.model_tools import (
    CHAT_TEXT_KINDS,
    RESPONSE_TEXT_KINDS,
    Answer,
    Reply,
    ToolRequestError,
    ToolTurn,
    text_parts,
)

ECHO = "echo"
DEFAULT_REPLY = "Hello from the sandbox model."
MODELS = (ECHO, "gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "gpt-4o-mini-tts", "tts-1")
# Gemini takes inline media up to a 20 MB request; base64 and JSON framing add a third.
MAX_BODY_BYTES = 32 * 1024 * 1024
# OpenAI's documented limit on the text of one speech request.
MAX_SPEECH_CHARS = 4096
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
# What Gemini "sees" in each kind of inline media, until `/_models/gemini` says otherwise.
GEMINI_ANSWERS = {
    "audio": "Transcript: hola, quiero saber el precio",
    "image": "An image: a red bicycle in front of a shop.",
    "video": "A video: a person unboxing a phone on a wooden table.",
    "document": "A document: an invoice for three items, 120.00 EUR in total.",
}
# Gemini bills an image at 258 tokens; the fake bills every media part so.
MEDIA_TOKENS = 258
# Speech: about 15 characters a second, bounded so a test never waits long for ffmpeg.
SPEECH_CHARS_PER_SECOND = 15.0
SPEECH_SECONDS = (0.5, 5.0)
FFMPEG_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SpeechFormat:
    rate: int
    encoder: tuple[str, ...]  # ffmpeg output arguments
    content_type: str


# response_format -> how ffmpeg makes it. OpenAI's formats are 24 kHz mono; Opus is made at
# 48 kHz, its native rate. WAV goes out through a pipe, so its RIFF sizes cannot be filled in
# afterwards and read 0xFFFFFFFF (unknown length): readers must cope, as with any stream.
SPEECH_FORMATS = {
    "opus": SpeechFormat(48_000, ("-c:a", "libopus", "-b:a", "24k", "-f", "ogg"), "audio/ogg"),
    "mp3": SpeechFormat(24_000, ("-c:a", "libmp3lame", "-b:a", "48k", "-f", "mp3"), "audio/mpeg"),
    "aac": SpeechFormat(24_000, ("-c:a", "aac", "-b:a", "48k", "-f", "adts"), "audio/aac"),
    "flac": SpeechFormat(24_000, ("-c:a", "flac", "-f", "flac"), "audio/flac"),
    "wav": SpeechFormat(24_000, ("-c:a", "pcm_s16le", "-f", "wav"), "audio/wav"),
    "pcm": SpeechFormat(24_000, ("-c:a", "pcm_s16le", "-f", "s16le"), "audio/pcm"),
}

Json = dict[str, Any]
Endpoint = Callable[[Request], Awaitable[Response]]


# --- state ------------------------------------------------------------------------------


@dataclass(slots=True)
class OpenAIScript:
    """What the next OpenAI-compatible calls do: queued replies (text or tool calls) and
    failures (one per call), latency added to every call, and `empty` (every text answer is
    "")."""

    replies: deque[Reply] = field(default_factory=deque)
    failures: deque[int] = field(default_factory=deque)
    delay_seconds: float = 0.0
    empty: bool = False
    # Taken only by requests for structured output (a JSON schema), in order.
    structured: deque[formats.StructuredReply] = field(default_factory=deque)
    structured_failures: deque[int] = field(default_factory=deque)

    def as_json(self) -> Json:
        return {
            "replies": [tools.reply_json(r) for r in self.replies],
            "structured": list(self.structured),
            "structured_fail": list(self.structured_failures),
            "fail": list(self.failures),
            "delay_seconds": self.delay_seconds,
            "empty": self.empty,
        }


@dataclass(slots=True)
class GeminiScript:
    """What Gemini answers per kind of media (`text` None: echo the text), its queued
    failures and its added latency; kept apart from OpenAI's so one test can script both."""

    answers: dict[str, str] = field(default_factory=lambda: dict(GEMINI_ANSWERS))
    text: str | None = None
    failures: deque[int] = field(default_factory=deque)
    delay_seconds: float = 0.0

    def as_json(self) -> Json:
        return {
            **self.answers,
            "text": self.text,
            "fail": list(self.failures),
            "delay_seconds": self.delay_seconds,
        }


@dataclass(slots=True)
class ModelState:
    """Everything the model fakes remember, kept on `app.state.models`."""

    requests: deque[Json]
    # None accepts any non-empty key; a string accepts only itself.
    openai_api_key: str | None = field(default=None, repr=False)
    gemini_api_key: str | None = field(default=None, repr=False)
    script: OpenAIScript = field(default_factory=OpenAIScript)
    gemini: GeminiScript = field(default_factory=GeminiScript)
    # At most this many ffmpeg processes at once, however many speech calls arrive.
    speech_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    @classmethod
    def create(cls, request_log_limit: int = 10_000) -> ModelState:
        return cls(requests=deque(maxlen=request_log_limit))

    def record(self, api: str, request: Request, **fields: Any) -> None:
        self.requests.append(
            {"api": api, "path": request.url.path, **fields, "at": datetime.now(UTC).isoformat()}
        )


def _models(request: Request) -> ModelState:
    state: ModelState = request.app.state.models
    return state


# --- errors -----------------------------------------------------------------------------

# Scripted failures: OpenAI's `type`, message and `code` per status.
OPENAI_FAILURES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "The sandbox was scripted to refuse this request.", None),
    401: ("invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
    403: ("invalid_request_error", "You are not allowed to use this model.", None),
    404: ("invalid_request_error", "The model does not exist.", "model_not_found"),
    429: ("requests", "Rate limit reached for requests (sandbox).", "rate_limit_exceeded"),
    500: ("server_error", "The server had an error while processing your request.", None),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
}
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class OpenAIError(Exception):
    """A refusal in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code

    @classmethod
    def scripted(cls, status: int) -> OpenAIError:
        default = ("server_error" if status >= 500 else "invalid_request_error", "Scripted.", None)
        kind, message, code = OPENAI_FAILURES.get(status, default)
        return cls(status, message, kind=kind, code=code)

    def response(self) -> Response:
        error = {"message": self.message, "type": self.kind, "param": self.param}
        # The SDK honours a positive retry-after; 0 leaves it to its own backoff.
        headers = {"retry-after": "0"} if self.status == 429 else None
        return JSONResponse({"error": {**error, "code": self.code}}, self.status, headers)


class GeminiError(Exception):
    """A refusal in Google's shape, `{"error": {"code", "message", "status"}}`."""

    def __init__(self, status: int, message: str, *, details: list[Json] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    @classmethod
    def scripted(cls, status: int) -> GeminiError:
        return cls(status, f"The sandbox was scripted to fail with {status}.")

    def response(self) -> Response:
        error: Json = {
            "code": self.status,
            "message": self.message,
            "status": GOOGLE_STATUSES.get(self.status, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return JSONResponse({"error": error}, self.status)


# --- shared request handling -------------------------------------------------------------


async def _read(request: Request, too_large: Exception) -> bytes:
    """The body, refused past MAX_BODY_BYTES before more of it is held."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes) -> Json | None:
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def _turn(delay_seconds: float, failures: deque[int]) -> int | None:
    """Wait the scripted latency; the next scripted failure's status, if one is queued."""
    if delay_seconds:
        await asyncio.sleep(delay_seconds)
    return failures.popleft() if failures else None


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token), never below one."""
    return max(1, math.ceil(len(text) / 4))


def _require_model(body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "You must provide a model parameter.", param="model")
    return model


def _refuse_stream(body: Json) -> None:
    if body.get("stream"):
        raise OpenAIError(400, "The sandbox does not stream; call without stream.", param="stream")


def _answer(script: OpenAIScript, model: str, user_text: str, turn: ToolTurn) -> Answer:
    """Empty, the echo, the next scripted reply (its `{{tool_output}}` filled in, its tool
    calls made if the request allows them), else DEFAULT_REPLY."""
    if script.empty:
        return Answer("")
    if model == ECHO:
        return Answer(user_text)
    if not script.replies:
        return Answer(DEFAULT_REPLY)
    return tools.resolve(script.replies.popleft(), turn, DEFAULT_REPLY)


_new_id = tools.new_id


# --- the OpenAI-compatible API -----------------------------------------------------------

# A handler gets the state, the body and the fields it adds to the call's request-log entry.
OpenAIHandler = Callable[[ModelState, Json, Json], Awaitable[Response]]


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _check_openai_key(state: ModelState, key: str | None) -> None:
    if key is None:
        raise OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if state.openai_api_key is not None and not secrets.compare_digest(
        key.encode(), state.openai_api_key.encode()
    ):
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")


def openai_call(api: str, handler: OpenAIHandler, *, scripted: bool = True) -> Endpoint:
    """Wrap `handler` as an OpenAI route: bounded body, bearer key, the script's latency and
    failures, OpenAI's error shape and `x-request-id`, and a record of the call."""

    async def endpoint(request: Request) -> Response:
        state = _models(request)
        key = _bearer(request)
        raw = b""
        log: Json = {}
        try:
            raw = await _read(request, OpenAIError(413, "The request body is too large."))
            _check_openai_key(state, key)
            body = _json_object(raw)
            if body is None:
                raise OpenAIError(400, "The body of the request is not valid JSON.")
            if scripted:
                failure = await _turn(state.script.delay_seconds, state.script.failures)
                if failure is not None:
                    raise OpenAIError.scripted(failure)
            response = await handler(state, body, log)
        except ToolRequestError as exc:
            response = OpenAIError(400, exc.message, param=exc.param, code=exc.code).response()
        except OpenAIError as exc:
            response = exc.response()
        response.headers["x-request-id"] = _new_id("req_")
        if scripted:
            logged = _json_object(raw) if raw else None
            state.record(
                api,
                request,
                model=logged.get("model") if logged else None,
                headers_authorization_present=key is not None,
                body=logged if logged is not None or not raw else {"unparsable_bytes": len(raw)},
                status=response.status_code,
                **log,
            )
        return response

    return endpoint


def _chat_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_parts(message.get("content"), ("text",))
    return ""


def _log_answer(log: Json, turn: ToolTurn, answer: Answer) -> None:
    """What the request log shows of tools: the results sent back, the calls answered, and
    why a scripted reply was not answered as scripted (`tools` as sent is logged first)."""
    log["tool_results"] = [r.as_json() for r in turn.results]
    log["tool_calls"] = [c.as_json() for c in answer.calls]
    if answer.note:
        log["script_note"] = answer.note


def _structured(script: OpenAIScript, fmt: formats.OutputFormat, log: Json) -> Answer | None:
    """The answer to a request for a JSON schema's output (None: not such a request): its own
    scripted failure, else its scripted answer, else a value fitting the schema."""
    if not fmt.structured:
        return None
    if script.structured_failures:
        raise OpenAIError.scripted(script.structured_failures.popleft())
    scripted = script.structured.popleft() if script.structured else None
    text, note = formats.structured_text(fmt, scripted)
    if note:
        log["script_note"] = note
    return Answer(text)


async def chat_completion(state: ModelState, body: Json, log: Json) -> Response:
    log["tools"] = body.get("tools")
    model = _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "messages must be a non-empty array.", param="messages")
    _refuse_stream(body)
    fmt = formats.chat_format(body)
    turn = tools.chat_turn(body, messages)
    prompt = "\n".join(
        text_parts(m.get("content"), CHAT_TEXT_KINDS) for m in messages if isinstance(m, dict)
    )
    answer = _structured(state.script, fmt, log) or _answer(
        state.script, model, _chat_user_text(messages), turn
    )
    _log_answer(log, turn, answer)
    said = tools.calls_text(answer.calls) if answer.calls else answer.text
    usage = {"prompt_tokens": estimate_tokens(prompt), "completion_tokens": estimate_tokens(said)}
    message: Json = {
        "role": "assistant",
        "content": None if answer.calls else answer.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = tools.chat_tool_calls(answer.calls)
    finish_reason = "tool_calls" if answer.calls else "stop"
    return JSONResponse(
        {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": {
                **usage,
                "total_tokens": sum(usage.values()),
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": None,
        }
    )


def _response_texts(given: Any, turn: ToolTurn) -> tuple[str, str]:
    """All the text of a Responses `input` (for usage; tool outputs too) and its last user
    text (for echo)."""
    if isinstance(given, str):
        return given, given
    if not isinstance(given, list):
        return "", ""
    items = [i for i in given if isinstance(i, dict) and i.get("type", "message") == "message"]
    texts = [text_parts(i.get("content"), RESPONSE_TEXT_KINDS) for i in items]
    every = "\n".join(texts + [r.output for r in turn.results])
    users = [i for i in items if i.get("role") == "user"]
    return every, text_parts(users[-1].get("content"), RESPONSE_TEXT_KINDS) if users else ""


def _reasoning_effort(body: Json) -> str | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is not None and effort not in REASONING_EFFORTS:
        raise OpenAIError(
            400,
            f"Unsupported value: 'reasoning.effort' does not support {effort!r}.",
            param="reasoning.effort",
            code="unsupported_value",
        )
    return str(effort) if effort is not None else None


async def create_response(state: ModelState, body: Json, log: Json) -> Response:
    log["tools"] = body.get("tools")
    model = _require_model(body)
    _refuse_stream(body)
    effort = _reasoning_effort(body)
    fmt = formats.response_format(body)
    turn = tools.response_turn(body)
    instructions = body.get("instructions")
    every, user_text = _response_texts(body.get("input"), turn)
    prompt = (instructions if isinstance(instructions, str) else "") + every
    answer = _structured(state.script, fmt, log) or _answer(state.script, model, user_text, turn)
    _log_answer(log, turn, answer)
    output: list[Json] = []
    if effort not in (None, "none"):
        # A reasoning model's output starts with its reasoning item: the message is not
        # always output[0], which is why the SDK's `output_text` exists.
        output.append({"type": "reasoning", "id": _new_id("rs_"), "summary": []})
    if answer.calls:
        # Only function_call items: the SDK's `output_text` is "".
        output.extend(tools.response_function_calls(answer.calls))
    else:
        content = [{"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}]
        output.append(
            {
                "type": "message",
                "id": _new_id("msg_"),
                "status": "completed",
                "role": "assistant",
                "content": content,
            }
        )
    said = tools.calls_text(answer.calls) if answer.calls else answer.text
    tool_choice = body.get("tool_choice")
    now = int(time.time())
    tokens_in, tokens_out = estimate_tokens(prompt), estimate_tokens(said)
    return JSONResponse(
        {
            "id": _new_id("resp_"),
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": instructions,
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": effort, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": formats.format_json(fmt)},
            "tool_choice": tool_choice if tool_choice in ("none", "auto", "required") else "auto",
            "tools": tools.echoed_tools(body.get("tools")),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": tokens_in,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": tokens_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": tokens_in + tokens_out,
            },
            "user": None,
            "metadata": body.get("metadata") or {},
        }
    )


def speech_seconds(text: str) -> float:
    low, high = SPEECH_SECONDS
    return min(high, max(low, len(text) / SPEECH_CHARS_PER_SECOND))


async def synthesize(text: str, response_format: str, slots: asyncio.Semaphore) -> bytes:
    """A sine tone as long as `text` would take to say, encoded by ffmpeg in a subprocess
    (never on the event loop); at most `slots` encoders run at once."""
    spec = SPEECH_FORMATS[response_format]
    tone = f"sine=frequency=440:sample_rate={spec.rate}:duration={speech_seconds(text):.2f}"
    args = ["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", tone]
    args += ["-ac", "1", "-ar", str(spec.rate), *spec.encoder, "pipe:1"]
    async with slots:
        process = await asyncio.create_subprocess_exec(
            imageio_ffmpeg.get_ffmpeg_exe(),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(FFMPEG_TIMEOUT_SECONDS):
                audio, errors = await process.communicate()
        except BaseException:
            # Timed out or cancelled (the client went away): no orphan encoder.
            if process.returncode is None:
                process.kill()
            await process.wait()
            raise
    if process.returncode != 0 or not audio:
        detail = errors.decode(errors="replace")[-300:]
        raise OpenAIError(500, f"Speech synthesis failed: {detail}", kind="server_error")
    return audio


async def speech(state: ModelState, body: Json, log: Json) -> Response:
    _require_model(body)
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise OpenAIError(400, "input must be a non-empty string.", param="input")
    if len(text) > MAX_SPEECH_CHARS:
        raise OpenAIError(
            400, f"input is longer than {MAX_SPEECH_CHARS} characters.", param="input"
        )
    if not body.get("voice"):
        raise OpenAIError(400, "voice is required.", param="voice")
    response_format = body.get("response_format", "mp3")
    if response_format not in SPEECH_FORMATS:
        raise OpenAIError(
            400,
            f"response_format must be one of {', '.join(SPEECH_FORMATS)}.",
            param="response_format",
        )
    if body.get("stream_format", "audio") != "audio":
        raise OpenAIError(400, "The sandbox streams no SSE speech.", param="stream_format")
    audio = await synthesize(text, response_format, state.speech_slots)
    return Response(audio, media_type=SPEECH_FORMATS[response_format].content_type)


async def list_models(state: ModelState, body: Json, log: Json) -> Response:
    created = 1_700_000_000
    data = [{"id": m, "object": "model", "created": created, "owned_by": "sandbox"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})


# --- Gemini ------------------------------------------------------------------------------


def _gemini_key(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


def _check_gemini_key(state: ModelState, key: str | None) -> None:
    if key is None:
        raise GeminiError(
            403,
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to call "
            "this API.",
        )
    if state.gemini_api_key is not None and not secrets.compare_digest(
        key.encode(), state.gemini_api_key.encode()
    ):
        raise GeminiError(
            400,
            "API key not valid. Please pass a valid API key.",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        )


def _blob(part: Json) -> tuple[Json | None, bool]:
    """A part's media (inline data or a file reference), in REST's camelCase or proto's
    snake_case; and whether it is inline."""
    for name, inline in (
        ("inlineData", True),
        ("inline_data", True),
        ("fileData", False),
        ("file_data", False),
    ):
        blob = part.get(name)
        if isinstance(blob, dict):
            return blob, inline
    return None, False


def _mime(blob: Json) -> str:
    return str(blob.get("mimeType") or blob.get("mime_type") or "")


def _check_base64(data: Any, where: str) -> None:
    """Refuse what Gemini refuses: inline data that is not base64 (standard or URL-safe), e.g.
    raw bytes or a `data:` URL."""
    if not isinstance(data, str):
        raise GeminiError(400, f"Invalid value at '{where}' (TYPE_BYTES): missing data.")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        try:
            base64.b64decode(data, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise GeminiError(
                400, f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed."
            ) from None


def _parts(content: Any) -> list[Json]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _media_of(contents: list[Any]) -> list[list[str]]:
    """The mime types of every content's media, its inline data checked."""
    found: list[list[str]] = []
    for c, content in enumerate(contents):
        mime_types: list[str] = []
        for p, part in enumerate(_parts(content)):
            blob, inline = _blob(part)
            if blob is None:
                continue
            if inline:
                _check_base64(blob.get("data"), f"contents[{c}].parts[{p}].inline_data.data")
            mime_types.append(_mime(blob))
        found.append(mime_types)
    return found


def _media_kind(mime_type: str) -> str:
    if mime_type == "application/pdf":
        return "document"
    return mime_type.split("/", 1)[0]


def _gemini_answer(script: GeminiScript, text: str, mime_types: list[str]) -> str:
    """One description per media part, in order; the text (or `script.text`) without media."""
    if not mime_types:
        return script.text if script.text is not None else text
    return "\n".join(
        script.answers.get(_media_kind(m), f"A file of type {m or 'unknown'}.") for m in mime_types
    )


def _log_body(body: Json) -> Json:
    """The request without its base64 media (replaced by `data_length`), to keep logs small."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            data = value.get("data")
            if isinstance(data, str) and ("mimeType" in value or "mime_type" in value):
                value = {k: v for k, v in value.items() if k != "data"} | {"data_length": len(data)}
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    stripped: Json = strip(body)
    return stripped


async def generate_content(state: ModelState, model: str, body: Json) -> Response:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise GeminiError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    media = _media_of(contents)
    users = [
        i for i, c in enumerate(contents) if isinstance(c, dict) and c.get("role", "user") == "user"
    ]
    last = users[-1] if users else len(contents) - 1
    text = "\n".join(str(p["text"]) for p in _parts(contents[last]) if "text" in p)
    answer = _gemini_answer(state.gemini, text, media[last])
    system = "\n".join(str(p.get("text", "")) for p in _parts(body.get("systemInstruction")))
    every_text = "\n".join(str(p["text"]) for c in contents for p in _parts(c) if "text" in p)
    prompt_tokens = estimate_tokens(system + every_text) + MEDIA_TOKENS * sum(map(len, media))
    answer_tokens = estimate_tokens(answer)
    return JSONResponse(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": answer}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model,
            "responseId": secrets.token_urlsafe(16),
        }
    )


async def gemini_call(request: Request) -> Response:
    """`POST /gemini/{version}/models/{model}:{method}`: the SDK's own URL under the base URL
    (version as it sends it, e.g. v1beta); generateContent is the method answered."""
    state = _models(request)
    key = _gemini_key(request)
    model, _, method = str(request.path_params["target"]).partition(":")
    raw = b""
    body: Json | None = None
    try:
        raw = await _read(request, GeminiError(400, "Request payload size exceeds the limit."))
        _check_gemini_key(state, key)
        if method != "generateContent":
            raise GeminiError(404, f"Method {method or '(none)'} is not found in the sandbox.")
        body = _json_object(raw)
        if body is None:
            raise GeminiError(400, "Invalid JSON payload received.")
        failure = await _turn(state.gemini.delay_seconds, state.gemini.failures)
        if failure is not None:
            raise GeminiError.scripted(failure)
        response = await generate_content(state, model, body)
    except GeminiError as exc:
        response = exc.response()
    logged = body if body is not None else _json_object(raw) if raw else None
    contents = logged.get("contents") if logged else None
    parts = [p for c in contents for p in _parts(c)] if isinstance(contents, list) else []
    state.record(
        "gemini",
        request,
        model=model,
        headers_authorization_present=key is not None,
        body=_log_body(logged) if logged is not None else None,
        mime_types=[_mime(b) for b, _ in map(_blob, parts) if b is not None],
        status=response.status_code,
    )
    return response


# --- control API -------------------------------------------------------------------------

ControlHandler = Callable[[ModelState, Json], Json]


def _control(handler: ControlHandler, *, with_body: bool = True) -> Endpoint:
    """A `/_models/` route; its mistakes are answered like the sandbox control API's."""

    async def endpoint(request: Request) -> Response:
        try:
            body = _json_object(await request.body()) if with_body else {}
            if body is None:
                raise ControlError("The body must be a JSON object.")
            return JSONResponse(handler(_models(request), body))
        except ControlError as exc:
            error = {"code": "bad_request", "message": exc.message}
            return JSONResponse({"error": error}, status_code=exc.status)

    return endpoint


def _failures(body: Json) -> list[int]:
    given = body.get("fail", [])
    if not isinstance(given, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 400 <= s <= 599 for s in given
    ):
        raise ControlError("fail must be a list of HTTP statuses (400-599).")
    return given


def _delay(body: Json, current: float) -> float:
    delay = body.get("delay_seconds", current)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise ControlError("delay_seconds must be a non-negative number.")
    return float(delay)


def set_script(state: ModelState, body: Json) -> Json:
    """Queue replies and failures (added to those queued), set latency and `empty`. A reply
    is a string (which may quote `{{tool_output}}` or `{{tool_output:NAME}}`) or
    `{"tool_calls": [{"name", "arguments"}, ...]}`. `structured` queues answers to requests
    for structured output (an object, sent as JSON; a string, sent as is) and
    `structured_fail` failures of those requests alone."""
    given = body.get("replies", [])
    if not isinstance(given, list):
        raise ControlError("replies must be a list of strings or tool_calls objects.")
    replies = [tools.parse_reply(r, f"replies[{i}]") for i, r in enumerate(given)]
    given_structured = body.get("structured", [])
    if not isinstance(given_structured, list):
        raise ControlError("structured must be a list of objects or strings.")
    structured = [
        formats.parse_structured(r, f"structured[{i}]") for i, r in enumerate(given_structured)
    ]
    structured_failures = _failures({"fail": body.get("structured_fail", [])})
    empty = body.get("empty", state.script.empty)
    if not isinstance(empty, bool):
        raise ControlError("empty must be true or false.")
    failures, delay = _failures(body), _delay(body, state.script.delay_seconds)
    state.script.replies.extend(replies)
    state.script.structured.extend(structured)
    state.script.structured_failures.extend(structured_failures)
    state.script.failures.extend(failures)
    state.script.delay_seconds, state.script.empty = delay, empty
    return state.script.as_json()


def clear_script(state: ModelState, body: Json) -> Json:
    state.script = OpenAIScript()
    return state.script.as_json()


def set_gemini(state: ModelState, body: Json) -> Json:
    """Set answers per media kind (audio, image, video, document; `text` for text-only, null
    to echo), queue failures, set latency."""
    answers = {k: body[k] for k in GEMINI_ANSWERS if k in body}
    if not all(isinstance(a, str) for a in answers.values()):
        raise ControlError(f"{', '.join(GEMINI_ANSWERS)} must be strings.")
    text = body.get("text", state.gemini.text)
    if text is not None and not isinstance(text, str):
        raise ControlError("text must be a string, or null to echo.")
    failures, delay = _failures(body), _delay(body, state.gemini.delay_seconds)
    state.gemini.answers.update(answers)
    state.gemini.failures.extend(failures)
    state.gemini.text, state.gemini.delay_seconds = text, delay
    return state.gemini.as_json()


def clear_gemini(state: ModelState, body: Json) -> Json:
    state.gemini = GeminiScript()
    return state.gemini.as_json()


def set_keys(state: ModelState, body: Json) -> Json:
    """The keys each fake expects (`openai`, `gemini`); null accepts any non-empty key."""
    for name in ("openai", "gemini"):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise ControlError(f"{name} must be a string, or null for any key.")
    if "openai" in body:
        state.openai_api_key = body["openai"] or None
    if "gemini" in body:
        state.gemini_api_key = body["gemini"] or None
    # Whether a key is set, never the key.
    return {"openai": state.openai_api_key is not None, "gemini": state.gemini_api_key is not None}


def list_requests(state: ModelState, body: Json) -> Json:
    return {"data": list(state.requests)}


def clear_requests(state: ModelState, body: Json) -> Json:
    state.requests.clear()
    return {"success": True}


MODEL_ROUTES = [
    Route("/_models/script", _control(set_script), methods=["POST"]),
    Route("/_models/script", _control(clear_script, with_body=False), methods=["DELETE"]),
    Route("/_models/gemini", _control(set_gemini), methods=["POST"]),
    Route("/_models/gemini", _control(clear_gemini, with_body=False), methods=["DELETE"]),
    Route("/_models/keys", _control(set_keys), methods=["POST"]),
    Route("/_models/requests", _control(list_requests, with_body=False), methods=["GET"]),
    Route("/_models/requests", _control(clear_requests, with_body=False), methods=["DELETE"]),
    Route("/openai/v1/models", openai_call("models", list_models, scripted=False), methods=["GET"]),
    Route("/openai/v1/chat/completions", openai_call("chat", chat_completion), methods=["POST"]),
    Route("/openai/v1/responses", openai_call("responses", create_response), methods=["POST"]),
    Route("/openai/v1/audio/speech", openai_call("speech", speech), methods=["POST"]),
    Route("/gemini/{version}/models/{target}", gemini_call, methods=["POST"]),
]
