"""Message templates checked locally against Meta's rules, before Meta sees them.

`templates_meta/*.json` hold the body of `POST /{waba_id}/message_templates` as is. Meta answers a
bad one with a 100 at creation or, worse, a REJECTED status webhook hours later; this module
names the file, the component and the rule at once (`wa-cloud templates check`).

Messages quote Meta where Meta has words for the rule:
- limits and component shapes: "Template components" (developers.facebook.com, .../whatsapp/
  templates/components), "Template management" (name rule) and "Supported Languages";
- variable rules: the "Common rejection reasons" of Meta's template guidelines, as BSPs reproduce
  them (the ratio rule has no published threshold: see `too_many_placeholders`);
- parameter text: the API error "Param text cannot have new-line/tab characters or more than 4
  consecutive spaces";
- authentication templates: the copy code / one-tap / zero-tap authentication template pages.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wa_cloud.outbox.templates import placeholders


@dataclass(frozen=True, slots=True)
class Violation:
    file: str
    component: str  # "template", "HEADER", "BODY", "FOOTER", "BUTTONS", "BUTTONS[0]", ...
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.component}: {self.rule}: {self.message}"


NAME_MAX = 512
HEADER_TEXT_MAX = 60
BODY_TEXT_MAX = 1024
FOOTER_TEXT_MAX = 60
BUTTONS_MAX = 10
BUTTON_TEXT_MAX = 25
URL_MAX = 2000
PHONE_NUMBER_MAX = 20
COPY_CODE_EXAMPLE_MAX = 20
CODE_EXPIRATION_MINUTES = range(1, 91)
SUPPORTED_APPS_MAX = 5
PACKAGE_NAME_MAX = 224
SIGNATURE_HASH_LENGTH = 11

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
PARAMETER_FORMATS = ("POSITIONAL", "NAMED")
COMPONENT_ORDER = ("HEADER", "BODY", "FOOTER", "BUTTONS")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "GIF", "DOCUMENT", "LOCATION")
MEDIA_HEADER_FORMATS = ("IMAGE", "VIDEO", "GIF", "DOCUMENT")
BUTTON_TYPES = (
    "QUICK_REPLY",
    "URL",
    "PHONE_NUMBER",
    "COPY_CODE",
    "OTP",
    "FLOW",
    "VOICE_CALL",
    "MPM",
    "SPM",
    "CATALOG",
)
BUTTONS_WITH_TEXT = ("QUICK_REPLY", "URL", "PHONE_NUMBER")  # text is required on these
OTP_TYPES = ("COPY_CODE", "ONE_TAP", "ZERO_TAP")
# Meta's per-type limits, each with Meta's sentence.
BUTTON_TYPE_LIMITS = {
    "URL": (2, "Templates are limited to two URL buttons."),
    "PHONE_NUMBER": (1, "Templates are limited to one phone number button."),
    "COPY_CODE": (1, "Templates are limited to one copy code button."),
}

# Meta's "Supported Languages" page (updated May 21, 2026) from Afrikaans to Latvian; from
# Lithuanian on, Meta's earlier list plus the es_CL/CO/PE/VE that pywa mirrors from Meta (the
# stored copy of the new page stops at Latvian). Codes are case-sensitive: en_US, not en-US.
_LANGUAGE_CODES = """
af sq ar ar_EG ar_AE ar_LB ar_MA ar_QA az be_BY bn bn_IN bg ca zh_CN zh_HK zh_TW hr cs
da prs_AF nl nl_BE en en_GB en_US en_AE en_AU en_CA en_GH en_IE en_IN en_JM en_MY en_NZ en_QA
en_SG en_UG en_ZA et fil fi fr fr_BE fr_CA fr_CH fr_CI fr_MA ka de de_AT de_CH el gu ha he hi
hu id ga it ja kn kk rw_RW ko ky_KG lo lv lt mk ms ml mr nb fa pl pt_BR pt_PT pa ro ru sr sk
sl es es_AR es_CL es_CO es_ES es_MX es_PE es_VE sw sv ta te th tr uk ur uz vi zu
"""
SUPPORTED_LANGUAGES = frozenset(_LANGUAGE_CODES.split())

_NAME = re.compile(r"[a-z0-9_]+")

MALFORMED = (
    "Variable parameters are missing or have mismatched curly braces. The correct format is "
    "{{1}}. Variable parameters contain special characters such as a #, $, or %."
)
EXAMPLE_FORMATTING = (
    "Param text cannot have new-line/tab characters or more than 4 consecutive spaces."
)


def check_template(document: object, file: str = "<template>") -> list[Violation]:
    """Every rule `document` (a parsed template file) breaks; never raises."""
    found = _Findings(file)
    if not isinstance(document, Mapping):
        found.add("template", "not_an_object", "a template is a JSON object (Meta's create body)")
        return found.violations
    _check_top_level(found, document)
    category = str(document.get("category", "")).upper()
    named = str(document.get("parameter_format", "POSITIONAL")).upper() == "NAMED"
    components = document.get("components")
    if isinstance(components, list):
        _check_components(found, components, _Context(category == "AUTHENTICATION", named))
    return found.violations


def check_paths(paths: Sequence[Path]) -> list[Violation]:
    """Check template files; a directory stands for its *.json files, in name order."""
    violations: list[Violation] = []
    first_file: dict[tuple[str, str], str] = {}
    for path in _template_files(paths):
        file = str(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            violations.append(Violation(file, "template", "invalid_json", str(exc)))
            continue
        violations.extend(check_template(document, file))
        if isinstance(document, Mapping):
            key = (str(document.get("name")), str(document.get("language")))
            if key in first_file:
                violations.append(
                    Violation(
                        file,
                        "template",
                        "duplicate_template",
                        f"{key[0]} ({key[1]}) is also defined in {first_file[key]}: "
                        "Template names must be unique within a WhatsApp Business account "
                        "for each language.",
                    )
                )
            first_file.setdefault(key, file)
    return violations


def _template_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.glob("*.json"))
        else:
            yield path


class _Findings:
    def __init__(self, file: str) -> None:
        self.file = file
        self.violations: list[Violation] = []

    def add(self, component: str, rule: str, message: str) -> None:
        self.violations.append(Violation(self.file, component, rule, message))


@dataclass(frozen=True, slots=True)
class _Context:
    authentication: bool
    named: bool


def _show(value: object) -> str:
    """A value for a message: JSON-ish and short, whatever was in the file."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _check_top_level(found: _Findings, document: Mapping[object, object]) -> None:
    for field in ("name", "language", "category", "components"):
        if field not in document:
            found.add("template", "missing_field", f"'{field}' is required")
    name = document.get("name")
    if "name" in document:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            found.add(
                "template",
                "invalid_name",
                f"{_show(name)}: Template names can only contain lowercase alphanumeric "
                "characters and underscores.",
            )
        if isinstance(name, str) and len(name) > NAME_MAX:
            found.add(
                "template",
                "name_too_long",
                f"{len(name)} characters: The maximum length is {NAME_MAX} characters.",
            )
    language = document.get("language")
    if "language" in document and (
        not isinstance(language, str) or language not in SUPPORTED_LANGUAGES
    ):
        found.add("template", "unsupported_language", _language_message(language))
    category = document.get("category")
    if "category" in document and str(category).upper() not in CATEGORIES:
        found.add(
            "template",
            "invalid_category",
            f"{_show(category)}: category is one of {', '.join(CATEGORIES)}",
        )
    parameter_format = document.get("parameter_format", "POSITIONAL")
    if str(parameter_format).upper() not in PARAMETER_FORMATS:
        found.add(
            "template",
            "invalid_parameter_format",
            f"{_show(parameter_format)}: parameter_format is POSITIONAL (the default) or NAMED",
        )
    components = document.get("components")
    if "components" in document and not isinstance(components, list):
        found.add("template", "invalid_field", "'components' is a list of component objects")


def _language_message(language: object) -> str:
    message = f"{_show(language)} is not a language code Meta supports for templates"
    if isinstance(language, str):
        # The usual slip: a web locale (en-US, en_us) for Meta's en_US.
        wanted = language.replace("-", "_").lower()
        close = [code for code in SUPPORTED_LANGUAGES if code.lower() == wanted]
        if close:
            return f"{message}; language codes are case-sensitive: did you mean {close[0]}?"
    return message


def _check_components(found: _Findings, components: list[object], ctx: _Context) -> None:
    seen: set[str] = set()
    last = -1
    for index, component in enumerate(components):
        where = f"components[{index}]"
        if not isinstance(component, Mapping):
            found.add(where, "invalid_component", f"{_show(component)}: a component is an object")
            continue
        kind = str(component.get("type", "")).upper()
        if kind not in COMPONENT_ORDER:
            found.add(
                where,
                "unknown_component",
                f"type {_show(component.get('type'))}: this check knows "
                f"{', '.join(COMPONENT_ORDER)}",
            )
            continue
        if kind in seen:
            found.add(
                kind, "duplicate_component", f"Templates are limited to one {kind} component."
            )
            continue
        seen.add(kind)
        position = COMPONENT_ORDER.index(kind)
        if position < last:
            found.add(
                kind,
                "component_order",
                f"{kind} after {COMPONENT_ORDER[last]}: components go in the order "
                "HEADER, BODY, FOOTER, BUTTONS (footers appear immediately after the body)",
            )
        last = max(last, position)
        if kind == "HEADER":
            _check_header(found, component, ctx)
        elif kind == "BODY":
            _check_body(found, component, ctx)
        elif kind == "FOOTER":
            _check_footer(found, component, ctx)
        else:
            _check_buttons(found, component, ctx)
    if "BODY" not in seen and not ctx.authentication:
        found.add("template", "missing_body", "The only required component is the body component.")
    if "BUTTONS" not in seen and ctx.authentication:
        found.add("template", "auth_buttons", _AUTH_BUTTONS)


# -- Variables: placeholders() decides what a placeholder is; this finds where they sit.


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    name: str | None  # None: braces around something that is not a placeholder


def _spans(text: str) -> tuple[list[_Span], bool]:
    """Every {{...}} in `text`, and whether a brace is left unpaired."""
    valid = set(placeholders(text))
    spans: list[_Span] = []
    at = 0
    while (opening := text.find("{{", at)) != -1:
        closing = text.find("}}", opening + 2)
        if closing == -1:
            break
        name = text[opening + 2 : closing].strip()
        spans.append(_Span(opening, closing + 2, name if name in valid else None))
        at = closing + 2
    rest = _without(text, spans)
    return spans, "{{" in rest or "}}" in rest


def _check_variables(found: _Findings, where: str, text: str, ctx: _Context) -> list[str] | None:
    """Shared rules for a text's variables; its distinct names, or None when they are unusable."""
    spans, unpaired = _spans(text)
    bad = [text[s.start : s.end] for s in spans if s.name is None]
    if bad or unpaired:
        found.add(
            where, "malformed_placeholder", f"{', '.join(bad) or 'unpaired braces'}: {MALFORMED}"
        )
    names = placeholders(text)
    usable = not bad and not unpaired
    for name in names:
        if name.isdigit() == ctx.named:
            usable = False
            found.add(
                where,
                "placeholder_format_mismatch",
                f"{{{{{name}}}}} in a {'NAMED' if ctx.named else 'POSITIONAL'} template: "
                "placeholders are {{1}}, {{2}}, ... (POSITIONAL, the default) or "
                "{{snake_case}} (parameter_format NAMED), never both",
            )
        elif ctx.named and name != name.lower():
            usable = False
            found.add(
                where,
                "invalid_placeholder_name",
                f"{{{{{name}}}}}: named parameters are lowercase letters, digits and underscores",
            )
    numbers = sorted({int(name) for name in names if name.isdigit()})
    missing = sorted(set(range(1, len(numbers) + 1)) - set(numbers))
    if missing:
        usable = False
        found.add(
            where,
            "placeholders_not_sequential",
            f"missing {', '.join(f'{{{{{n}}}}}' for n in missing)}: Variable parameters are not "
            "sequential. For example, {{1}}, {{2}}, {{4}}, {{5}} are defined but {{3}} does "
            "not exist.",
        )
    return names if usable else None


def _check_example_values(found: _Findings, where: str, values: Sequence[object]) -> None:
    for value in values:
        if not isinstance(value, str) or not value.strip():
            found.add(
                where, "missing_example", f"{_show(value)}: every example is a non-empty string"
            )
        elif "\n" in value or "\t" in value or "     " in value:
            found.add(where, "example_formatting", f"{_show(value)}: {EXAMPLE_FORMATTING}")


def _check_named_examples(
    found: _Findings, where: str, names: list[str], params: object, field: str
) -> None:
    given: dict[str, object] = {}
    if isinstance(params, list):
        for param in params:
            if isinstance(param, Mapping) and isinstance(param.get("param_name"), str):
                given[param["param_name"]] = param.get("example")
            else:
                found.add(
                    where,
                    "example_mismatch",
                    f"{_show(param)}: example.{field} holds {{param_name, example}} objects",
                )
    missing = [name for name in names if name not in given]
    if missing:
        found.add(
            where,
            "missing_example",
            f"no example.{field} for {', '.join(missing)}: If your templates use variables, you "
            "must include sample variable values upon template creation.",
        )
    extra = [name for name in given if name not in names]
    if extra:
        found.add(
            where, "example_mismatch", f"example.{field} names {', '.join(extra)}, not in the text"
        )
    _check_example_values(found, where, [given[name] for name in names if name in given])


def _check_positional_examples(
    found: _Findings, where: str, names: list[str], values: object, field: str
) -> None:
    if not isinstance(values, list):
        found.add(
            where,
            "missing_example",
            f"no example.{field}: If your templates use variables, you must include sample "
            "variable values upon template creation.",
        )
    elif len(values) != len(names):
        found.add(
            where,
            "example_mismatch",
            f"example.{field} has {len(values)} value(s) for {len(names)} variable(s)",
        )
    else:
        _check_example_values(found, where, values)


# -- Components.


def _check_header(found: _Findings, header: Mapping[object, object], ctx: _Context) -> None:
    if ctx.authentication:
        found.add(
            "HEADER",
            "auth_component_not_allowed",
            "Authentication templates consist of preset text and a one-time password button; "
            "URLs, media, and emojis are not supported.",
        )
        return
    header_format = str(header.get("format", "")).upper()
    if header_format not in HEADER_FORMATS:
        found.add(
            "HEADER",
            "invalid_header_format",
            f"format {_show(header.get('format'))}: one of {', '.join(HEADER_FORMATS)}",
        )
        return
    example = header.get("example")
    example = example if isinstance(example, Mapping) else {}
    if header_format in MEDIA_HEADER_FORMATS:
        handles = example.get("header_handle")
        if not isinstance(handles, list) or not handles or not all(map(_text, handles)):
            found.add(
                "HEADER",
                "missing_example",
                "example.header_handle: Uploaded media asset handle. Use the Resumable Upload "
                "API to generate an asset handle.",
            )
        return
    if header_format != "TEXT":
        return  # LOCATION: the location comes with each send
    text = _text(header.get("text"))
    if text is None:
        found.add("HEADER", "missing_text", "a TEXT header has a non-empty 'text'")
        return
    if len(text) > HEADER_TEXT_MAX:
        found.add(
            "HEADER",
            "header_too_long",
            f"{len(text)} characters: Maximum {HEADER_TEXT_MAX} characters.",
        )
    spans, _ = _spans(text)
    if len(spans) > 1:
        found.add(
            "HEADER",
            "too_many_header_variables",
            f"{len(spans)} variables: Text headers support 1 parameter.",
        )
    outside = _without(text, spans)  # named placeholders may hold underscores
    if "\n" in text or any(mark in outside for mark in "*_~`"):
        found.add(
            "HEADER",
            "header_formatting",
            "a line break or Markdown (*, _, ~, `) in the text header: Do not use Markdown "
            "special characters in this component.",
        )
    names = _check_variables(found, "HEADER", text, ctx)
    if names and ctx.named:
        params = example.get("header_text_named_params")
        _check_named_examples(found, "HEADER", names, params, "header_text_named_params")
    elif names:
        _check_positional_examples(
            found, "HEADER", names, example.get("header_text"), "header_text"
        )


def _check_body(found: _Findings, body: Mapping[object, object], ctx: _Context) -> None:
    if ctx.authentication:
        if "text" in body:
            found.add("BODY", "auth_preset_text", _AUTH_PRESET_TEXT)
        recommendation = body.get("add_security_recommendation", False)
        if not isinstance(recommendation, bool):
            found.add(
                "BODY",
                "invalid_field",
                f"add_security_recommendation {_show(recommendation)}: true or false",
            )
        return
    text = _text(body.get("text"))
    if text is None:
        found.add("BODY", "missing_text", "the body has a non-empty 'text'")
        return
    if len(text) > BODY_TEXT_MAX:
        found.add(
            "BODY",
            "body_too_long",
            f"{len(text)} characters: Maximum of {BODY_TEXT_MAX} characters.",
        )
    names = _check_variables(found, "BODY", text, ctx)
    spans = [span for span in _spans(text)[0] if span.name is not None]
    _check_body_layout(found, text, spans)
    if not names:
        return
    example = body.get("example")
    example = example if isinstance(example, Mapping) else {}
    if ctx.named:
        params = example.get("body_text_named_params")
        _check_named_examples(found, "BODY", names, params, "body_text_named_params")
        return
    rows = example.get("body_text")
    # Meta's shape is one row of values: [["Ana", "A-17"]].
    row = rows[0] if isinstance(rows, list) and len(rows) == 1 else None
    if rows is not None and not isinstance(row, list):
        found.add("BODY", "example_mismatch", "example.body_text is one row of values: [[...]]")
    else:
        _check_positional_examples(found, "BODY", names, row, "body_text")


def _check_body_layout(found: _Findings, text: str, spans: list[_Span]) -> None:
    """Where the variables sit: Meta's rejection reasons about variables in the body."""
    if not spans:
        return
    # Punctuation, spaces and emoji around a variable do not count as text.
    lead = next((i for i, char in enumerate(text) if char.isalnum() or char == "{"), len(text))
    trail = next(
        (len(text) - i for i, char in enumerate(reversed(text)) if char.isalnum() or char == "}"),
        0,
    )
    if spans[0].start == lead or spans[-1].end == trail:
        edge = (
            text[spans[0].start : spans[0].end]
            if spans[0].start == lead
            else text[spans[-1].start : spans[-1].end]
        )
        found.add(
            "BODY",
            "placeholder_at_edge",
            f"{edge}: the template starts or ends with a variable, e.g., {{{{1}}}} thanks! "
            "Add text before the first variable and after the last one.",
        )
    for left, right in itertools.pairwise(spans):
        if not any(map(str.isalnum, text[left.end : right.start])):
            found.add(
                "BODY",
                "adjacent_placeholders",
                f"{text[left.start : right.end]}: Variable parameters appear directly next to "
                "each other, e.g., {{1}} {{2}}.",
            )
    words = sum(1 for word in _without(text, spans).split() if any(map(str.isalnum, word)))
    if words < 2 * len(spans) + 1:
        found.add(
            "BODY",
            "too_many_placeholders",
            f"{len(spans)} variables, {words} words: Template contains too many variable "
            "parameters relative to the message length. You need to decrease the number of "
            "variable parameters or increase the message length. (Meta publishes no number; "
            "this asks for the 2 words per variable plus 1 that BSPs observe.)",
        )


def _without(text: str, spans: list[_Span]) -> str:
    """`text` with its variables blanked out."""
    parts: list[str] = []
    at = 0
    for span in spans:
        parts.append(text[at : span.start])
        at = span.end
    parts.append(text[at:])
    return " ".join(parts)


def _check_footer(found: _Findings, footer: Mapping[object, object], ctx: _Context) -> None:
    if ctx.authentication:
        if "text" in footer:
            found.add("FOOTER", "auth_preset_text", _AUTH_PRESET_TEXT)
        minutes = footer.get("code_expiration_minutes", 1)
        whole = isinstance(minutes, int) and not isinstance(minutes, bool)
        if not whole or minutes not in CODE_EXPIRATION_MINUTES:
            found.add(
                "FOOTER",
                "code_expiration_range",
                f"code_expiration_minutes {_show(minutes)}: Minimum 1, maximum 90.",
            )
        return
    text = _text(footer.get("text"))
    if text is None:
        found.add("FOOTER", "missing_text", "the footer has a non-empty 'text'")
        return
    if len(text) > FOOTER_TEXT_MAX:
        found.add(
            "FOOTER",
            "footer_too_long",
            f"{len(text)} characters: {FOOTER_TEXT_MAX} characters maximum.",
        )
    if "{{" in text or "}}" in text:
        found.add(
            "FOOTER",
            "footer_has_variable",
            "Footers are optional text-only components: no variables.",
        )


_AUTH_PRESET_TEXT = (
    "Authentication templates use preset text (<VERIFICATION_CODE> is your verification code.): "
    "no 'text'; use add_security_recommendation (body) and code_expiration_minutes (footer)."
)
_AUTH_BUTTONS = (
    "Authentication templates must have a one-time password button: one button, of type OTP."
)


def _check_buttons(found: _Findings, component: Mapping[object, object], ctx: _Context) -> None:
    buttons = component.get("buttons")
    if not isinstance(buttons, list) or not buttons:
        found.add(
            "BUTTONS",
            "missing_field",
            "Buttons are defined within a single buttons component object, packed into a single "
            "buttons array.",
        )
        if ctx.authentication:
            found.add("BUTTONS", "auth_buttons", _AUTH_BUTTONS)
        return
    kinds = [
        str(button.get("type", "")).upper() if isinstance(button, Mapping) else ""
        for button in buttons
    ]
    if ctx.authentication and kinds != ["OTP"]:
        found.add("BUTTONS", "auth_buttons", f"{', '.join(kinds)}: {_AUTH_BUTTONS}")
    if len(buttons) > BUTTONS_MAX:
        found.add(
            "BUTTONS",
            "too_many_buttons",
            f"{len(buttons)} buttons: Templates can have a combination of up to {BUTTONS_MAX} "
            "button components in total.",
        )
    for kind, (limit, sentence) in BUTTON_TYPE_LIMITS.items():
        if kinds.count(kind) > limit:
            found.add("BUTTONS", "button_type_limit", f"{kinds.count(kind)} {kind}: {sentence}")
    quick = [kind == "QUICK_REPLY" for kind in kinds]
    if sum(a != b for a, b in itertools.pairwise(quick)) > 1:
        found.add(
            "BUTTONS",
            "buttons_not_grouped",
            f"{', '.join(kinds)}: If using quick reply buttons with other buttons, buttons must "
            "be organized into two groups: quick reply buttons and non-quick reply buttons.",
        )
    for index, button in enumerate(buttons):
        _check_button(found, f"BUTTONS[{index}]", button, ctx)


def _check_button(found: _Findings, where: str, button: object, ctx: _Context) -> None:
    if not isinstance(button, Mapping):
        found.add(where, "invalid_button", f"{_show(button)}: a button is an object")
        return
    kind = str(button.get("type", "")).upper()
    if kind not in BUTTON_TYPES:
        found.add(
            where,
            "unknown_button_type",
            f"type {_show(button.get('type'))}: one of {', '.join(BUTTON_TYPES)}",
        )
        return
    if kind in BUTTONS_WITH_TEXT and _text(button.get("text")) is None:
        found.add(where, "missing_text", f"a {kind} button has a non-empty 'text' (its label)")
    for field in ("text", "autofill_text"):
        label = button.get(field)
        if isinstance(label, str) and len(label) > BUTTON_TEXT_MAX:
            found.add(
                where,
                "button_text_too_long",
                f"{field} has {len(label)} characters: Button label text. "
                f"{BUTTON_TEXT_MAX} characters maximum.",
            )
    if kind == "URL":
        _check_url_button(found, where, button, ctx)
    elif kind == "PHONE_NUMBER":
        number = _text(button.get("phone_number"))
        if number is None:
            found.add(where, "missing_field", "a PHONE_NUMBER button has a 'phone_number'")
        elif len(number) > PHONE_NUMBER_MAX:
            found.add(
                where,
                "phone_number_too_long",
                f"{len(number)} characters: {PHONE_NUMBER_MAX} characters maximum.",
            )
    elif kind == "COPY_CODE":
        code = _text(button.get("example"))
        if code is None:
            found.add(
                where,
                "missing_example",
                "example: String to be copied to the device's clipboard when tapped by the app "
                "user.",
            )
        elif len(code) > COPY_CODE_EXAMPLE_MAX:
            found.add(
                where,
                "copy_code_too_long",
                f"{len(code)} characters: Maximum {COPY_CODE_EXAMPLE_MAX} characters.",
            )
    elif kind == "OTP":
        _check_otp_button(found, where, button, ctx)


def _check_url_button(
    found: _Findings, where: str, button: Mapping[object, object], ctx: _Context
) -> None:
    url = _text(button.get("url"))
    if url is None:
        found.add(where, "missing_field", "a URL button has a 'url'")
        return
    if len(url) > URL_MAX:
        found.add(where, "url_too_long", f"{len(url)} characters: {URL_MAX} characters maximum.")
    spans, unpaired = _spans(url)
    if not spans and not unpaired:
        return
    name = spans[0].name if len(spans) == 1 and spans[0].end == len(url) else None
    if ctx.named:
        wanted = name is not None and not name.isdigit() and name == name.lower()
    else:
        wanted = name == "1"
    if unpaired or not wanted:
        found.add(
            where,
            "url_variable",
            f"{_show(url)}: Supports 1 variable, appended to the end of the URL string "
            f"({'{{snake_case}}' if ctx.named else '{{1}}'}).",
        )
        return
    examples = button.get("example")
    if not isinstance(examples, list) or not examples or not all(map(_text, examples)):
        found.add(
            where,
            "missing_example",
            'example, e.g. ["summer2023"]: Required if <URL> contains a variable.',
        )


def _check_otp_button(
    found: _Findings, where: str, button: Mapping[object, object], ctx: _Context
) -> None:
    if not ctx.authentication:
        found.add(
            where,
            "otp_outside_authentication",
            "One-time password buttons are a special type of URL button component used with "
            "authentication templates.",
        )
        return
    otp_type = str(button.get("otp_type", "")).upper()
    if otp_type not in OTP_TYPES:
        found.add(
            where,
            "invalid_otp_type",
            f"otp_type {_show(button.get('otp_type'))}: one of {', '.join(OTP_TYPES)}",
        )
        return
    if otp_type == "COPY_CODE":
        return
    # One-tap and zero-tap hand the code to an Android app, named here.
    apps = button.get("supported_apps")
    if apps is None and "package_name" in button:
        apps = [button]  # the older shape: package_name and signature_hash on the button
    if (
        not isinstance(apps, list)
        or not 1 <= len(apps) <= SUPPORTED_APPS_MAX
        or not all(map(_is_supported_app, apps))
    ):
        found.add(
            where,
            "supported_apps",
            f"{otp_type} needs supported_apps: 1 to {SUPPORTED_APPS_MAX} objects with "
            f"package_name (maximum {PACKAGE_NAME_MAX} characters) and signature_hash "
            f"(exactly {SIGNATURE_HASH_LENGTH} characters)",
        )
    if otp_type == "ZERO_TAP" and button.get("zero_tap_terms_accepted") is not True:
        found.add(
            where,
            "zero_tap_terms",
            "zero_tap_terms_accepted must be true: you need to accept zero-tap terms before "
            "creating zero-tap enabled message templates.",
        )


def _is_supported_app(app: object) -> bool:
    if not isinstance(app, Mapping):
        return False
    package, signature = _text(app.get("package_name")), app.get("signature_hash")
    return (
        package is not None
        and len(package) <= PACKAGE_NAME_MAX
        and isinstance(signature, str)
        and len(signature) == SIGNATURE_HASH_LENGTH
    )
