"""Function (tool) calling in the sandbox's OpenAI-compatible fake, driven by the real
`openai.AsyncOpenAI` over loopback: scripted tool calls parsed into the SDK's typed objects,
tool results quoted back through `{{tool_output}}`, the requests OpenAI refuses, and what the
request log shows of tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from openai.types.responses import FunctionTool, ResponseFunctionToolCall

from tests.test_model_fakes import Fakes, fakes, openai_client
from wa_cloud.sandbox.models import DEFAULT_REPLY

__all__ = ["fakes"]  # the fixture, used by name
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
    "additionalProperties": False,
}
CHAT_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "The status of an order.",
            "parameters": ORDER_SCHEMA,
        },
    },
    {"type": "function", "function": {"name": "shipping_quote"}},
]
RESPONSE_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "order_status",
        "description": "The status of an order.",
        "parameters": ORDER_SCHEMA,
        "strict": True,
    }
]
ORDER_CALL = {"tool_calls": [{"name": "order_status", "arguments": {"order_id": "A-17"}}]}
USER = {"role": "user", "content": "¿Dónde está mi pedido A-17?"}


@pytest.fixture
async def client(fakes: Fakes) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(fakes) as sdk:
        yield sdk


def assistant_calls(*calls: tuple[str, str, str]) -> dict[str, Any]:
    """An assistant message with tool calls, as a caller sends it back."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ],
    }


# --- Chat Completions ---------------------------------------------------------------------


async def test_chat_tool_round_trip(fakes: Fakes, client: openai.AsyncOpenAI) -> None:
    await fakes.script(ORDER_CALL, "Order: {{tool_output}}")
    first = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[USER], tools=CHAT_TOOLS
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.type == "function"
    assert call.id.startswith("call_") and len(call.id) > len("call_")
    assert call.function.name == "order_status"
    assert call.function.arguments == '{"order_id":"A-17"}'
    assert json.loads(call.function.arguments) == {"order_id": "A-17"}
    assert first.usage is not None and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    # The caller sends the assistant message back as the SDK gave it, then the tool's result.
    tool_result = {"role": "tool", "tool_call_id": call.id, "content": "shipped on 3 May"}
    second = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[USER, choice.message.model_dump(exclude_none=True), tool_result],
        tools=CHAT_TOOLS,
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Order: shipped on 3 May"
    assert second.choices[0].message.tool_calls is None

    asked, answered = await fakes.records()
    assert asked["api"] == "chat" and asked["status"] == 200
    assert asked["tools"] == CHAT_TOOLS  # exactly the definitions sent
    assert asked["tool_results"] == []
    assert asked["tool_calls"] == [
        {"call_id": call.id, "name": "order_status", "arguments": '{"order_id":"A-17"}'}
    ]
    assert "script_note" not in asked
    assert answered["tool_results"] == [
        {"call_id": call.id, "name": "order_status", "output": "shipped on 3 May"}
    ]
    assert answered["tool_calls"] == []
    assert answered["body"]["messages"][2] == tool_result


async def test_chat_parallel_calls_and_named_outputs(
    fakes: Fakes, client: openai.AsyncOpenAI
) -> None:
    await fakes.script(
        {
            "tool_calls": [
                {"name": "order_status", "arguments": {"order_id": "A-17"}},
                {"name": "shipping_quote", "arguments": {"to": "Córdoba"}},
            ]
        },
        "{{tool_output:order_status}} | {{tool_output:shipping_quote}} | "
        "{{tool_output:refund}} | {{tool_output}}",
        "Nothing: {{tool_output}}",
    )
    first = await client.chat.completions.create(
        model="gpt-4.1-mini", messages=[USER], tools=CHAT_TOOLS
    )
    calls = first.choices[0].message.tool_calls
    assert calls is not None
    status, quote = calls
    assert isinstance(status, ChatCompletionMessageFunctionToolCall)
    assert isinstance(quote, ChatCompletionMessageFunctionToolCall)
    assert [status.function.name, quote.function.name] == ["order_status", "shipping_quote"]
    assert quote.function.arguments == '{"to":"Córdoba"}'  # non-ASCII as the model writes it
    assert status.id != quote.id

    messages: list[Any] = [
        USER,
        assistant_calls(
            (status.id, "order_status", status.function.arguments),
            (quote.id, "shipping_quote", quote.function.arguments),
        ),
        # Answered out of order; the second as a list of text parts.
        {
            "role": "tool",
            "tool_call_id": quote.id,
            "content": [{"type": "text", "text": "4.99 EUR"}],
        },
        {"role": "tool", "tool_call_id": status.id, "content": "shipped"},
    ]
    second = await client.chat.completions.create(
        model="gpt-4.1-mini", messages=messages, tools=CHAT_TOOLS
    )
    # The last result overall is order_status's; nothing answered a call to "refund".
    assert second.choices[0].message.content == "shipped | 4.99 EUR | (no tool output) | shipped"

    third = await client.chat.completions.create(model="gpt-4.1-mini", messages=[USER])
    assert third.choices[0].message.content == "Nothing: (no tool output)"


async def test_chat_tool_calls_need_tools(fakes: Fakes, client: openai.AsyncOpenAI) -> None:
    """A model sent no tools (or tool_choice "none") cannot call one: a scripted tool_calls
    reply is answered with DEFAULT_REPLY, consumed, and the log says why."""
    await fakes.script(ORDER_CALL, ORDER_CALL, "next")
    no_tools = await client.chat.completions.create(model="gpt-4o-mini", messages=[USER])
    assert no_tools.choices[0].message.content == DEFAULT_REPLY
    assert no_tools.choices[0].finish_reason == "stop"
    choice_none = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[USER], tools=CHAT_TOOLS, tool_choice="none"
    )
    assert choice_none.choices[0].message.content == DEFAULT_REPLY
    after = await client.chat.completions.create(model="gpt-4o-mini", messages=[USER])
    assert after.choices[0].message.content == "next"

    records = await fakes.records()
    assert "the request has no tools" in records[0]["script_note"]
    assert records[0]["tools"] is None and records[0]["tool_calls"] == []
    assert 'tool_choice is "none"' in records[1]["script_note"]
    assert "script_note" not in records[2]


async def test_chat_undeclared_function_is_called_with_a_note(
    fakes: Fakes, client: openai.AsyncOpenAI
) -> None:
    await fakes.script({"tool_calls": [{"name": "refund", "arguments": "{not json"}]})
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[USER], tools=CHAT_TOOLS
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    assert calls[0].function.name == "refund"
    assert calls[0].function.arguments == "{not json"  # a string is sent as it is
    (record,) = await fakes.records()
    assert record["script_note"] == "Scripted calls to undeclared functions: refund."


CALL = assistant_calls(("call_1", "order_status", '{"order_id":"A-17"}'))
CHAT_REFUSALS: list[tuple[dict[str, Any], str, str | None]] = [
    # a tool message with no assistant tool_calls before it
    (
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
        "messages.[1].role",
        None,
    ),
    # answering a call id the assistant message did not make
    (
        {
            "messages": [
                USER,
                CALL,
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "tool", "tool_call_id": "call_2", "content": "x"},
            ]
        },
        "messages.[3].role",
        None,
    ),
    # the tool_call_id left out
    (
        {"messages": [USER, CALL, {"role": "tool", "content": "x"}]},
        "messages[2].tool_call_id",
        "missing_required_parameter",
    ),
    # a call left unanswered
    ({"messages": [USER, CALL, USER]}, "messages.[1].role", None),
    ({"messages": [USER, CALL]}, "messages.[1].role", None),
    # tools
    ({"messages": [USER], "tools": []}, "tools", "empty_array"),
    (
        {"messages": [USER], "tools": [{"type": "retrieval"}]},
        "tools[0].type",
        "invalid_value",
    ),
    (
        {"messages": [USER], "tools": [{"type": "function"}]},
        "tools[0].function",
        "missing_required_parameter",
    ),
    (
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "order status"}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "x" * 65}}]},
        "tools[0].function.name",
        "string_above_max_length",
    ),
    (
        {
            "messages": [USER],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": "{}"}}],
        },
        "tools[0].function.parameters",
        "invalid_type",
    ),
]


@pytest.mark.parametrize(("body", "param", "code"), CHAT_REFUSALS)
async def test_chat_refuses_what_openai_refuses(
    fakes: Fakes, client: openai.AsyncOpenAI, body: dict[str, Any], param: str, code: str | None
) -> None:
    await fakes.script("kept")
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="gpt-4o-mini", **body)
    assert raised.value.status_code == 400
    assert raised.value.type == "invalid_request_error"
    assert raised.value.param == param
    assert raised.value.code == code
    error = raised.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    # A refused request is not a model turn: the scripted reply is still queued.
    answered = await client.chat.completions.create(model="gpt-4o-mini", messages=[USER])
    assert answered.choices[0].message.content == "kept"
    refused = (await fakes.records())[0]
    assert refused["status"] == 400 and refused["tools"] == body.get("tools")


# --- Responses ----------------------------------------------------------------------------


async def test_responses_tool_round_trip(fakes: Fakes, client: openai.AsyncOpenAI) -> None:
    await fakes.script(ORDER_CALL, "Order: {{tool_output}} ({{tool_output:order_status}})")
    first = await client.responses.create(
        model="gpt-5-mini", input=[USER], tools=RESPONSE_TOOLS, reasoning={"effort": "low"}
    )
    assert first.output_text == ""
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    call = first.output[1]
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.id is not None and call.id.startswith("fc_")
    assert call.call_id.startswith("call_")
    assert call.name == "order_status"
    assert call.arguments == '{"order_id":"A-17"}'
    assert call.status == "completed"
    assert first.usage is not None and first.usage.output_tokens > 0
    (tool,) = first.tools
    assert isinstance(tool, FunctionTool)
    assert tool.name == "order_status" and tool.parameters == ORDER_SCHEMA

    # No previous_response_id here: the model's items go back in input, with the output.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "shipped"}
    second = await client.responses.create(
        model="gpt-5-mini",
        input=[USER, *first.output, output],  # type: ignore[list-item]
        tools=RESPONSE_TOOLS,
    )
    assert second.output_text == "Order: shipped (shipped)"
    assert [item.type for item in second.output] == ["message"]

    asked, answered = await fakes.records()
    assert asked["api"] == "responses"
    assert asked["tools"] == RESPONSE_TOOLS
    assert asked["tool_calls"] == [
        {"call_id": call.call_id, "name": "order_status", "arguments": '{"order_id":"A-17"}'}
    ]
    assert answered["tool_results"] == [
        {"call_id": call.call_id, "name": "order_status", "output": "shipped"}
    ]
    sent = answered["body"]["input"]
    assert sent[2]["type"] == "function_call" and sent[2]["call_id"] == call.call_id
    assert sent[3] == output


async def test_responses_output_parts_and_no_tools(
    fakes: Fakes, client: openai.AsyncOpenAI
) -> None:
    await fakes.script("Got: {{tool_output}}", ORDER_CALL)
    given: list[Any] = [
        USER,
        {"type": "function_call", "call_id": "call_a", "name": "order_status", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "call_a",
            "output": [{"type": "input_text", "text": "in transit"}],
        },
    ]
    parts = await client.responses.create(model="gpt-4o-mini", input=given, tools=RESPONSE_TOOLS)
    assert parts.output_text == "Got: in transit"
    plain = await client.responses.create(model="gpt-4o-mini", input="hola")
    assert plain.output_text == DEFAULT_REPLY
    assert plain.tools == []
    assert "the request has no tools" in (await fakes.records())[1]["script_note"]


def function_call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "order_status", "arguments": "{}"}


def call_output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "x"}


RESPONSE_REFUSALS: list[tuple[dict[str, Any], str, str | None, str]] = [
    (
        {"input": [USER, call_output("call_x")]},
        "input",
        None,
        "No tool call found for function call output with call_id call_x.",
    ),
    (
        # the output before its call
        {"input": [USER, call_output("call_a"), function_call("call_a")]},
        "input",
        None,
        "No tool call found for function call output with call_id call_a.",
    ),
    (
        {"input": [USER, function_call("call_a")]},
        "input",
        None,
        "No tool output found for function call call_a.",
    ),
    (
        {"input": [call_output("call_a")], "previous_response_id": "resp_123"},
        "previous_response_id",
        None,
        "keeps no response state",
    ),
    (
        {"input": "hi", "tools": [{"type": "function", "name": "bad name!"}]},
        "tools[0].name",
        "invalid_value",
        "does not match pattern",
    ),
    (
        {"input": "hi", "tools": [{"type": "function"}]},
        "tools[0].name",
        "missing_required_parameter",
        "Missing required parameter",
    ),
    (
        {"input": "hi", "tools": [{"type": "web_search"}]},
        "tools[0].type",
        "invalid_value",
        "web_search",
    ),
    (
        {"input": "hi", "tools": [{"type": "function", "name": "a", "strict": "yes"}]},
        "tools[0].strict",
        "invalid_type",
        "expected a boolean",
    ),
]


@pytest.mark.parametrize(("body", "param", "code", "says"), RESPONSE_REFUSALS)
async def test_responses_refuse_what_openai_refuses(
    fakes: Fakes,
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    param: str,
    code: str | None,
    says: str,
) -> None:
    await fakes.script("kept")
    with pytest.raises(openai.BadRequestError) as raised:
        await client.responses.create(model="gpt-4o-mini", **body)
    assert raised.value.type == "invalid_request_error"
    assert raised.value.param == param
    assert raised.value.code == code
    assert says in raised.value.message
    answered = await client.responses.create(model="gpt-4o-mini", input="hi")
    assert answered.output_text == "kept"


# --- control API --------------------------------------------------------------------------


async def test_script_lists_tool_calls_and_refuses_bad_ones(fakes: Fakes) -> None:
    listed = await fakes.script(ORDER_CALL, "text", {"tool_calls": [{"name": "ping"}]})
    assert listed["replies"] == [
        ORDER_CALL,
        "text",
        {"tool_calls": [{"name": "ping", "arguments": {}}]},
    ]
    for reply in (
        3,
        {"tool_calls": []},
        {"tool_calls": "order_status"},
        {"tool_calls": [{"name": "order status"}]},
        {"tool_calls": [{"name": "a", "arguments": [1]}]},
        {"tool_calls": [{"name": "a", "extra": 1}]},
        {"tool_calls": [{"name": "a"}], "text": "also"},
    ):
        refused = await fakes.control.post("/_models/script", json={"replies": [reply]})
        assert refused.status_code == 400, reply
        assert refused.json()["error"]["code"] == "bad_request"
    # Nothing from a refused script was queued.
    current = await fakes.control.post("/_models/script", json={})
    assert len(current.json()["replies"]) == 3


async def test_echo_and_empty_leave_tool_calls_queued(
    fakes: Fakes, client: openai.AsyncOpenAI
) -> None:
    await fakes.script(ORDER_CALL)
    echoed = await client.chat.completions.create(model="echo", messages=[USER], tools=CHAT_TOOLS)
    assert echoed.choices[0].message.content == USER["content"]
    called = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[USER], tools=CHAT_TOOLS
    )
    assert called.choices[0].finish_reason == "tool_calls"
