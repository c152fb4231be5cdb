"""Server-rendered HTML (the tenant status page) and the invitation mail's bodies.

One jinja2 environment, loaded once, with autoescaping on for every HTML template: values
from the database (tenant and verified names) are text, never markup.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def environment(package: str) -> Environment:
    """The templates under `package`/templates, with the settings every page of ours uses."""
    return Environment(
        loader=PackageLoader(package, "templates"),
        # .txt bodies are plain text; everything else (and any template from a string) is escaped.
        autoescape=select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default=True
        ),
        # A misspelt variable is a bug to see in tests, not a blank on a tenant's page.
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


_TEMPLATES = environment("wa_cloud.pages")


def render(name: str, **context: Any) -> str:
    return _TEMPLATES.get_template(name).render(**context)
