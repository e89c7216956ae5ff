"""The spool: where shims put events the daemon could not take (docs/protocol.md, "Spool").

This module owns the spool both ways: the line format (encode_line for writers, decode_line for
the daemon's drain), the file protocol (write_file, ready_files, read_lines), and the liveness
check of a file's writer.

Format: NDJSON files in `<state dir>/spool/`, one `ingest` params object per line:
`{"source":"claude","received_at":1763712000000,"payload":{...}}`.

Writers never share a file, so lines cannot interleave. A file is named
`<source>-<pid>-<unique>.ndjson`, and is only given that name, by an atomic rename, once its writer
has finished it. While a writer may still append, the name ends in `.ndjson.open`: the daemon leaves
such a file alone while the pid in its name is alive, and drains it (complete lines only) once that
process is gone.

`os` and `time` only at import (agentd's lean `trust` when writing): the hook writes here when
the daemon is down, on an agent's hot path. Only decode_line, which only the daemon calls,
imports more (msgspec, agentd.protocol).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # the idiom that spares importing `typing` at run time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from os import PathLike
    from typing import Any

    StrPath = str | PathLike[str]
    Piece = tuple[list[bytes], list[tuple[int, str]], bytes]

__all__ = [
    "encode_line",
    "wrap_unparsed",
    "decode_line",
    "write_file",
    "ready_files",
    "read_lines",
    "open_regular",
    "read_pieces",
    "NotRegular",
    "backlog",
    "process_exists",
    "READY",
    "OPEN",
]

READY = ".ndjson"
OPEN = ".ndjson.open"


def encode_line(source: str, received_at: int, payload: bytes) -> bytes:
    """One spool line (without its `\\n`): the `ingest` params of an event, `payload` as it came.

    The payload is embedded unchecked (the hook cannot afford a JSON parser); decode_line keeps
    one that is not JSON as text. `source` must be letters, digits and `_`.

    A raw CR or LF cannot stay (the line would end there). In a JSON text it can only be
    whitespace, so a payload that is JSON has them made spaces (the same event); one that is not
    (a raw newline inside a string makes it invalid JSON) is kept as text, exactly: flattening
    it could turn it into a valid event that says something else. Only this rare case parses.
    """
    payload = payload.strip()  # whitespace around a JSON text is nothing (a writer's last \n)
    if b"\n" in payload or b"\r" in payload:
        payload = _without_raw_newlines(payload)
    return b'{"source":"%s","received_at":%d,"payload":%s}' % (
        source.encode(),
        received_at,
        payload,
    )


def wrap_unparsed(data: bytes) -> bytes:
    """Stdin that is not a JSON object, kept as a string inside one."""
    import json

    return json.dumps({"agentd_unparsed_stdin": data.decode("utf-8", "replace")}).encode()


def _without_raw_newlines(payload: bytes) -> bytes:
    import json

    try:
        json.loads(payload)  # strict: a raw control character inside a string is refused
    except ValueError:  # not JSON (or not UTF-8): the text itself, as a JSON string
        return wrap_unparsed(payload)
    except RecursionError:  # nested past Python's limit: kept, flattened (the daemon judges it)
        pass
    return payload.replace(b"\r", b" ").replace(b"\n", b" ")


_decoders: tuple[Any, Any, Any] | None = None  # built on first use: msgspec is the daemon's


def decode_line(line: bytes) -> tuple[str, bytes, int | None]:
    """(source, payload, received_at) of one spool line; the payload is a JSON object's text.

    Any `ingest` params object is read. A line in encode_line's exact format whose payload is not
    a JSON object (stdin that was not JSON) is kept: its payload becomes
    `{"agentd_unparsed_stdin": "<the text>"}`. Raises ValueError for a line that holds no event.
    """
    global _decoders
    import re

    import msgspec

    from agentd.protocol import IngestParams, TooDeep, decode_json

    if _decoders is None:
        _decoders = (
            msgspec.json.Decoder(IngestParams),
            msgspec.json.Decoder(),
            re.compile(
                rb'^\{"source":"([A-Za-z0-9_]+)","received_at":(\d{1,15}),"payload":(.*)\}$', re.S
            ),
        )
    params_decoder, any_decoder, encoded = _decoders
    try:
        params = decode_json(line, params_decoder)
        payload = bytes(params.payload)
        # What the store would refuse: not JSON, not an object, not UTF-8 (all ValueErrors).
        if not isinstance(decode_json(payload, any_decoder), dict):
            raise ValueError("the payload is not a JSON object")
        return params.source, payload, params.received_at
    except TooDeep:
        raise  # JSON after all, just too deep: refused (rejected/), not kept as text
    except ValueError:
        match = encoded.match(line.strip())
        if match is None:
            raise
    text = match[3].decode("utf-8", "replace")
    return match[1].decode(), msgspec.json.encode({"agentd_unparsed_stdin": text}), int(match[2])


def write_file(spool_dir: StrPath, source: str, lines: list[bytes]) -> str:
    """Write complete lines (each ending in `\\n`) as one new spool file, atomically; its path.

    The directory must be ours and private (trust.Untrusted otherwise; made 0700 if missing) and
    the file is made relative to it, O_NOFOLLOW and 0600: nothing planted can redirect the write.
    """
    from agentd import trust

    spool_dir = os.fspath(spool_dir)
    dir_fd = trust.open_private_dir(spool_dir)
    try:
        unique = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
        tmp = f"{source}-{unique}{OPEN}"
        fd = trust.open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
        try:
            data = b"".join(lines)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(fd)
        final = tmp[: -len(OPEN)] + READY
        os.rename(tmp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return os.path.join(spool_dir, final)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts): signal 0 probes it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's process
    return True


def _writer_alive(name: str) -> bool:
    """Whether the writer of `<source>-<pid>-<unique>.ndjson.open` still runs."""
    parts = name.split("-", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return False  # not a name a writer made: nobody will finish it
    return process_exists(int(parts[1]))


def ready_files(spool_dir: StrPath, odd: list[tuple[str, int]] | None = None) -> list[str]:
    """Files the daemon may drain now, oldest first: finished ones, and open ones whose writer died.

    Only regular files (a symlink is not followed): an entry with a spool file's name that is
    anything else (a directory, a FIFO, a link) is left out, and added to `odd` as (path, inode).
    """
    found = []
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        name = entry.name
        if name.endswith(OPEN):
            if _writer_alive(name):
                continue
        elif not name.endswith(READY):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                if odd is not None:
                    odd.append((entry.path, entry.inode()))
                continue
            found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
        except FileNotFoundError:
            continue
    return [path for _, path in sorted(found)]


def backlog(spool_dir: StrPath) -> tuple[int, int]:
    """(files, bytes) waiting in the spool, open files included."""
    files = size = 0
    try:
        for entry in os.scandir(spool_dir):
            if entry.name.endswith((READY, OPEN)):
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue  # never drained (ready_files): not a backlog
                    size += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                files += 1
    except FileNotFoundError:
        pass
    return files, size


class NotRegular(OSError):
    """A spool entry that is not a regular file (a directory, a FIFO, a device, a symlink)."""


def open_regular(path: StrPath) -> int:
    """A read-only descriptor of the regular file at `path`; NotRegular for anything else.

    O_NOFOLLOW: a symlink is refused, never read through; O_NONBLOCK: opening a FIFO does not
    wait for a writer (and fstat then refuses it); FileNotFoundError if it is gone.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == 40:  # ELOOP: a symlink, refused by O_NOFOLLOW
            raise NotRegular(e.errno, "a symbolic link", os.fspath(path)) from None
        if e.errno in (6, 19):  # ENXIO, ENODEV: a socket or a device without a reader
            raise NotRegular(e.errno, "not a regular file", os.fspath(path)) from None
        raise
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegular(21, "not a regular file", os.fspath(path))
    return fd


# A spool file is read this many bytes at a time (whole lines): a big file costs no more memory.
PIECE_BYTES = 64 * 1024 * 1024


def read_pieces(fd: int, piece_bytes: int = PIECE_BYTES) -> Iterator[Piece]:
    """The lines of the open file `fd`, a piece of at most ~`piece_bytes` at a time.

    Each piece is (lines, too_long, torn): its complete lines (blank ones left out); the size and
    blake2b hex digest of each line longer than `piece_bytes` (no writer of ours makes one: read
    through, never held whole); and, in the last piece, the torn last line (no `\n`) or b"".
    """
    import hashlib

    offset = 0
    while True:
        data = os.pread(fd, piece_bytes, offset)
        if len(data) < piece_bytes:  # the end of the file
            end = data.rfind(b"\n") + 1
            yield _split(data[:end]), [], data[end:]
            return
        end = data.rfind(b"\n") + 1
        if end:
            yield _split(data[:end]), [], b""
            offset += end
            continue
        digest, size = hashlib.blake2b(data, digest_size=16), len(data)
        while True:  # a line longer than a piece: its size and digest only
            offset += len(data)
            data = os.pread(fd, piece_bytes, offset)
            newline = data.find(b"\n")
            if newline < 0 and len(data) == piece_bytes:
                digest.update(data)
                size += len(data)
                continue
            if newline < 0:  # the file ends inside it: a torn last line, too long to keep
                digest.update(data)
                yield [], [(size + len(data), digest.hexdigest())], b""
                return
            digest.update(data[:newline])
            yield [], [(size + newline, digest.hexdigest())], b""
            offset += newline + 1
            break


def _split(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line.strip()]


def read_lines(path: StrPath) -> tuple[list[bytes], int]:
    """The complete lines of a regular spool file, and the byte count of a torn last line
    (dropped). NotRegular for anything else."""
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    end = data.rfind(b"\n") + 1
    return _split(data[:end]), len(data) - end
