"""OpenAI-compatible models through the `openai` SDK: answers (Chat Completions or the Responses
API) and speech.

One SDK client per endpoint and key, kept while the worker runs. The platform's endpoint (the
operator's `OPENAI_BASE_URL`) uses a plain HTTP client; a tenant's own `base_url` goes through
the URL guard's client, so a tenant cannot point the assistant at our private network. The SDK
retries timeouts, 429 and 5xx itself (with backoff, honouring Retry-After); `ANSWER_BUDGET`
bounds the whole call, retries included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import openai

from wa_cloud.ai.config import Api
from wa_cloud.ai.prompt import Turn
from wa_cloud.ai.sdk_http import sdk_client
from wa_cloud.ai.tools import MAX_ROUNDS, TOOLS_BUDGET_SECONDS, ToolBox
from wa_cloud.errors import WaCloudError

REQUEST_TIMEOUT: Final = 30.0  # one HTTP request to the model
ANSWER_BUDGET: Final = 60.0  # the whole answer, the SDK's retries included
MAX_RETRIES: Final = 2
CLIENTS_KEPT: Final = 256
SPEECH_MODEL: Final = "gpt-4o-mini-tts"
SPEECH_VOICE: Final = "alloy"


class ModelFailed(WaCloudError):
    """The model did not answer within the budget (its reason is safe to log: no key)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a number's assistant talks to: the platform's or the tenant's own."""

    base_url: str | None
    api_key: str = field(repr=False)
    tenant_owned: bool  # a tenant-supplied URL: every connection through the URL guard


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    model: str
    input_tokens: int
    output_tokens: int

    @classmethod
    def reported(cls, text: str, model: str, input_tokens: Any, output_tokens: Any) -> Answer:
        """As a server reported it, made sane: a tenant's server may send any counts or name."""
        return cls(text, str(model)[:200], _count(input_tokens), _count(output_tokens))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), 2**31 - 1)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"{type(exc).__name__} ({exc.status_code})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {ANSWER_BUDGET:.0f} s"
    return type(exc).__name__


class Models:
    def __init__(self, platform_http: httpx.AsyncClient, tenant_http: httpx.AsyncClient) -> None:
        self._platform_http = sdk_client(platform_http)
        self._tenant_http = sdk_client(tenant_http)
        self._clients: OrderedDict[tuple[str | None, bytes, bool], openai.AsyncOpenAI] = (
            OrderedDict()
        )

    def _client(self, endpoint: Endpoint) -> openai.AsyncOpenAI:
        # Keyed by a digest of the key, so the cache's keys hold no secret.
        key = (
            endpoint.base_url,
            hashlib.sha256(endpoint.api_key.encode()).digest(),
            endpoint.tenant_owned,
        )
        client = self._clients.get(key)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                timeout=REQUEST_TIMEOUT,
                max_retries=MAX_RETRIES,
                http_client=self._tenant_http if endpoint.tenant_owned else self._platform_http,
            )
            self._clients[key] = client
            if len(self._clients) > CLIENTS_KEPT:
                self._clients.popitem(last=False)  # the shared HTTP client stays open
        else:
            self._clients.move_to_end(key)
        return client

    async def answer(
        self,
        endpoint: Endpoint,
        *,
        model: str,
        api: Api,
        instructions: str,
        turns: Sequence[Turn],
        temperature: float,
        max_output_tokens: int,
        reasoning_effort: str | None,
        tools: ToolBox | None = None,
    ) -> Answer:
        """The model's answer; with `tools`, after at most `MAX_ROUNDS` turns of tool calls (the
        last turn may not call any), the tokens of every turn counted."""
        client = self._client(endpoint)
        budget = ANSWER_BUDGET + (TOOLS_BUDGET_SECONDS if tools else 0)
        try:
            async with asyncio.timeout(budget):
                if api == "responses":
                    return await _respond(
                        client,
                        model,
                        instructions,
                        turns,
                        max_output_tokens,
                        reasoning_effort,
                        tools,
                    )
                return await _chat(
                    client, model, instructions, turns, temperature, max_output_tokens, tools
                )
        except (openai.OpenAIError, TimeoutError) as exc:
            raise ModelFailed(_reason(exc)) from exc

    async def speech(self, endpoint: Endpoint, text: str) -> bytes:
        """The text spoken, as OGG/Opus (what WhatsApp plays as a voice note)."""
        client = self._client(endpoint)
        try:
            async with asyncio.timeout(ANSWER_BUDGET):
                response = await client.audio.speech.create(
                    model=SPEECH_MODEL, voice=SPEECH_VOICE, input=text, response_format="opus"
                )
                return response.content
        except (openai.OpenAIError, TimeoutError) as exc:
            raise ModelFailed(_reason(exc)) from exc

    async def extract(
        self,
        endpoint: Endpoint,
        *,
        model: str,
        api: Api,
        instructions: str,
        text: str,
        schema_name: str,
        schema: dict[str, Any],
        max_output_tokens: int,
        reasoning_effort: str | None,
    ) -> tuple[dict[str, Any], Answer]:
        """Structured output (ai/memory.py): the JSON object `schema` describes (strict mode),
        read from `text`, and the call's tokens. Anything but such an object: ModelFailed."""
        client = self._client(endpoint)
        try:
            async with asyncio.timeout(ANSWER_BUDGET):
                if api == "responses":
                    answer = await _respond_structured(
                        client,
                        model,
                        instructions,
                        text,
                        {
                            "type": "json_schema",
                            "name": schema_name,
                            "schema": schema,
                            "strict": True,
                        },
                        max_output_tokens,
                        reasoning_effort,
                    )
                else:
                    answer = await _chat_structured(
                        client,
                        model,
                        instructions,
                        text,
                        {"name": schema_name, "schema": schema, "strict": True},
                        max_output_tokens,
                    )
        except (openai.OpenAIError, TimeoutError) as exc:
            raise ModelFailed(_reason(exc)) from exc
        try:
            found = json.loads(answer.text)
        except (ValueError, RecursionError):  # a tenant's own endpoint may send anything
            raise ModelFailed("the structured output is not JSON") from None
        if not isinstance(found, dict):
            raise ModelFailed("the structured output is not a JSON object")
        return found, answer


async def _chat_structured(
    client: openai.AsyncOpenAI,
    model: str,
    instructions: str,
    text: str,
    json_schema: dict[str, Any],
    max_output_tokens: int,
) -> Answer:
    # Plain dicts, as the answers send them: the SDK's TypedDicts add nothing on the wire.
    structured: dict[str, Any] = {
        "messages": _messages(instructions, [Turn("user", text)]),
        "response_format": {"type": "json_schema", "json_schema": json_schema},
    }
    completion = await client.chat.completions.create(
        model=model,
        temperature=0,  # the same conversation, the same record
        max_tokens=max_output_tokens,
        **structured,
    )
    usage = completion.usage
    message = completion.choices[0].message if completion.choices else None
    if message is not None and message.refusal:
        raise ModelFailed("the model refused the structured output")
    return Answer.reported(
        (message.content or "") if message else "",
        completion.model or model,
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
    )


async def _respond_structured(
    client: openai.AsyncOpenAI,
    model: str,
    instructions: str,
    text: str,
    text_format: dict[str, Any],
    max_output_tokens: int,
    reasoning_effort: str | None,
) -> Answer:
    extra: dict[str, Any] = {
        "input": [{"role": "user", "content": text}],
        "text": {"format": text_format},
    }
    if reasoning_effort is not None:
        extra["reasoning"] = {"effort": reasoning_effort}
    response = await client.responses.create(
        model=model,
        instructions=instructions,
        max_output_tokens=max_output_tokens,
        **extra,
    )
    usage = response.usage
    return Answer.reported(
        response.output_text or "",
        response.model or model,
        usage.input_tokens if usage else 0,
        usage.output_tokens if usage else 0,
    )


def _messages(instructions: str, turns: Sequence[Turn]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": instructions},
        *({"role": t.role, "content": t.text} for t in turns),
    ]


async def _chat(
    client: openai.AsyncOpenAI,
    model: str,
    instructions: str,
    turns: Sequence[Turn],
    temperature: float,
    max_output_tokens: int,
    tools: ToolBox | None,
) -> Answer:
    messages = _messages(instructions, turns)
    spent = [0, 0]
    specs = [
        {"type": "function", "function": {"name": n, "description": d, "parameters": dict(p)}}
        for n, d, p in (tools.specs() if tools else ())
    ]
    for round_ in range(MAX_ROUNDS + 1):
        extra: dict[str, Any] = {}
        if specs:
            extra["tools"] = specs
            if round_ == MAX_ROUNDS:
                extra["tool_choice"] = "none"
        completion = await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=temperature,
            # `max_tokens`: what every OpenAI-compatible server (OpenRouter, local ones) takes.
            max_tokens=max_output_tokens,
            **extra,
        )
        usage = completion.usage
        spent[0] += _count(usage.prompt_tokens if usage else 0)
        spent[1] += _count(usage.completion_tokens if usage else 0)
        message = completion.choices[0].message if completion.choices else None
        calls = [c for c in (message.tool_calls or []) if c.type == "function"] if message else []
        if message is None or not calls or not tools or round_ == MAX_ROUNDS:
            text = (message.content or "") if message else ""
            return Answer.reported(text.strip(), completion.model or model, *spent)
        messages.append(
            {
                "role": "assistant",
                "content": message.content,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                ],
            }
        )
        results = await tools.run_round([(c.function.name, c.function.arguments) for c in calls])
        for c, result in zip(calls, results, strict=True):
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    raise AssertionError("unreachable: the last round answers")


async def _respond(
    client: openai.AsyncOpenAI,
    model: str,
    instructions: str,
    turns: Sequence[Turn],
    max_output_tokens: int,
    reasoning_effort: str | None,
    tools: ToolBox | None,
) -> Answer:
    extra: dict[str, Any] = {}
    if reasoning_effort is not None:
        extra["reasoning"] = {"effort": reasoning_effort}
    items: list[dict[str, Any]] = [{"role": t.role, "content": t.text} for t in turns]
    spent = [0, 0]
    specs = [
        {"type": "function", "name": n, "description": d, "parameters": dict(p)}
        for n, d, p in (tools.specs() if tools else ())
    ]
    for round_ in range(MAX_ROUNDS + 1):
        if specs:
            extra["tools"] = specs
            if round_ == MAX_ROUNDS:
                extra["tool_choice"] = "none"
        response = await client.responses.create(
            model=model,
            instructions=instructions,
            input=items,  # type: ignore[arg-type]
            max_output_tokens=max_output_tokens,
            **extra,
        )
        usage = response.usage
        spent[0] += _count(usage.input_tokens if usage else 0)
        spent[1] += _count(usage.output_tokens if usage else 0)
        calls = [item for item in response.output if item.type == "function_call"]
        if not calls or not tools or round_ == MAX_ROUNDS:
            text = (response.output_text or "").strip()
            return Answer.reported(text, response.model or model, *spent)
        results = await tools.run_round([(c.name, c.arguments) for c in calls])
        for call, result in zip(calls, results, strict=True):
            # No server-side state (previous_response_id): the calls go back with their outputs.
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            items.append(
                {"type": "function_call_output", "call_id": call.call_id, "output": result}
            )
    raise AssertionError("unreachable: the last round answers")
