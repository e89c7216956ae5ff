"""Importers: backfill and reconcile from what the agents keep on disk (docs/import.md).

One module per agent (agents.py names it): `claude` reads Claude Code transcripts (JSONL) into
source `claude-transcript` events, `opencode` OpenCode's SQLite database into source `opencode`
events of the plugin's own shapes.

Both go the way of live capture: `ingest` events, normalized by the daemon's normalizers, stored
by the one writer (writer.py), so an import after live capture lands on the same rows. Both are
incremental (state.py): a re-run over unchanged data costs a stat per file.

`run_import()` is the whole command: lock, state, writer, progress, summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agentd import pidfile
from agentd.agents import AGENTS
from agentd.config import Config
from agentd.db import readonly
from agentd.db.access import WriterBusy
from agentd.errors import ImportFailed
from agentd.importers.state import ImportState
from agentd.importers.writer import (
    DaemonTooOld,
    Pipeline,
    SinkLost,
    open_sink,
)
from agentd.output import human_bytes
from agentd.rows import TYPED_TABLES

__all__ = ["Summary", "Progress", "ImportFailed", "run_import"]

_TABLES = (*TYPED_TABLES, "events")  # counted before and after an import


@dataclass
class Summary:
    source: str
    paths: list[str] = field(default_factory=list)
    mode: str = ""  # daemon | direct
    files: int = 0  # transcripts (databases) found
    files_unchanged: int = 0
    files_read: int = 0
    files_vanished: int = 0
    files_unreadable: int = 0
    bytes_read: int = 0
    records: int = 0  # lines (rows) looked at
    ingested: Counter[str] = field(default_factory=Counter)  # events sent, by record kind
    skipped: Counter[str] = field(default_factory=Counter)  # records not sent, by reason
    repaired: Counter[str] = field(default_factory=Counter)  # values repaired and sent, by reason
    events_sent: int = 0
    events_stored: int = 0  # acknowledged
    events_new: int | None = None  # stored for the first time (direct writes only)
    events_refused: int = 0
    events_too_large: int = 0
    refused_reasons: dict[str, int] = field(default_factory=dict)
    rows_added: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def repair(self, reason: str) -> None:
        self.repaired[reason] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "paths": self.paths,
            "mode": self.mode,
            "files": {
                "found": self.files,
                "unchanged": self.files_unchanged,
                "read": self.files_read,
                "vanished": self.files_vanished,
                "unreadable": self.files_unreadable,
            },
            "bytes_read": self.bytes_read,
            "records": self.records,
            "ingested": dict(sorted(self.ingested.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "repaired": dict(sorted(self.repaired.items())),
            "events": {
                "sent": self.events_sent,
                "stored": self.events_stored,
                "new": self.events_new,
                "refused": self.events_refused,
                "too_large": self.events_too_large,
                "refused_reasons": self.refused_reasons,
            },
            "rows_added": self.rows_added,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_text(self) -> str:
        what = AGENTS[self.source].role("importer").WHAT
        via = {"daemon": "through the daemon", "direct": "directly (no daemon running)"}.get(
            self.mode, ""
        )
        mb = self.bytes_read / 1e6
        rate = f", {mb / self.elapsed_s:.1f} MB/s" if self.elapsed_s > 0 and mb >= 1 else ""
        lines = [
            f"Imported {what} from {', '.join(self.paths) or '-'} {via}".rstrip(),
            f"  files:   {self.files} found, {self.files_unchanged} unchanged, "
            f"{self.files_read} read"
            + (f", {self.files_vanished} vanished" if self.files_vanished else "")
            + (f", {self.files_unreadable} unreadable" if self.files_unreadable else ""),
            f"  read:    {human_bytes(self.bytes_read)}, {self.records} records in "
            f"{self.elapsed_s:.2f} s{rate}",
            f"  events:  {self.events_sent} sent, {self.events_stored} stored"
            + (f" ({self.events_new} new)" if self.events_new is not None else "")
            + (f", {self.events_refused} refused" if self.events_refused else "")
            + (
                f", {self.events_too_large} too large to send through the daemon (kept for an"
                " import without it: `agentd stop`, then import again)"
                if self.events_too_large
                else ""
            ),
        ]
        if self.rows_added:
            added = ", ".join(f"{t} +{n}" for t, n in self.rows_added.items() if t != "events")
            lines.append(f"  rows:    {added}")
        if self.skipped:
            top = ", ".join(f"{k} {v}" for k, v in self.skipped.most_common())
            lines.append(f"  skipped: {top}")
        if self.repaired:
            fixed = ", ".join(f"{k} {v}" for k, v in self.repaired.most_common())
            lines.append(f"  repaired: {fixed}")
        for reason, count in self.refused_reasons.items():
            lines.append(f"  refused: {count} x {reason}")
        lines += [f"  error:   {e}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more errors")
        return "\n".join(lines)


class Progress:
    """One status line on a terminal (stderr), redrawn at most 10 times a second."""

    def __init__(self, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.enabled = enabled
        self.stream = stream
        self.files = self.files_done = 0
        self.bytes = self.bytes_done = 0
        self.pipeline: Pipeline | None = None
        self._drawn = 0.0
        self._shown = False

    def start(self, files: int, total_bytes: int) -> None:
        self.files, self.bytes = files, total_bytes
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.bytes_done += n
        self._draw()

    def file_done(self) -> None:
        self.files_done += 1
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        stored = self.pipeline.stored if self.pipeline else 0
        of_bytes = f"/{human_bytes(self.bytes)}" if self.bytes else ""
        self.stream.write(
            f"\r\x1b[K{self.files_done}/{self.files} files, {human_bytes(self.bytes_done)}{of_bytes}, "
            f"{stored} events stored"
        )
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self.enabled and self._shown:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def _import_lock(state_dir: Path) -> Iterator[None]:
    """One import at a time per state dir (they share the offsets file)."""
    try:
        with pidfile.held(state_dir / "import.lock"):
            yield
    except pidfile.Locked as e:
        raise ImportFailed(
            f"another `agentd import` is running (pid {e.pid or '?'}); wait for it to finish"
        ) from None


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """An import allocates many short-lived objects and makes few cycles: collect less often."""
    saved = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def table_counts(db_path: Path) -> dict[str, int]:
    """Rows per table (read-only; zeros when there is no database yet)."""
    if not db_path.exists():
        return dict.fromkeys(_TABLES, 0)
    try:
        conn = readonly.connect(db_path)
    except sqlite3.Error:
        return {}
    try:
        counts = {}
        for table in _TABLES:
            try:
                counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            except sqlite3.Error:
                counts[table] = 0
        return counts
    finally:
        conn.close()


async def _run(
    config: Config,
    agent: str,
    paths: list[Path],
    summary: Summary,
    progress: Progress,
    wait_s: float,
) -> None:
    state = ImportState.load(config.state_dir)
    sink = open_sink(config, wait_s)
    summary.mode = sink.mode
    await sink.open()
    pipeline = Pipeline(sink)
    progress.pipeline = pipeline
    saver = asyncio.create_task(_save_periodically(state))
    try:
        await AGENTS[agent].role("importer").run(paths, pipeline, state, summary, progress)
    except SinkLost as e:
        pipeline.abandon()
        raise ImportFailed(
            f"{e}: the import stopped after {pipeline.stored} events; run it again to finish "
            "(what was stored is not sent twice)"
        ) from None
    finally:
        saver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver
        summary.events_sent = pipeline.sent
        summary.events_stored = pipeline.stored
        summary.events_refused = pipeline.rejected
        summary.events_too_large = pipeline.too_large
        summary.refused_reasons = dict(pipeline.reasons)
        summary.events_new = sink.new_events()
        await sink.close()
        state.save()


async def _save_periodically(state: ImportState, every_s: float = 5.0) -> None:
    # In this thread (a small file): the direct writer forks its workers while this process has
    # no other thread.
    while True:
        await asyncio.sleep(every_s)
        state.save()


def run_import(
    config: Config,
    agent: str,
    paths: list[Path],
    *,
    progress: Progress | None = None,
    wait_s: float = 30.0,
) -> Summary:
    """Import `agent`'s history (agents.py) from `paths`; ImportFailed when it cannot run."""
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}")
    summary = Summary(source=agent, paths=[str(p) for p in paths])
    progress = progress or Progress(False)
    started = time.monotonic()
    with _import_lock(config.state_dir), _fewer_collections():
        before = table_counts(config.db_path)
        try:
            asyncio.run(_run(config, agent, paths, summary, progress, wait_s))
        except (WriterBusy, DaemonTooOld) as e:
            raise ImportFailed(str(e)) from None
        except sqlite3.Error as e:
            raise ImportFailed(f"cannot write {config.db_path}: {e}") from None
        except OSError as e:
            raise ImportFailed(f"import failed: {e}") from None
        finally:
            progress.finish()
            summary.elapsed_s = time.monotonic() - started
        after = table_counts(config.db_path)
    summary.rows_added = {t: after.get(t, 0) - before.get(t, 0) for t in _TABLES if t in after}
    return summary
