"""The wire: JSON-RPC 2.0 envelopes, one message (or batch) per `\\n`-terminated line.

Strict about our own envelope (unknown fields are an error), tolerant of the agents' payloads: a
payload is kept as `msgspec.Raw`, the exact bytes the client sent, until a normalizer reads it.
No sockets here; service/transport.py does the transport.
"""

from __future__ import annotations

import itertools
import operator
import re
from typing import Annotated, Any

import msgspec

from agentd.errors import InvalidParams, InvalidRequest, ParseError, WireError

__all__ = [
    "Request",
    "IngestParams",
    "IngestRequest",
    "decode_line",
    "decode_ingest_batch",
    "decode_params",
    "encode_response",
    "encode_error",
    "encode_replies",
    "response",
    "error_response",
    "encode_request",
    "decode_json",
    "replace_lone_surrogates",
    "MAX_DEPTH",
    "TooDeep",
    "check_depth",
]

# The deepest nesting of arrays and objects a payload may have. Decoding, hashing, redaction and
# the normalizers all recurse, on Python's stack (1000 frames, two per level in some walks): far
# below that, every step is safe; far above anything an agent sends (tens of levels).
MAX_DEPTH = 256

RequestId = int | str | None
# A time in epoch ms, stored as an SQLite INTEGER: a value past int64 is bad params, not a failed
# commit answered as an internal error.
EpochMs = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Request(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    jsonrpc: str
    method: str
    params: msgspec.Raw = msgspec.Raw(b"null")
    # UNSET (absent) marks a notification; an explicit null id is a request whose answer has id null.
    id: RequestId | msgspec.UnsetType = msgspec.UNSET

    @property
    def is_notification(self) -> bool:
        return self.id is msgspec.UNSET


class IngestParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    source: str
    payload: msgspec.Raw
    received_at: EpochMs | None = None


class IngestRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A Request for `ingest` with its params decoded in the same pass (decode_ingest_batch)."""

    jsonrpc: str
    method: str
    params: IngestParams
    id: RequestId | msgspec.UnsetType = msgspec.UNSET

    @property
    def is_notification(self) -> bool:
        return self.id is msgspec.UNSET


class StatuslineParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`ingest`'s params, and where "today" starts for the statusline's figures."""

    source: str
    payload: msgspec.Raw
    day_start: EpochMs  # the client's local midnight
    received_at: EpochMs | None = None


class PruneParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    before: EpochMs  # what was last seen before this goes


class RepriceParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which stored messages to price again (each left out: all)."""

    since: EpochMs | None = None  # created at or after this
    source: str | None = None
    model: str | None = None


class NoParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


# Params whose fields are each optional: a request may leave them out (null), as `{}`.
_ALL_OPTIONAL = (RepriceParams,)


# A \uD800-\uDFFF escape, with the run of backslashes before it: it is an escape only when that run
# is odd (an even run is escaped backslashes followed by the letters "uD8..").
_SURROGATE_ESCAPE = re.compile(
    rb"(\\+)u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|(\\+)u([dD][c-fC-F][0-9a-fA-F]{2})"
)


def _replace_surrogate(match: re.Match[bytes]) -> bytes:
    backslashes = match[1] or match[4]
    if len(backslashes) % 2 == 0 or match[3]:
        return match[0]  # not an escape, or a valid high+low pair
    return backslashes[:-1] + b"\\ufffd"


def replace_lone_surrogates(data: bytes) -> bytes:
    """Lone UTF-16 surrogate escapes become U+FFFD.

    JavaScript's JSON.stringify writes them (a string cut inside an emoji, say), both agents are
    JavaScript, and msgspec refuses them. Valid pairs are kept.
    """
    return _SURROGATE_ESCAPE.sub(_replace_surrogate, data)


class TooDeep(msgspec.DecodeError):
    """JSON nested deeper than MAX_DEPTH: refused as bad input, never a RecursionError."""

    def __init__(self, depth: int | None = None) -> None:
        found = f" ({depth} levels)" if depth is not None else ""
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels{found}, agentd's limit")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Opening brackets count 2, closing 0: after k brackets the sum is 2*opened, and the depth
# opened - closed = sum - k; so the deepest point is max(sum_k - k), computed in C, not a loop.
_BRACKET_WEIGHT = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    weights = brackets.translate(_BRACKET_WEIGHT)
    return max(map(operator.sub, itertools.accumulate(weights), itertools.count(1)))


def check_depth(data: bytes) -> None:
    """TooDeep if `data` nests deeper than MAX_DEPTH. Costs two counts for nearly every payload:
    fewer brackets than the limit cannot nest deeper than it."""
    if data.count(b"{") + data.count(b"[") <= MAX_DEPTH:
        return
    depth = json_depth(data)
    if depth > MAX_DEPTH:
        raise TooDeep(depth)


def decode_json(data: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """decoder.decode(data), retried once with lone surrogate escapes replaced (see above).

    Nesting too deep for the decoder's recursion is TooDeep (a msgspec.DecodeError), like any
    other bad JSON, never a RecursionError that would escape every ValueError handler.
    """
    try:
        return decoder.decode(data)
    except RecursionError:
        raise TooDeep() from None
    except msgspec.DecodeError:
        repaired = replace_lone_surrogates(data)
        if repaired == data:
            raise
        try:
            return decoder.decode(repaired)
        except RecursionError:
            raise TooDeep() from None


_request_decoder = msgspec.json.Decoder(Request)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_ingest_batch_decoder = msgspec.json.Decoder(list[IngestRequest])
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Invalid(msgspec.Struct, frozen=True):
    """A message that could not become a Request: answer `error` with `id`."""

    error: WireError
    id: RequestId = None


def _decode_one(raw: bytes) -> Request | Invalid:
    try:
        request = decode_json(raw, _request_decoder)
    except msgspec.ValidationError as e:
        return Invalid(InvalidRequest(f"Invalid Request: {e}"), _salvage_id(raw))
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        return Invalid(ParseError(f"Parse error: {e}"))
    if request.jsonrpc != "2.0":
        return Invalid(InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"'), _id_of(request))
    return request


def _id_of(request: Request) -> RequestId:
    return None if request.id is msgspec.UNSET else request.id


def _salvage_id(raw: bytes) -> RequestId:
    """The id of an invalid request, if it has a usable one, so the client can match the error."""
    try:
        value = decode_json(raw, _any_decoder)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, int | str) and not isinstance(ident, bool) else None


def decode_line(line: bytes) -> tuple[bool, list[Request | Invalid]]:
    """Decode one line into (is_batch, messages). Never raises."""
    stripped = line.strip()
    if stripped.startswith(b"["):
        try:
            items = decode_json(stripped, _batch_decoder)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            return False, [Invalid(ParseError(f"Parse error: {e}"))]
        if not items:
            return False, [Invalid(InvalidRequest("Invalid Request: empty batch"))]
        return True, [_decode_one(bytes(item)) for item in items]
    if stripped.startswith(b"{"):
        return False, [_decode_one(stripped)]
    try:
        decode_json(stripped, _any_decoder)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        return False, [Invalid(ParseError(f"Parse error: {e}"))]
    return False, [Invalid(InvalidRequest("Invalid Request: expected an object or a batch array"))]


def decode_ingest_batch(line: bytes) -> list[IngestRequest] | None:
    """A batch of nothing but valid `ingest` requests (what clients that batch send), decoded in
    one pass: envelopes and params together, instead of each item's bytes decoded as a Request and
    its params decoded again. None for any other line: decode_line() then answers it item by item,
    with each bad item's own error. Where this succeeds, decode_line() and decode_params() would
    have given the same requests and params: the same decoder, the same structs, the same bytes."""
    stripped = line.strip()
    if not stripped.startswith(b"["):
        return None
    try:
        requests = _ingest_batch_decoder.decode(stripped)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None  # ValidationError included: some item is not a valid ingest
    if not requests:
        return None
    for request in requests:
        if request.jsonrpc != "2.0" or request.method != "ingest":
            return None
    return requests


def decode_params(params: msgspec.Raw, params_type: type[Any]) -> Any:
    """Decode a method's params into its Struct; InvalidParams (with the `$.path`) if they don't fit."""
    raw = bytes(params)
    if params_type is NoParams and raw in (b"null", b"{}", b"[]"):
        return NoParams()
    if raw == b"null" and params_type in _ALL_OPTIONAL:  # params left out: each field's default
        return params_type()
    try:
        return msgspec.json.decode(raw, type=params_type)
    except RecursionError:
        raise InvalidParams(f"Invalid params: {TooDeep()}", data={"path": "$"}) from None
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as e:
        raise InvalidParams.of(e) from None


def response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_response(request_id: RequestId, error: WireError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_error()}


def encode_response(request_id: RequestId, result: Any) -> bytes:
    return _encoder.encode(response(request_id, result))


def encode_error(request_id: RequestId, error: WireError) -> bytes:
    return _encoder.encode(error_response(request_id, error))


def encode_replies(replies: list[dict[str, Any]]) -> bytes:
    """A batch's answer, one array (response() / error_response() items), in one encoding: the
    same bytes as each encoded alone and joined."""
    return _encoder.encode(replies)


def encode_request(method: str, params: Any = None, request_id: RequestId = 1) -> bytes:
    """One request line, `\\n`-terminated (what clients send)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return _encoder.encode(message) + b"\n"
