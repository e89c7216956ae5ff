"""output.py: the one place every --format is written, and the one byte-size formatter."""

import csv
import io
import json

import click
import pytest
from click.testing import CliRunner

from agentd.output import FORMATS, Rows, emit, human_bytes, output_options, write


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
