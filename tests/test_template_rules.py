"""Template files checked against Meta's rules before Meta sees them: pure functions, no database.

Every rule has a document that breaks it (the rule and component must be named) and a near twin
that passes every rule (no violation at all), so a rule that fires too eagerly fails here too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_cloud.outbox.template_rules import Violation, check_paths, check_template

ROOT = Path(__file__).resolve().parents[1]

Doc = dict[str, Any]


# -- Building blocks: each is valid on its own.


def body(text: str = "Hi {{1}}, your order {{2}} has shipped today.", *values: object) -> Doc:
    values = values or (("Ana", "A-17") if text.count("{{") == 2 else ())
    component: Doc = {"type": "BODY", "text": text}
    if values:
        component["example"] = {"body_text": [list(values)]}
    return component


def named_body(text: str, **examples: object) -> Doc:
    params = [{"param_name": name, "example": value} for name, value in examples.items()]
    return {"type": "BODY", "text": text, "example": {"body_text_named_params": params}}


def text_header(text: str, *values: object) -> Doc:
    component: Doc = {"type": "HEADER", "format": "TEXT", "text": text}
    if values:
        component["example"] = {"header_text": list(values)}
    return component


def footer(text: str = "Reply STOP to opt out") -> Doc:
    return {"type": "FOOTER", "text": text}


def buttons(*items: object) -> Doc:
    return {"type": "BUTTONS", "buttons": list(items)}


def quick(text: str = "Stop updates") -> Doc:
    return {"type": "QUICK_REPLY", "text": text}


def url(address: str = "https://example.com/track", *examples: str) -> Doc:
    button: Doc = {"type": "URL", "text": "Track", "url": address}
    if examples:
        button["example"] = list(examples)
    return button


def phone(number: str = "15550051310") -> Doc:
    return {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": number}


def copy_code(code: str = "250FF") -> Doc:
    return {"type": "COPY_CODE", "example": code}


def template(*components: Doc, **fields: object) -> Doc:
    document: Doc = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": list(components) or [body()],
    }
    document.update(fields)
    return document


def named(*components: Doc) -> Doc:
    return template(*components, parameter_format="NAMED")


def without(document: Doc, field: str) -> Doc:
    return {key: value for key, value in document.items() if key != field}


APPS = [{"package_name": "com.example.app", "signature_hash": "K8a/AINcGX7"}]
AUTH_BODY: Doc = {"type": "BODY", "add_security_recommendation": True}
AUTH_FOOTER: Doc = {"type": "FOOTER", "code_expiration_minutes": 10}


def otp(otp_type: str = "COPY_CODE", **fields: object) -> Doc:
    return {"type": "OTP", "otp_type": otp_type, **fields}


def auth(*components: Doc) -> Doc:
    return {
        "name": "login_code",
        "language": "en_US",
        "category": "AUTHENTICATION",
        "components": list(components) or [AUTH_BODY, AUTH_FOOTER, buttons(otp())],
    }


def auth_button(button: Doc) -> Doc:
    return auth(AUTH_BODY, AUTH_FOOTER, buttons(button))


NAMED_BODY = named_body("Hi {{first_name}}, your order is on its way now.", first_name="Ana")


def case(rule: str, component: str, invalid: object, valid: Doc, label: str = "") -> Any:
    return pytest.param(rule, component, invalid, valid, id=f"{component}-{rule}{label}")


CASES = [
    # The template as a whole.
    case("not_an_object", "template", ["order_update"], template()),
    case("missing_field", "template", without(template(), "category"), template()),
    case("invalid_name", "template", template(name="Order Update"), template(name="order_2")),
    case("invalid_name", "template", template(name=7), template(), "-type"),
    case("name_too_long", "template", template(name="a" * 513), template(name="a" * 512)),
    case("unsupported_language", "template", template(language="en-US"), template()),
    case(
        "unsupported_language",
        "template",
        template(language="xx"),
        template(language="pt_BR"),
        "-2",
    ),
    case(
        "invalid_category", "template", template(category="PROMO"), template(category="marketing")
    ),
    case(
        "invalid_parameter_format",
        "template",
        template(parameter_format="NUMBERED"),
        template(parameter_format="POSITIONAL"),
    ),
    case("invalid_field", "template", template(components={"type": "BODY"}), template()),
    # Components.
    case(
        "invalid_component", "components[1]", template(body(), "FOOTER"), template(body(), footer())
    ),
    case(
        "unknown_component",
        "components[1]",
        template(body(), {"type": "CAROUSEL"}),
        template(body(), footer()),
    ),
    case("duplicate_component", "BODY", template(body(), body()), template(body())),
    case("component_order", "BODY", template(footer(), body()), template(body(), footer())),
    case("missing_body", "template", template(footer()), template(body(), footer())),
    # HEADER.
    case(
        "invalid_header_format",
        "HEADER",
        template({"type": "HEADER", "format": "AUDIO"}, body()),
        template({"type": "HEADER", "format": "LOCATION"}, body()),
    ),
    case(
        "missing_text",
        "HEADER",
        template(text_header(""), body()),
        template(text_header("Hello"), body()),
    ),
    case(
        "header_too_long",
        "HEADER",
        template(text_header("x" * 61), body()),
        template(text_header("x" * 60), body()),
    ),
    case(
        "too_many_header_variables",
        "HEADER",
        template(text_header("Our {{1}} and {{2}} sale", "Summer", "Autumn"), body()),
        template(text_header("Our {{1}} sale", "Summer"), body()),
    ),
    case(
        "missing_example",
        "HEADER",
        template(text_header("Our {{1}} sale"), body()),
        template(text_header("Our {{1}} sale", "Summer"), body()),
    ),
    case(
        "missing_example",
        "HEADER",
        template({"type": "HEADER", "format": "IMAGE"}, body()),
        template(
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW"]}}, body()
        ),
        "-media",
    ),
    case(
        "missing_example",
        "HEADER",
        named(text_header("Sale starts {{start_date}}"), NAMED_BODY),
        named(
            {
                "type": "HEADER",
                "format": "TEXT",
                "text": "Sale starts {{start_date}}",
                "example": {
                    "header_text_named_params": [{"param_name": "start_date", "example": "May 1"}]
                },
            },
            NAMED_BODY,
        ),
        "-named",
    ),
    case(
        "header_formatting",
        "HEADER",
        template(text_header("*Big* sale"), body()),
        template(text_header("Big sale"), body()),
    ),
    case(
        "header_formatting",
        "HEADER",
        template(text_header("Big\nsale"), body()),
        template(text_header("Big sale"), body()),
        "-newline",
    ),
    # BODY.
    case("missing_text", "BODY", template({"type": "BODY"}), template(body())),
    case("body_too_long", "BODY", template(body("x" * 1025)), template(body("x" * 1024))),
    case(
        "malformed_placeholder",
        "BODY",
        template(body("Hi {{1}, your order has shipped today and arrives soon.")),
        template(body("Hi {{1}}, your order has shipped today and arrives soon.", "Ana")),
    ),
    case(
        "malformed_placeholder",
        "BODY",
        template(body("Hi {{#1}}, your order has shipped today and arrives soon.")),
        template(body("Hi #{{1}}, your order has shipped today and arrives soon.", "Ana")),
        "-special",
    ),
    case(
        "placeholder_format_mismatch",
        "BODY",
        template(body("Hi {{first_name}}, your order is on its way now.")),
        named(NAMED_BODY),
    ),
    case(
        "placeholder_format_mismatch",
        "BODY",
        named(named_body("Hi {{1}}, your order is on its way now.")),
        template(body("Hi {{1}}, your order is on its way now.", "Ana")),
        "-named",
    ),
    case(
        "invalid_placeholder_name",
        "BODY",
        named(named_body("Hi {{First_Name}}, your order is on its way now.", First_Name="Ana")),
        named(NAMED_BODY),
    ),
    case(
        "placeholders_not_sequential",
        "BODY",
        template(body("Hi {{1}}, your order {{3}} has shipped today.")),
        template(body("Hi {{1}}, your order {{2}} has shipped today.")),
    ),
    case(
        "placeholder_at_edge",
        "BODY",
        template(body("{{1}}, your order has shipped today.", "Ana")),
        template(body("Hi {{1}}, your order has shipped today.", "Ana")),
        "-start",
    ),
    case(
        "placeholder_at_edge",
        "BODY",
        template(body("Your order has shipped today, {{1}}.", "Ana")),
        template(body("Your order has shipped today, {{1}}. Thanks!", "Ana")),
        "-end",
    ),
    case(
        "adjacent_placeholders",
        "BODY",
        template(body("Hi {{1}} {{2}}, your order has shipped today and arrives soon.")),
        template(body("Hi {{1}} and {{2}}, your order has shipped today and arrives soon.")),
    ),
    case(
        "too_many_placeholders",
        "BODY",
        template(body("Hi {{1}}, order {{2}} shipped.")),
        template(body("Hi {{1}}, your order {{2}} has shipped.")),
    ),
    case(
        "missing_example",
        "BODY",
        template({"type": "BODY", "text": "Hi {{1}}, your order has shipped today."}),
        template(body("Hi {{1}}, your order has shipped today.", "Ana")),
    ),
    case(
        "missing_example",
        "BODY",
        named({"type": "BODY", "text": "Hi {{first_name}}, your order is on its way now."}),
        named(NAMED_BODY),
        "-named",
    ),
    case(
        "missing_example",
        "BODY",
        template(body("Hi {{1}}, your order has shipped today.", "")),
        template(body("Hi {{1}}, your order has shipped today.", "Ana")),
        "-empty",
    ),
    case(
        "example_mismatch",
        "BODY",
        template(body("Hi {{1}}, your order {{2}} has shipped today.", "Ana")),
        template(body()),
    ),
    case(
        "example_mismatch",
        "BODY",
        template(
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order has shipped today.",
                "example": {"body_text": ["Ana"]},
            }
        ),
        template(body("Hi {{1}}, your order has shipped today.", "Ana")),
        "-flat",
    ),
    case(
        "example_mismatch",
        "BODY",
        named(
            named_body("Hi {{first_name}}, your order is on its way now.", first_name="A", x="B")
        ),
        named(NAMED_BODY),
        "-named",
    ),
    case(
        "example_formatting",
        "BODY",
        template(body("Hi {{1}}, your order has shipped today.", "Ana\nLima")),
        template(body("Hi {{1}}, your order has shipped today.", "Ana Lima")),
    ),
    case(
        "example_formatting",
        "BODY",
        template(body("Hi {{1}}, your order has shipped today.", "Ana     Lima")),
        template(body("Hi {{1}}, your order has shipped today.", "Ana    Lima")),
        "-spaces",
    ),
    # FOOTER.
    case(
        "missing_text", "FOOTER", template(body(), {"type": "FOOTER"}), template(body(), footer())
    ),
    case(
        "footer_too_long",
        "FOOTER",
        template(body(), footer("x" * 61)),
        template(body(), footer("x" * 60)),
    ),
    case(
        "footer_has_variable",
        "FOOTER",
        template(body(), footer("Reply {{1}} to stop")),
        template(body(), footer("Reply STOP to stop")),
    ),
    # BUTTONS.
    case(
        "missing_field", "BUTTONS", template(body(), buttons()), template(body(), buttons(quick()))
    ),
    case(
        "too_many_buttons",
        "BUTTONS",
        template(body(), buttons(*[quick(f"Option {n}") for n in range(11)])),
        template(body(), buttons(*[quick(f"Option {n}") for n in range(10)])),
    ),
    case(
        "button_type_limit",
        "BUTTONS",
        template(body(), buttons(url(), url(), url())),
        template(body(), buttons(url(), url())),
    ),
    case(
        "button_type_limit",
        "BUTTONS",
        template(body(), buttons(phone(), phone())),
        template(body(), buttons(phone(), url())),
        "-phone",
    ),
    case(
        "button_type_limit",
        "BUTTONS",
        template(body(), buttons(copy_code(), copy_code())),
        template(body(), buttons(copy_code(), url())),
        "-copy-code",
    ),
    case(
        "buttons_not_grouped",
        "BUTTONS",
        template(body(), buttons(quick(), url(), quick("Later"))),
        template(body(), buttons(quick(), quick("Later"), url(), phone())),
    ),
    case(
        "invalid_button",
        "BUTTONS[0]",
        template(body(), buttons("Stop")),
        template(body(), buttons(quick())),
    ),
    case(
        "unknown_button_type",
        "BUTTONS[0]",
        template(body(), buttons({"type": "LINK", "text": "Go"})),
        template(body(), buttons(quick("Go"))),
    ),
    case(
        "missing_text",
        "BUTTONS[0]",
        template(body(), buttons({"type": "QUICK_REPLY"})),
        template(body(), buttons(quick())),
    ),
    case(
        "button_text_too_long",
        "BUTTONS[0]",
        template(body(), buttons(quick("x" * 26))),
        template(body(), buttons(quick("x" * 25))),
    ),
    case(
        "missing_field",
        "BUTTONS[0]",
        template(body(), buttons({"type": "URL", "text": "Track"})),
        template(body(), buttons(url())),
    ),
    case(
        "missing_field",
        "BUTTONS[0]",
        template(body(), buttons({"type": "PHONE_NUMBER", "text": "Call"})),
        template(body(), buttons(phone())),
        "-phone",
    ),
    case(
        "url_too_long",
        "BUTTONS[0]",
        template(body(), buttons(url("https://example.com/" + "x" * 1981))),
        template(body(), buttons(url("https://example.com/" + "x" * 1980))),
    ),
    case(
        "url_variable",
        "BUTTONS[0]",
        template(body(), buttons(url("https://example.com/{{1}}/track", "A-17"))),
        template(body(), buttons(url("https://example.com/track/{{1}}", "A-17"))),
    ),
    case(
        "url_variable",
        "BUTTONS[0]",
        template(body(), buttons(url("https://example.com/{{1}}{{2}}", "A-17"))),
        template(body(), buttons(url("https://example.com/{{1}}", "A-17"))),
        "-two",
    ),
    case(
        "url_variable",
        "BUTTONS[0]",
        template(body(), buttons(url("https://example.com/track/{{2}}", "A-17"))),
        named(NAMED_BODY, buttons(url("https://example.com/track/{{order_id}}", "A-17"))),
        "-name",
    ),
    case(
        "missing_example",
        "BUTTONS[0]",
        template(body(), buttons(url("https://example.com/track/{{1}}"))),
        template(body(), buttons(url("https://example.com/track/{{1}}", "A-17"))),
    ),
    case(
        "missing_example",
        "BUTTONS[0]",
        template(body(), buttons({"type": "COPY_CODE"})),
        template(body(), buttons(copy_code())),
        "-copy-code",
    ),
    case(
        "phone_number_too_long",
        "BUTTONS[0]",
        template(body(), buttons(phone("1" * 21))),
        template(body(), buttons(phone("1" * 20))),
    ),
    case(
        "copy_code_too_long",
        "BUTTONS[0]",
        template(body(), buttons(copy_code("X" * 21))),
        template(body(), buttons(copy_code("X" * 20))),
    ),
    case(
        "otp_outside_authentication",
        "BUTTONS[0]",
        template(body(), buttons(otp())),
        auth_button(otp()),
    ),
    # AUTHENTICATION templates: preset text and one OTP button.
    case(
        "auth_component_not_allowed",
        "HEADER",
        auth(text_header("Your code"), AUTH_BODY, buttons(otp())),
        auth(AUTH_BODY, buttons(otp())),
    ),
    case(
        "auth_preset_text",
        "BODY",
        auth({"type": "BODY", "text": "{{1}} is your code."}, buttons(otp())),
        auth(AUTH_BODY, buttons(otp())),
    ),
    case(
        "auth_preset_text",
        "FOOTER",
        auth(AUTH_BODY, footer("Expires soon"), buttons(otp())),
        auth(AUTH_BODY, AUTH_FOOTER, buttons(otp())),
        "-footer",
    ),
    case(
        "invalid_field",
        "BODY",
        auth({"type": "BODY", "add_security_recommendation": "yes"}, buttons(otp())),
        auth({"type": "BODY", "add_security_recommendation": False}, buttons(otp())),
    ),
    *[
        case(
            "code_expiration_range",
            "FOOTER",
            auth(AUTH_BODY, {"type": "FOOTER", "code_expiration_minutes": minutes}, buttons(otp())),
            auth(AUTH_BODY, {"type": "FOOTER", "code_expiration_minutes": 90}, buttons(otp())),
            f"-{minutes!r}",
        )
        for minutes in (0, 91, "5", True, 5.0)
    ],
    case("auth_buttons", "template", auth(AUTH_BODY, AUTH_FOOTER), auth()),
    case("auth_buttons", "BUTTONS", auth_button(quick()), auth(), "-quick-reply"),
    case(
        "auth_buttons",
        "BUTTONS",
        auth(AUTH_BODY, buttons(otp(), otp())),
        auth(AUTH_BODY, buttons(otp())),
        "-two",
    ),
    case(
        "invalid_otp_type",
        "BUTTONS[0]",
        auth_button(otp("AUTOFILL")),
        auth_button(otp("copy_code")),
    ),
    case(
        "supported_apps",
        "BUTTONS[0]",
        auth_button(otp("ONE_TAP")),
        auth_button(otp("ONE_TAP", supported_apps=APPS)),
    ),
    case(
        "supported_apps",
        "BUTTONS[0]",
        auth_button(otp("ONE_TAP", package_name="com.example.app", signature_hash="short")),
        auth_button(otp("ONE_TAP", package_name="com.example.app", signature_hash="K8a/AINcGX7")),
        "-hash",
    ),
    case(
        "zero_tap_terms",
        "BUTTONS[0]",
        auth_button(otp("ZERO_TAP", supported_apps=APPS)),
        auth_button(otp("ZERO_TAP", supported_apps=APPS, zero_tap_terms_accepted=True)),
    ),
]


@pytest.mark.parametrize(("rule", "component", "invalid", "valid"), CASES)
def test_rule(rule: str, component: str, invalid: object, valid: Doc) -> None:
    found = {(v.component, v.rule) for v in check_template(invalid, "t.json")}
    assert (component, rule) in found
    assert check_template(valid, "t.json") == []


def test_violation_reads_as_file_component_rule_message() -> None:
    [violation] = check_template(template(name="Order"), "templates_meta/order.json")
    assert violation == Violation(
        "templates_meta/order.json",
        "template",
        "invalid_name",
        "'Order': Template names can only contain lowercase alphanumeric characters and "
        "underscores.",
    )
    assert str(violation).startswith("templates_meta/order.json: template: invalid_name: 'Order'")


def test_the_repository_templates_pass() -> None:
    files = sorted((ROOT / "templates_meta").glob("*.json"))
    assert files
    assert check_paths([ROOT / "templates_meta"]) == []


def test_check_paths_reads_a_directory_of_files(tmp_path: Path) -> None:
    (tmp_path / "b_good.json").write_text(json.dumps(template()))
    (tmp_path / "a_broken.json").write_text('{"name": "order_update",')
    (tmp_path / "c_list.json").write_text("[1, 2]")
    (tmp_path / "notes.txt").write_text("not a template")
    found = [(Path(v.file).name, v.component, v.rule) for v in check_paths([tmp_path])]
    assert found == [
        ("a_broken.json", "template", "invalid_json"),
        ("c_list.json", "template", "not_an_object"),
    ]


def test_check_paths_takes_files_and_reports_unreadable_and_duplicates(tmp_path: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(template()))
    second.write_text(json.dumps(template()))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{")
    violations = check_paths([first, second, binary, tmp_path / "missing.json"])
    assert [(Path(v.file).name, v.rule) for v in violations] == [
        ("second.json", "duplicate_template"),
        ("binary.json", "invalid_json"),
        ("missing.json", "invalid_json"),
    ]
    assert str(first) in violations[0].message


def test_a_web_locale_gets_a_suggestion() -> None:
    [violation] = check_template(template(language="en-us"))
    assert violation.rule == "unsupported_language"
    assert "did you mean en_US?" in violation.message


# -- Whatever the file holds, the check answers with violations, never an exception.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
TEXT = st.text(alphabet="{}1 2a_B\n#.", max_size=24)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return values | JSON


BUTTON = st.fixed_dictionaries(
    {
        "type": maybe(st.sampled_from(["QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE", "OTP"])),
        "text": maybe(TEXT),
        "url": maybe(TEXT),
        "phone_number": maybe(TEXT),
        "example": maybe(st.lists(TEXT, max_size=2) | TEXT),
        "otp_type": maybe(st.sampled_from(["COPY_CODE", "ONE_TAP", "ZERO_TAP"])),
        "supported_apps": JSON,
        "package_name": JSON,
    }
)
EXAMPLE = st.fixed_dictionaries(
    {
        "body_text": maybe(st.lists(st.lists(TEXT, max_size=3), max_size=2)),
        "body_text_named_params": maybe(
            st.lists(st.fixed_dictionaries({"param_name": maybe(TEXT), "example": maybe(TEXT)}))
        ),
        "header_text": maybe(st.lists(TEXT, max_size=2)),
        "header_handle": JSON,
    }
)
COMPONENT = st.fixed_dictionaries(
    {
        "type": maybe(st.sampled_from(["HEADER", "BODY", "FOOTER", "BUTTONS"])),
        "format": maybe(st.sampled_from(["TEXT", "IMAGE", "LOCATION"])),
        "text": maybe(TEXT),
        "example": maybe(EXAMPLE),
        "buttons": maybe(st.lists(maybe(BUTTON), max_size=4)),
        "add_security_recommendation": JSON,
        "code_expiration_minutes": JSON,
    }
)
DOCUMENT = st.fixed_dictionaries(
    {
        "name": maybe(TEXT),
        "language": maybe(st.sampled_from(["en_US", "pt_BR"])),
        "category": maybe(st.sampled_from(["UTILITY", "MARKETING", "AUTHENTICATION"])),
        "parameter_format": maybe(st.sampled_from(["POSITIONAL", "NAMED"])),
        "components": maybe(st.lists(maybe(COMPONENT), max_size=5)),
    }
)


@settings(max_examples=300, deadline=None)
@given(maybe(DOCUMENT))
def test_check_template_never_raises(document: object) -> None:
    for violation in check_template(document, "fuzz.json"):
        assert re.fullmatch(r"[a-z_]+", violation.rule)
        assert violation.component and violation.message
