"""The wire: JSON-RPC 2.0 envelopes, one message (or batch) per `\\n`-terminated line.

Strict about our own envelope (unknown fields are an error), tolerant of the agents' payloads: a
payload is kept as `msgspec.Raw`, the exact bytes the client sent, until a normalizer reads it.
No sockets here; server.py does the transport.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agentd.errors import AgentdError, InvalidParams, InvalidRequest, ParseError

__all__ = [
    "Request",
    "IngestParams",
    "decode_line",
    "decode_params",
    "encode_response",
    "encode_error",
    "encode_request",
]

RequestId = int | str | None


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
    received_at: int | None = None


class NoParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


_request_decoder = msgspec.json.Decoder(Request)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Invalid(msgspec.Struct, frozen=True):
    """A message that could not become a Request: answer `error` with `id`."""

    error: AgentdError
    id: RequestId = None


def _decode_one(raw: bytes) -> Request | Invalid:
    try:
        request = _request_decoder.decode(raw)
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
        value = _any_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, int | str) and not isinstance(ident, bool) else None


def decode_line(line: bytes) -> tuple[bool, list[Request | Invalid]]:
    """Decode one line into (is_batch, messages). Never raises."""
    stripped = line.strip()
    if stripped.startswith(b"["):
        try:
            items = _batch_decoder.decode(stripped)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            return False, [Invalid(ParseError(f"Parse error: {e}"))]
        if not items:
            return False, [Invalid(InvalidRequest("Invalid Request: empty batch"))]
        return True, [_decode_one(bytes(item)) for item in items]
    if stripped.startswith(b"{"):
        return False, [_decode_one(stripped)]
    try:
        _any_decoder.decode(stripped)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        return False, [Invalid(ParseError(f"Parse error: {e}"))]
    return False, [Invalid(InvalidRequest("Invalid Request: expected an object or a batch array"))]


def decode_params(params: msgspec.Raw, kind: type[Any]) -> Any:
    """Decode a method's params into its Struct; InvalidParams (with the `$.path`) if they don't fit."""
    raw = bytes(params)
    if kind is NoParams and raw in (b"null", b"{}", b"[]"):
        return NoParams()
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise InvalidParams.of(e) from None


def encode_response(request_id: RequestId, result: Any) -> bytes:
    return _encoder.encode({"jsonrpc": "2.0", "id": request_id, "result": result})


def encode_error(request_id: RequestId, error: AgentdError) -> bytes:
    return _encoder.encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_error()})


def encode_request(method: str, params: Any = None, request_id: RequestId = 1) -> bytes:
    """One request line, `\\n`-terminated (what clients send)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return _encoder.encode(message) + b"\n"
