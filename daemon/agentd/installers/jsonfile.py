"""A JSON settings file read and written back exactly: what the user wrote stays what they wrote.

`loads` is strict where Python's json is lenient (invalid UTF-8, duplicate keys, NaN and
Infinity are refused: rewriting them would change or drop the user's values, or write a file
Claude Code cannot read) and keeps every number's text (`1e400` and `1.0000000000000001` would
otherwise come back as `Infinity` and `1.0`). `dumps` writes those numbers as they were read.
Errors are ValueError with one line that says where.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads", "dumps"]


class _Int(int):
    """An integer that remembers its text (`-0`, or more digits than Python converts)."""

    text: str

    def __new__(cls, text: str) -> _Int:
        try:
            value = int(text)
        except ValueError:  # over sys.get_int_max_str_digits: compares as 0, written as read
            value = 0
        number = super().__new__(cls, value)
        number.text = text
        return number


class _Float(float):
    """A number with a fraction or exponent that remembers its text (a double may not hold it)."""

    text: str

    def __new__(cls, text: str) -> _Float:
        number = super().__new__(cls, float(text))
        number.text = text
        return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {json.dumps(key, ensure_ascii=False)} appears twice")
        result[key] = value
    return result


def loads(raw: bytes) -> Any:
    """The JSON document in `raw`, strictly (see the module's docstring)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not valid UTF-8 (byte {e.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_Int,
            parse_float=_Float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (`"\ud800"` in the file): keep it escaped
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)  # non-ASCII stays as written, not \uXXXX


def _encode(value: Any, indent: str, out: list[str]) -> None:
    """json.dumps(indent=2)'s layout, with numbers as read."""
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = indent + "  "
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + "\n" + inner + _string(key) + ": ")
            _encode(item, inner, out)
        out.append("\n" + indent + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        inner = indent + "  "
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + "\n" + inner)
            _encode(item, inner, out)
        out.append("\n" + indent + "]")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, _Int | _Float):
        out.append(value.text)
    elif value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float) and math.isfinite(value):
        out.append(repr(value))
    else:
        raise TypeError(f"cannot write {value!r} as JSON")


def dumps(value: Any) -> bytes:
    """`value` as a UTF-8 JSON document, indented by two spaces, ending in a newline."""
    out: list[str] = []
    _encode(value, "", out)
    return ("".join(out) + "\n").encode("utf-8")
