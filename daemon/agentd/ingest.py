"""Preparing an event for the store: decode -> id -> redact -> normalize -> content level.

`prepare_event()` is pure work (no database): the daemon runs it on its event loop, a direct import
in worker processes. What comes out, a PreparedEvent, is what db/store.py writes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from agentd.errors import InvalidEvent
from agentd.normalizers import normalize
from agentd.pricing import price_rows
from agentd.privacy import apply_to_rows, strip_payload
from agentd.protocol import check_depth, decode_json
from agentd.redact import Redactor, count_markers
from agentd.rows import TIMED_COLUMNS, TYPED_TABLES, Context, Row

__all__ = ["PreparedEvent", "Privacy", "InvalidEvent", "prepare_event", "event_id", "now_ms"]

_any_decoder = msgspec.json.Decoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_encoder = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


def event_id(source: str, payload: Any, received_at: int | None = None) -> str:
    """Deterministic id of a raw event: the same event replayed (spool, retry) maps to one row.

    Hashes a canonical encoding (sorted keys), so whitespace or key order from the sender do not
    matter, and the time the shim saw the event, which a replay keeps (the spool stores it): two
    identical callbacks at different moments (OpenCode's chat.params on every model call) stay two
    events. Without `received_at` the id is the payload's alone: the daemon's clock must not make
    a replay a new event (docs/protocol.md: "a replay is stored once").
    """
    digest = hashlib.blake2b(source.encode(), digest_size=16)
    digest.update(b"\0")
    digest.update(_sorted_encoder.encode(payload))
    if received_at is not None:
        digest.update(b"\0%d" % received_at)
    return digest.hexdigest()


@dataclass(slots=True)
class PreparedEvent:
    id: str
    source: str
    kind: str
    session_id: str | None
    received_at: int
    payload: str  # the JSON text as sent, redacted and stripped to the content level
    rows: list[Row]
    redactions: int = 0
    # The payload's top-level `transcript_path` as sent, unchecked (a Claude hook event names its
    # transcript: agentd/follow.py checks and follows it); None when it has none.
    transcript_path: Any = None


@dataclass(frozen=True)
class Privacy:
    """What may be stored: secrets redacted (None: redaction off) and the content level."""

    redactor: Redactor | None = None
    content_level: str = "full"


def prepare_event(
    source: str,
    payload_json: bytes,
    received_at: int | None,
    output_limit_bytes: int,
    privacy: Privacy = Privacy(),
) -> PreparedEvent:
    """Decode, identify, redact, normalize and strip one event.

    Raises InvalidEvent (a ValueError) for an empty source, or a payload that is not JSON, not
    UTF-8, not an object, or nested deeper than protocol.MAX_DEPTH.
    """
    if not source:
        raise InvalidEvent("empty source", "$.source")
    try:
        # Before anything recursive (decode, hash, redaction, normalizers, strip_payload).
        check_depth(payload_json)
        original = decode_json(payload_json, _any_decoder)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        # TooDeep included. Invalid UTF-8 is a DecodeError from msgspec 0.23 on, a
        # UnicodeDecodeError before: the same answer either way.
        raise InvalidEvent(str(e), "$.payload") from None
    if not isinstance(original, dict):
        raise InvalidEvent("Expected `object`", "$.payload")
    received = received_at if received_at is not None else now_ms()
    # The id comes from the payload as sent, so a replay dedupes even if the rules changed since;
    # and from the sender's time only, never the daemon's clock.
    ident = event_id(source, original, received_at)
    text = payload_json.decode("utf-8")
    hits = 0
    if privacy.redactor is not None:
        text, hits = privacy.redactor.redact(text)
    payload = decode_json(text.encode(), _any_decoder) if hits else original
    ctx = Context(
        source=source, event_id=ident, received_at=received, output_limit_bytes=output_limit_bytes
    )
    result = normalize(payload, ctx)
    rows = [row for row in result.rows if row.table in TYPED_TABLES and row.values.get("id")]
    if result.session_id:
        # Every session an event mentions exists as a row, however little is known of it yet.
        rows.insert(
            0,
            Row(
                "sessions",
                {"id": result.session_id, "created_at": received, "updated_at": received},
            ),
        )
    level = privacy.content_level
    apply_to_rows(rows, level)
    for row in rows:
        row.values.setdefault("source", source)
        if row.table == "sessions":
            # Status and outcome follow the event's own time (rows.py).
            for column, at in TIMED_COLUMNS.items():
                if row.values.get(column) is not None and row.values.get(at) is None:
                    row.values[at] = received
        # Hits a stored row carries (merged with `max`: Pre and Post of a call see the same input).
        row.values["redactions"] = sum(count_markers(v) for v in row.values.values()) if hits else 0
    price_rows(rows)  # each message's cost by its own time (pricing/, docs/usage.md)
    if level != "full":
        text = _encoder.encode(strip_payload(payload, level)).decode()
    return PreparedEvent(
        id=ident,
        source=source,
        kind=result.kind,
        session_id=result.session_id,
        received_at=received,
        payload=text,
        rows=rows,
        redactions=hits,
        transcript_path=original.get("transcript_path"),
    )
