"""Templates of an app's address variables (`upstreams[].env`): `{host}`, `{port}`, `{address}`
(host:port) and `{url}`. A neutral module: validation checks templates with it, the resolver
expands them."""

from __future__ import annotations

from collections.abc import Mapping

PLACEHOLDERS = ("host", "port", "address", "url")


def default_name(service: str) -> str:
    """`CATALOG_URL` for service `catalog`: the variable an upstream gets when it sets no env."""
    return service.upper().replace("-", "_") + "_URL"


def template_fields(template: str) -> list[str]:
    """The placeholders a template uses; ValueError for a malformed one (`{` without `}`)."""
    import string   # only a spec that writes templates: its Template class compiles a pattern at import

    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def expand(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(values)
