"""Every `--format` of every command: one place that writes rows and documents, and sizes.

- Rows (a list command: `query`) stream in batches to table, json, ndjson or csv; the table
  formats cells by how their column displays (time, duration, cost, pct, path, int, text).
- A document (one object: `status`, `prune`, `vacuum`, an import summary) is text for `table`
  (the command's own renderer), one JSON object for `json` (indented, what `--json` printed),
  one line for `ndjson`, and a header and one row for `csv` (nested keys joined with ".").
- `output_options` gives a command `--format` and `--json` (= `--format json`, kept for
  scripts); the command receives one `fmt` argument.
- `human_bytes` is the one byte-size formatter (binary units, as the docs write sizes).

No click at import time (only `output_options` needs it): importers and doctor import this
module for `human_bytes`. And nothing a format alone needs (json, csv, msgspec, base64): each
writer imports its own, so `agentd query` prints a table without loading the JSON encoders.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar, overload

__all__ = [
    "FORMATS",
    "Rows",
    "emit",
    "human_bytes",
    "output_options",
    "stream",
    "visible",
    "write",
    "write_document",
]

FORMATS = ("table", "json", "ndjson", "csv")
TABLE_SAMPLE_ROWS = 1000  # rows the table reads ahead to size its columns; later rows reuse them
MAX_CELL = 60
NUMERIC_DISPLAYS = {"int", "pct", "cost", "duration"}

Batches = Iterable[list[tuple[Any, ...]]]
F = TypeVar("F", bound=Callable[..., Any])


def human_bytes(n: float) -> str:
    """A size for people: 512 B, 1.5 KiB, 36.4 MiB, 2.0 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # not reached


@dataclass(frozen=True)
class Rows:
    """What a list command emits: column names, rows in batches, and optionally how each column displays."""

    columns: list[str]
    batches: Batches
    displays: list[str | None] | None = None


def stream(fmt: str) -> TextIO:
    """stdout, in UTF-8 for the machine formats whatever the locale."""
    out = sys.stdout
    if fmt != "table" and hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")
    return out


def emit(
    data: Mapping[str, Any] | Rows,
    fmt: str,
    text: Callable[[Any], str] | None = None,
    *,
    out: TextIO | None = None,
    sort_keys: bool = True,
) -> int:
    """Write a document (a mapping) or Rows in `fmt` to stdout (or `out`).

    For `table`, `text(data)` renders it when given (a document needs one); Rows without it
    get the aligned table. Returns the rows written (1 for a document).
    """
    out = stream(fmt) if out is None else out
    if isinstance(data, Rows):
        if fmt == "table" and text is not None:
            out.write(_line(visible(text(data), lines=True)))
            return 1
        return write(out, fmt, data.columns, data.batches, data.displays)
    write_document(out, fmt, data, text, sort_keys=sort_keys)
    return 1


def write_document(
    out: TextIO,
    fmt: str,
    document: Mapping[str, Any],
    text: Callable[[Any], str] | None = None,
    *,
    sort_keys: bool = True,
) -> None:
    if fmt == "table":
        if text is None:
            raise ValueError("a document needs a text renderer for the table format")
        out.write(_line(visible(text(document), lines=True)))
    elif fmt == "json":
        import json

        out.write(json.dumps(document, indent=2, sort_keys=sort_keys) + "\n")
    elif fmt == "ndjson":
        import json

        out.write(json.dumps(document, sort_keys=sort_keys, separators=(",", ":")) + "\n")
    elif fmt == "csv":
        import csv
        import io
        import json

        flat = _flatten(document)
        keys = sorted(flat) if sort_keys else list(flat)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(keys)
        # Booleans and lists as JSON writes them; None as an empty cell (as for rows).
        writer.writerow(
            [json.dumps(flat[k]) if isinstance(flat[k], bool | list) else flat[k] for k in keys]
        )
        out.write(buffer.getvalue())
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@overload
def output_options(fn: F) -> F: ...
@overload
def output_options(*, help: str | None = None) -> Callable[[F], F]: ...
def output_options(fn: F | None = None, *, help: str | None = None) -> Any:
    """Add `--format [table|json|ndjson|csv]` and `--json` (the same as `--format json`) to a
    click command, which receives the one resulting `fmt` keyword argument."""
    import click

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, fmt: str, as_json: bool, **kwargs: Any) -> Any:
            if as_json:
                ctx = click.get_current_context()
                given = ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
                if given and fmt != "json":
                    raise click.UsageError(f"--json means --format json, not --format {fmt}")
                fmt = "json"
            return fn(*args, fmt=fmt, **kwargs)

        wrapper = click.option(
            "--json", "as_json", is_flag=True, help="The same as --format json (for scripts)."
        )(wrapper)
        wrapper = click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default="table",
            show_default=True,
            help=help or "Output format: table is for people, the others for scripts.",
        )(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate if fn is None else decorate(fn)


# --- rows -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return value


# Each writer makes one string per batch and writes it at once: one system call per batch
# even when stdout is unbuffered (PYTHONUNBUFFERED).


def _write_csv(out: TextIO, columns: list[str], batches: Batches) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for batch in batches:
        if any(isinstance(v, bytes) for row in batch for v in row):
            batch = [tuple(_plain(v) for v in row) for row in batch]
        writer.writerows(batch)
        out.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    out.write(buffer.getvalue())


def _write_ndjson(out: TextIO, columns: list[str], batches: Batches) -> None:
    import msgspec

    encoder = msgspec.json.Encoder()
    for batch in batches:
        objects = [dict(zip(columns, row, strict=True)) for row in batch]
        out.write(encoder.encode_lines(objects).decode())


def _write_json(out: TextIO, columns: list[str], batches: Batches) -> None:
    import msgspec

    encoder = msgspec.json.Encoder()
    first = True
    for batch in batches:
        text = b",\n".join(encoder.encode(dict(zip(columns, row, strict=True))) for row in batch)
        out.write(("[\n" if first else ",\n") + text.decode())
        first = False
    out.write("[]\n" if first else "\n]\n")


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _cell(value: Any, display: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if display == "time":
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(value / 1000))
        if display == "duration":
            return _duration(value)
        if display == "cost":
            return f"{value:.4f}"
        if display == "pct":
            return f"{value:.1f}%"
        return str(value)
    return visible(str(_plain(value)))


# The bidirectional controls (marks, embeddings, overrides, isolates): they reorder what is shown,
# so a name reads as another (`\u202eRTL gnp.exe` reads "exe.png LTR"). The dashboard shows them
# as [U+XXXX] (ui/format.py), tables as escapes.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # a regex character class's body

# What a table must not hand the terminal as it is: the C0 and C1 controls (ESC and CSI start the
# sequences that retitle the window, clear the screen, move the cursor) and the bidi controls. A
# cell or a document for people holds captured text (a cwd, a model, a tool name, an error).
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_CONTROLS}]")


def _cell_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\n\r\t":  # a cell is one line: its line breaks become spaces
        return " "
    return _escaped(char)


def _text_char(match: re.Match[str]) -> str:
    char = match.group()
    return char if char in "\n\t" else _escaped(char)  # a document's text keeps its lines


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, lines: bool = False) -> str:
    """`text` as a table shows it: each control character written as an escape (ESC as `\\x1b`,
    U+202E as `\\u202e`), so that it can neither drive the terminal nor disguise the text; line
    breaks and tabs become spaces, or stay when `lines` (a document's text)."""
    # Every character matched is one str.isprintable() rejects (categories Cc and Cf): the
    # common text costs one scan in C and no regular expression.
    if text.isprintable():
        return text
    return _CONTROL.sub(_text_char if lines else _cell_char, text)


def _fit(text: str, width: int, display: str | None) -> str:
    if len(text) <= width:
        return text
    # Paths keep their end (the file name), everything else its beginning.
    return "…" + text[-(width - 1) :] if display == "path" else text[: width - 1] + "…"


def _write_table(
    out: TextIO, columns: list[str], batches: Batches, displays: list[str | None]
) -> None:
    batches = iter(batches)
    sample: list[tuple[Any, ...]] = []
    for batch in batches:
        sample.extend(batch)
        if len(sample) >= TABLE_SAMPLE_ROWS:
            break
    cells = [[_cell(v, k) for v, k in zip(row, displays, strict=True)] for row in sample]
    widths = [
        min(MAX_CELL, max([len(name)] + [len(r[i]) for r in cells]))
        for i, name in enumerate(columns)
    ]
    right = [
        display in NUMERIC_DISPLAYS
        or (
            display is None
            and any(row[i] is not None for row in sample)
            and all(isinstance(row[i], int | float | None) for row in sample)
        )
        for i, display in enumerate(displays)
    ]

    def line(texts: list[str]) -> str:
        padded = [
            t.rjust(w) if r else _fit(t, w, k).ljust(w)  # numbers overflow, never cut
            for t, w, k, r in zip(texts, widths, displays, right, strict=True)
        ]
        return "  ".join(padded).rstrip() + "\n"

    head = [line(columns), line(["-" * w for w in widths])]
    out.write("".join(head + [line(texts) for texts in cells]))
    for batch in batches:  # the rest, in the widths the sample set
        out.write(
            "".join(
                line([_cell(v, k) for v, k in zip(row, displays, strict=True)]) for row in batch
            )
        )


_WRITERS: dict[str, Callable[[TextIO, list[str], Batches], None]] = {
    "csv": _write_csv,
    "json": _write_json,
    "ndjson": _write_ndjson,
}


def write(
    out: TextIO,
    fmt: str,
    columns: list[str],
    batches: Batches,
    displays: list[str | None] | None = None,
) -> int:
    """Write rows in `fmt` as they come; return how many were written."""
    count = 0

    def counted(source: Batches) -> Iterator[list[tuple[Any, ...]]]:
        nonlocal count
        for batch in source:
            count += len(batch)
            yield batch

    if fmt == "table":
        _write_table(out, columns, counted(batches), displays or [None] * len(columns))
    else:
        _WRITERS[fmt](out, columns, counted(batches))
    return count
