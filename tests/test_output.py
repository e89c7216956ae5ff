"""output.py: the one place every --format is written, and the one byte-size formatter."""

import csv
import io
import json

import click
import pytest
from click.testing import CliRunner

from agentd.output import FORMATS, Rows, emit, human_bytes, output_options, visible, write


def test_human_bytes_binary_units():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(38_200_000) == "36.4 MiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
    assert human_bytes(5 * 2**40) == "5120.0 GiB"


DOCUMENT = {"running": False, "deleted": {"tools": 3, "sessions": 1}, "before": 17, "none": None}


def emitted(data, fmt, **kwargs) -> str:
    out = io.StringIO()
    emit(data, fmt, lambda d: "as text", out=out, **kwargs)
    return out.getvalue()


def test_a_document_in_every_format():
    assert emitted(DOCUMENT, "table") == "as text\n"
    assert emitted(DOCUMENT, "json") == json.dumps(DOCUMENT, indent=2, sort_keys=True) + "\n"
    assert json.loads(emitted(DOCUMENT, "ndjson")) == DOCUMENT
    assert emitted(DOCUMENT, "ndjson").count("\n") == 1
    (row,) = csv.DictReader(io.StringIO(emitted(DOCUMENT, "csv")))
    assert row == {
        "before": "17",
        "deleted.sessions": "1",
        "deleted.tools": "3",
        "none": "",
        "running": "false",
    }
    assert list(json.loads(emitted(DOCUMENT, "json", sort_keys=False))) == list(DOCUMENT)


def test_rows_in_every_format():
    def rows():
        return Rows(["name", "n"], [[("a", 1), ("b", None)], [("c", 3)]], ["text", "int"])

    assert emitted(rows(), "table") == "as text\n"  # the command's own text, when it has one
    out = io.StringIO()
    assert emit(rows(), "table", out=out) == 3
    assert out.getvalue().splitlines() == ["name  n", "----  -", "a     1", "b", "c     3"]
    assert json.loads(emitted(rows(), "json")) == [
        {"name": "a", "n": 1},
        {"name": "b", "n": None},
        {"name": "c", "n": 3},
    ]
    assert emitted(rows(), "ndjson").splitlines()[1] == '{"name":"b","n":null}'
    assert emitted(rows(), "csv") == "name,n\na,1\nb,\nc,3\n"
    empty = io.StringIO()
    assert write(empty, "json", ["x"], []) == 0 and empty.getvalue() == "[]\n"


@click.command()
@output_options
def command(fmt: str) -> None:
    """A command with the shared options."""
    click.echo(fmt)


@pytest.mark.parametrize(
    ("args", "fmt"),
    [
        ([], "table"),
        (["--json"], "json"),
        (["--format", "csv"], "csv"),
        (["--json", "--format", "json"], "json"),
    ],  # fmt: skip
)
def test_output_options_give_one_format(args, fmt):
    result = CliRunner().invoke(command, args)
    assert (result.exit_code, result.output) == (0, fmt + "\n")


def test_output_options_refuse_json_with_another_format():
    result = CliRunner().invoke(command, ["--json", "--format", "csv"])
    assert result.exit_code == 2 and "--json means --format json" in result.output


def test_every_format_is_offered():
    result = CliRunner().invoke(command, ["--help"])
    assert f"[{'|'.join(FORMATS)}]" in result.output


HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J\x9b1m\x00\u202egnp.exe\u2066y\u200f\r\nz\tw"


def test_a_table_shows_control_characters_as_escapes():
    """Captured text in a table cannot drive the terminal (ESC, BEL, CSI, NUL) nor reorder what
    is shown (the bidi controls): each is written as an escape; line breaks become spaces."""
    out = io.StringIO()
    write(out, "table", ["tool", "n"], [[(HOSTILE, 1)]], ["text", "int"])
    cell = "x\\x1b]0;PWNED\\x07\\x1b[2J\\x9b1m\\x00\\u202egnp.exe\\u2066y\\u200f  z w"
    assert out.getvalue().splitlines()[2] == f"{cell[:59]}…  1"  # cut at 60, as any long cell
    assert visible(HOSTILE) == cell
    assert all(c.isprintable() for c in out.getvalue() if c != "\n")
    # Text that needs nothing is left as it is: accents, emoji with joiners, CJK.
    out = io.StringIO()
    write(out, "table", ["t"], [[("café 👩\u200d💻 日本",)]], ["text"])
    assert out.getvalue().splitlines()[2] == "café 👩\u200d💻 日本"


def test_a_documents_text_keeps_its_lines_and_escapes_the_rest():
    out = io.StringIO()
    emit({"model": HOSTILE}, "table", lambda d: f"model:\n  {d['model']}", out=out)
    assert out.getvalue() == (
        "model:\n  x\\x1b]0;PWNED\\x07\\x1b[2J\\x9b1m\\x00\\u202egnp.exe\\u2066y\\u200f\\x0d\nz\tw\n"
    )


def test_the_machine_formats_carry_control_characters_exactly():
    """json and ndjson escape them by JSON's rules, csv writes them as they are: data for
    programs, which get back exactly what was stored."""
    for fmt in ("json", "ndjson"):
        out = io.StringIO()
        write(out, fmt, ["tool"], [[(HOSTILE,)]])
        assert "\x1b" not in out.getvalue() and "\\u001b" in out.getvalue()
        text = out.getvalue()
        assert (json.loads(text)[0] if fmt == "json" else json.loads(text))["tool"] == HOSTILE
    out = io.StringIO()
    write(out, "csv", ["tool"], [[(HOSTILE,)]])
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["tool"], [HOSTILE]]
    out = io.StringIO()
    emit({"model": HOSTILE}, "csv", out=out)
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["model"], [HOSTILE]]
