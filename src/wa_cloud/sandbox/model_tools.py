"""Function (tool) calling for the sandbox's OpenAI-compatible fake, in OpenAI's wire shapes.

A scripted reply may be `{"tool_calls": [{"name", "arguments"}, ...]}`: the next model call
answers with those calls (Chat Completions `message.tool_calls`, finish_reason "tool_calls";
Responses `function_call` output items). A scripted text reply may say `{{tool_output}}` (the
last tool result the request sent back) or `{{tool_output:NAME}}` (the last result of a call to
function NAME); with none, `(no tool output)`.

Requests are checked as OpenAI checks them: the `tools` declared, every tool result answering a
call the conversation holds, every call answered. The sandbox keeps no response state, so
Responses callers send the model's `function_call` items back in `input` with their outputs.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from wa_cloud.sandbox.control import ControlError

Json = dict[str, Any]

# OpenAI's rule for a function's name.
NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
NAME_MAX_LENGTH = 64
NO_TOOL_OUTPUT = "(no tool output)"
PLACEHOLDER = re.compile(r"\{\{tool_output(?::([a-zA-Z0-9_-]{1,64}))?\}\}")
CHAT_TEXT_KINDS = ("text",)
RESPONSE_TEXT_KINDS = ("input_text", "output_text", "text")


class ToolRequestError(Exception):
    """A request OpenAI would refuse with 400 `invalid_request_error`."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def text_parts(content: Any, kinds: tuple[str, ...]) -> str:
    """The text of a message's content: a string, or the parts of one of `kinds`."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        p["text"]
        for p in content
        if isinstance(p, dict) and p.get("type") in kinds and isinstance(p.get("text"), str)
    ]
    return "\n".join(texts)


def _compact(value: Json) -> str:
    """Arguments as the model writes them: compact JSON, non-ASCII as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- scripted replies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    name: str
    # An object (sent as compact JSON), or a string sent as it is (e.g. to script bad JSON).
    arguments: Json | str

    def wire_arguments(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else _compact(self.arguments)


@dataclass(frozen=True, slots=True)
class ToolCallsReply:
    calls: tuple[ScriptedCall, ...]

    def as_json(self) -> Json:
        return {"tool_calls": [{"name": c.name, "arguments": c.arguments} for c in self.calls]}


Reply = str | ToolCallsReply


def reply_json(reply: Reply) -> str | Json:
    return reply if isinstance(reply, str) else reply.as_json()


def parse_reply(value: Any, where: str) -> Reply:
    """A scripted reply from the control API: a string, or `{"tool_calls": [...]}`."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or set(value) != {"tool_calls"}:
        raise ControlError(f'{where} must be a string or {{"tool_calls": [...]}}.')
    given = value["tool_calls"]
    if not isinstance(given, list) or not given:
        raise ControlError(f"{where}.tool_calls must be a non-empty list.")
    calls: list[ScriptedCall] = []
    for i, call in enumerate(given):
        at = f"{where}.tool_calls[{i}]"
        if not isinstance(call, dict) or not set(call) <= {"name", "arguments"}:
            raise ControlError(f"{at} must be an object with name and arguments.")
        name = call.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ControlError(f"{at}.name must match ^[a-zA-Z0-9_-]{{1,64}}$.")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, dict | str):
            raise ControlError(f"{at}.arguments must be an object (or a string, sent as is).")
        calls.append(ScriptedCall(name, arguments))
    return ToolCallsReply(tuple(calls))


# --- what a request carries ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str | None  # the function called, from the call the result answers
    output: str

    def as_json(self) -> Json:
        return {"call_id": self.call_id, "name": self.name, "output": self.output}


@dataclass(slots=True)
class ToolTurn:
    """What one request carried about tools: the function names it declared, whether it
    lets the model call them (`tool_choice` other than "none"), and its tool results in order."""

    declared: list[str] = field(default_factory=list)
    may_call: bool = False
    results: list[ToolResult] = field(default_factory=list)

    def output(self, name: str | None) -> str:
        for result in reversed(self.results):
            if name is None or result.name == name:
                return result.output
        return NO_TOOL_OUTPUT

    def fill(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.output(m.group(1)), text)


@dataclass(frozen=True, slots=True)
class MadeCall:
    call_id: str
    name: str
    arguments: str

    def as_json(self) -> Json:
        return {"call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model says: text, or calls (then `text` is ""); `note` explains a scripted
    reply the request did not allow (kept in the request log)."""

    text: str
    calls: tuple[MadeCall, ...] = ()
    note: str | None = None


def resolve(reply: Reply, turn: ToolTurn, default: str) -> Answer:
    """A scripted reply as this request's answer. Tool calls need a request that declares
    tools and allows calling them; otherwise the model, like a real one, can only answer text
    (`default`), and the note says why. A call to a function the request did not declare is
    made anyway (real models do this now and then), with a note."""
    if isinstance(reply, str):
        return Answer(turn.fill(reply))
    if not turn.declared:
        return Answer(
            default, note="Scripted tool_calls answered as text: the request has no tools."
        )
    if not turn.may_call:
        return Answer(default, note='Scripted tool_calls answered as text: tool_choice is "none".')
    undeclared = sorted({c.name for c in reply.calls} - set(turn.declared))
    note = (
        f"Scripted calls to undeclared functions: {', '.join(undeclared)}." if undeclared else None
    )
    calls = tuple(MadeCall(new_id("call_"), c.name, c.wire_arguments()) for c in reply.calls)
    return Answer("", calls, note)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def calls_text(calls: tuple[MadeCall, ...]) -> str:
    """What the calls cost in output tokens: their names and arguments."""
    return "".join(c.name + c.arguments for c in calls)


def chat_tool_calls(calls: tuple[MadeCall, ...]) -> list[Json]:
    """`choices[0].message.tool_calls`: ChatCompletionMessageFunctionToolCall."""
    return [
        {
            "id": c.call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in calls
    ]


def response_function_calls(calls: tuple[MadeCall, ...]) -> list[Json]:
    """Responses `output` items: ResponseFunctionToolCall."""
    return [
        {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": c.call_id,
            "name": c.name,
            "arguments": c.arguments,
            "status": "completed",
        }
        for c in calls
    ]


# --- checks, in OpenAI's words -----------------------------------------------------------


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unknown type")


def _missing(param: str) -> ToolRequestError:
    return ToolRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: Any) -> ToolRequestError:
    return ToolRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _required_str(item: Json, key: str, at: str) -> str:
    value = item.get(key)
    if value is None:
        raise _missing(f"{at}.{key}")
    if not isinstance(value, str):
        raise _wrong_type(f"{at}.{key}", "a string", value)
    return value


def _check_name(value: Any, param: str) -> str:
    if value is None:
        raise _missing(param)
    if not isinstance(value, str):
        raise _wrong_type(param, "a string", value)
    if len(value) > NAME_MAX_LENGTH:
        raise ToolRequestError(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{NAME_MAX_LENGTH}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if not NAME_PATTERN.fullmatch(value):
        raise ToolRequestError(
            f"Invalid '{param}': string does not match pattern. Expected a string that "
            "matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param=param,
            code="invalid_value",
        )
    return value


def _check_optional(tool: Json, at: str, types: dict[str, tuple[type, str]]) -> None:
    for key, (kind, expected) in types.items():
        value = tool.get(key)
        # No bool is a str or a dict, so isinstance alone is exact here.
        if value is not None and not isinstance(value, kind):
            raise _wrong_type(f"{at}.{key}", expected, value)


def _tool_list(tools: Any) -> list[Json]:
    if not isinstance(tools, list):
        raise _wrong_type("tools", "an array of objects", tools)
    if not tools:
        raise ToolRequestError(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            param="tools",
            code="empty_array",
        )
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _wrong_type(f"tools[{i}]", "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise _missing(f"tools[{i}].type")
        if kind != "function":
            raise ToolRequestError(
                f"Invalid value: {kind!r}. Supported values are: 'function' (the sandbox fakes "
                "no other tool).",
                param=f"tools[{i}].type",
                code="invalid_value",
            )
    return tools


def _names_once(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _may_call(body: Json) -> bool:
    return body.get("tool_choice") != "none"


# --- Chat Completions ---------------------------------------------------------------------


# The optional fields of a function tool, in either API's shape, and what each must be.
_FUNCTION_OPTIONAL: Final = {
    "description": (str, "a string"),
    "parameters": (dict, "an object"),
    "strict": (bool, "a boolean"),
}


def _chat_tools(tools: Any) -> list[str]:
    """`tools`: `{"type": "function", "function": {"name", "description"?, "parameters"?,
    "strict"?}}` each; their names."""
    if tools is None:
        return []
    names: list[str] = []
    for i, tool in enumerate(_tool_list(tools)):
        function = tool.get("function")
        if function is None:
            raise _missing(f"tools[{i}].function")
        if not isinstance(function, dict):
            raise _wrong_type(f"tools[{i}].function", "an object", function)
        names.append(_check_name(function.get("name"), f"tools[{i}].function.name"))
        _check_optional(
            function,
            f"tools[{i}].function",
            _FUNCTION_OPTIONAL,
        )
    return _names_once(names)


def _assistant_calls(given: Any, at: str) -> dict[str, str]:
    """An assistant message's `tool_calls`: call id -> function name."""
    if not isinstance(given, list):
        raise _wrong_type(f"{at}.tool_calls", "an array", given)
    if not given:
        raise ToolRequestError(
            f"Invalid '{at}.tool_calls': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param=f"{at}.tool_calls",
            code="empty_array",
        )
    calls: dict[str, str] = {}
    for j, call in enumerate(given):
        where = f"{at}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise _wrong_type(where, "an object", call)
        call_id = _required_str(call, "id", where)
        if call.get("type", "function") != "function":
            raise ToolRequestError(
                f"Invalid value: {call.get('type')!r}. Supported values are: 'function'.",
                param=f"{where}.type",
                code="invalid_value",
            )
        function = call.get("function")
        if function is None:
            raise _missing(f"{where}.function")
        if not isinstance(function, dict):
            raise _wrong_type(f"{where}.function", "an object", function)
        name = _required_str(function, "name", f"{where}.function")
        _required_str(function, "arguments", f"{where}.function")
        calls[call_id] = name
    return calls


def _unanswered(at: int, waiting: list[str]) -> ToolRequestError:
    return ToolRequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(waiting),
        param=f"messages.[{at}].role",
    )


def chat_turn(body: Json, messages: list[Any]) -> ToolTurn:
    """Check `tools` and the tool messages as OpenAI does: a `role: "tool"` message answers a
    call of the assistant message its run of tool messages follows, and every call of an
    assistant message is answered before the conversation goes on."""
    turn = ToolTurn(declared=_chat_tools(body.get("tools")), may_call=_may_call(body))
    names: dict[str, str] = {}
    open_calls: dict[str, str] = {}  # the calls the current run of tool messages answers
    waiting: list[str] = []
    asked_at = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        at = f"messages[{i}]"
        if message.get("role") == "tool":
            call_id = _required_str(message, "tool_call_id", at)
            if "content" not in message:
                raise _missing(f"{at}.content")
            if call_id not in open_calls:
                detail = f" No call in it has the id {call_id!r}." if open_calls else ""
                raise ToolRequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'." + detail,
                    param=f"messages.[{i}].role",
                )
            if call_id in waiting:
                waiting.remove(call_id)
            output = text_parts(message.get("content"), CHAT_TEXT_KINDS)
            turn.results.append(ToolResult(call_id, names.get(call_id), output))
            continue
        if waiting:
            raise _unanswered(asked_at, waiting)
        open_calls = {}
        if message.get("role") == "assistant" and message.get("tool_calls") is not None:
            open_calls = _assistant_calls(message["tool_calls"], at)
            names.update(open_calls)
            waiting, asked_at = list(open_calls), i
    if waiting:
        raise _unanswered(asked_at, waiting)
    return turn


# --- Responses ----------------------------------------------------------------------------


def _response_tools(tools: Any) -> list[str]:
    """`tools`: `{"type": "function", "name", "parameters"?, "description"?, "strict"?}` each;
    their names."""
    if tools is None:
        return []
    names: list[str] = []
    for i, tool in enumerate(_tool_list(tools)):
        names.append(_check_name(tool.get("name"), f"tools[{i}].name"))
        _check_optional(
            tool,
            f"tools[{i}]",
            _FUNCTION_OPTIONAL,
        )
    return _names_once(names)


def echoed_tools(tools: Any) -> list[Json]:
    """The function tools as a response repeats them (FunctionTool; strict defaults to true)."""
    if not isinstance(tools, list):
        return []
    return [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": t.get("strict", True),
        }
        for t in tools
    ]


def response_turn(body: Json) -> ToolTurn:
    """Check `tools` and the input's function call items as OpenAI does: each
    `function_call_output` answers a `function_call` earlier in `input`, and each
    `function_call` is answered. `previous_response_id` is refused: no state is kept."""
    if body.get("previous_response_id") is not None:
        raise ToolRequestError(
            "The sandbox keeps no response state, so previous_response_id cannot be used: send "
            "the earlier items (the model's function_call items among them) in input instead.",
            param="previous_response_id",
        )
    turn = ToolTurn(declared=_response_tools(body.get("tools")), may_call=_may_call(body))
    given = body.get("input")
    items = given if isinstance(given, list) else []
    names: dict[str, str] = {}
    waiting: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        at = f"input[{i}]"
        if item.get("type") == "function_call":
            call_id = _required_str(item, "call_id", at)
            names[call_id] = _required_str(item, "name", at)
            _required_str(item, "arguments", at)
            waiting.append(call_id)
        elif item.get("type") == "function_call_output":
            call_id = _required_str(item, "call_id", at)
            if call_id not in names:
                raise ToolRequestError(
                    f"No tool call found for function call output with call_id {call_id}.",
                    param="input",
                )
            output = item.get("output")
            if output is None:
                raise _missing(f"{at}.output")
            if not isinstance(output, str | list):
                raise _wrong_type(f"{at}.output", "a string or an array", output)
            if call_id in waiting:
                waiting.remove(call_id)
            text = text_parts(output, RESPONSE_TEXT_KINDS)
            turn.results.append(ToolResult(call_id, names[call_id], text))
    if waiting:
        raise ToolRequestError(
            f"No tool output found for function call {waiting[0]}.", param="input"
        )
    return turn
