"""meshc.render: a string that carries its JSON encoding renders, hashes and compacts to the same
bytes as the plain string, wherever it sits in a document."""

from __future__ import annotations

import enum
from typing import Any

import orjson
import pytest

from meshc import render
from meshc.text import escape_json

TEXTS = [
    "",
    "plain",
    '{\n  "quoted": "value",\n  "back\\\\slash": true\n}\n',
    "tab\tnul\x00 del\x7f line\u2028sep nbsp\u00a0 snowman \u2603 emoji \U0001f600 nonchar \uffff",
]


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Labels(dict[str, Any]):
    pass


def documents(text: str, wrap: Any) -> list[Any]:
    return [
        {"data": {"b.yaml": wrap(text), "a.yaml": wrap(text + "x")}, "kind": "ConfigMap"},
        [wrap(text), 1, None, {"nested": [wrap(text)]}],
        {"enum": Colour.RED, "level": Level.HIGH, "labels": Labels(z=1, a=wrap(text))},
    ]


@pytest.mark.parametrize("text", TEXTS)
def test_encoded_text_renders_as_the_plain_string(text: str) -> None:
    encoded, plain = documents(text, render.encoded_text), documents(text, str)
    assert encoded == plain
    assert render.file(encoded) == render.file(plain)
    for enc, pla in zip(encoded, plain, strict=True):
        assert render.document(enc) == render.document(pla)
        assert render.compact(enc) == render.compact(pla)
        assert render.content_hash(enc) == render.content_hash(pla)
    # and the plain string's bytes are what orjson writes by itself
    assert render.document(plain[1]) == escape_json(orjson.dumps(plain[1], option=orjson.OPT_INDENT_2)) + b"\n"


def test_an_encoded_text_is_escaped_once_from_its_stored_encoding() -> None:
    text = render.encoded_text('say "hi"')
    assert isinstance(text, render.EncodedText) and text == 'say "hi"'
    assert text.json == b'"say \\"hi\\""'
    text.json = b'"stored"'     # what is written is the stored encoding, not a new one
    assert render.compact({"k": text}) == '{"k":"stored"}'


def test_values_json_cannot_write_are_still_refused() -> None:
    with pytest.raises(TypeError):
        render.document({"k": object()})
