"""The one character policy for text that reaches generated files (Envoy, Kubernetes YAML, etcd).

meshc writes JSON, which is read as YAML by Envoy, kubectl and kustomize. Some characters pass a
JSON serializer untouched but are not allowed, or change meaning, in YAML: DEL and the C1
controls (YAML rejects them: "unacceptable character #x007f"), U+0085, U+2028 and U+2029 (line
breaks to a YAML 1.1 reader such as PyYAML), noncharacters such as U+FFFF, and lone surrogates
(which no UTF-8 file can hold). Envoy refuses control characters in the strings it validates as
header values (paths, header names and values).

So: the loader refuses such characters wherever a spec string holds them (`UNSAFE`, E111), and
the serializer escapes them as a second line of defence (`escape_json`), so a file meshc writes
reads the same as JSON and as YAML even if a string slipped through.
"""

from __future__ import annotations

import functools
import re

# C0 controls other than TAB and LF (free text such as an env value may hold those two), DEL,
# C1 (U+0085 included), the Unicode line and paragraph separators, surrogates, and noncharacters.
_UNSAFE_CLASS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
)


@functools.cache
def _unsafe(token: bool) -> re.Pattern[str]:
    """The policy as a pattern; for a single-line token (names, images, paths, addresses), no
    whitespace or control at all. Compiled when first needed: the class spans every plane's
    noncharacters (a few ms to compile), and most specs never need it (first_unsafe's fast path,
    may_hold_unsafe)."""
    return re.compile(f"[{_UNSAFE_CLASS}\t\n\\s]" if token else f"[{_UNSAFE_CLASS}]")

# The same characters as UTF-8 bytes, to find them cheaply in serialized output: DEL; C1 (C2 80-9F);
# U+2028/2029 (E2 80 A8/A9); U+FDD0-FDEF (EF B7 90-AF); U+FFFE/FFFF (EF BF BE/BF). Control
# characters below 0x20 never reach the output raw: JSON escapes them. Noncharacters outside the
# BMP (U+1FFFE...) are left raw: YAML accepts them, and YAML readers do not join the surrogate
# pair a JSON escape of them would need.
_UNSAFE_UTF8 = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]|\xef\xb7[\x90-\xaf]|\xef\xbf[\xbe\xbf]")


# What YAML lets through raw (it refuses other control characters itself): U+0085, U+2028/2029,
# U+FDD0-FDEF and the noncharacters beyond the BMP, as UTF-8.
_RAW_UNSAFE_UTF8 = re.compile(rb"\xc2\x85|\xe2\x80[\xa8\xa9]|\xef\xb7[\x90-\xaf]|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]")


def first_unsafe(text: str, *, token: bool = False) -> int | None:
    """The index of the first character the policy refuses, or None."""
    if not token and text.isascii() and text.isprintable():   # the usual case, at memory speed
        return None
    found = _unsafe(token).search(text)
    return found.start() if found else None


def may_hold_unsafe(yaml_text: str, data: bytes) -> bool:
    """Can a YAML file with this text (and these UTF-8 bytes) give a scalar the policy refuses?
    Only through an escape in a quoted scalar, or through one of the few such characters YAML
    allows raw; most files have neither, and then no scalar needs a look."""
    if "\\" in yaml_text:
        return True
    return not data.isascii() and _RAW_UNSAFE_UTF8.search(data) is not None


def describe(char: str) -> str:
    """`U+007F (DELETE)`: how a diagnostic names a character a reader cannot see."""
    import unicodedata  # only for a diagnostic about such a character

    name = unicodedata.name(char, "")
    if not name:
        category = unicodedata.category(char)
        name = {"Cc": "a control character", "Cs": "a surrogate", "Cn": "a noncharacter"}.get(category, category)
    return f"U+{ord(char):04X} ({name})"


def _json_escape(found: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(found.group().decode("utf-8"))


def escape_json(data: bytes) -> bytes:
    """Serialized JSON with every character YAML would refuse or read differently written as a
    \\u escape. They can only occur inside JSON strings, where the escape means the same."""
    if data.isascii() and b"\x7f" not in data:  # the usual case, decided at memory speed
        return data
    if _UNSAFE_UTF8.search(data) is None:
        return data
    return _UNSAFE_UTF8.sub(_json_escape, data)
