"""The long connection's frame (``pbbp2.Frame``, protobuf 2) encoded and decoded by hand.

For the fake Lark server: written from the schema (not with the SDK's own generated class),
so the tests show that the real SDK and a second implementation of the wire format agree.

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1; required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;   // 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8; optional string LogIDNew = 9;
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1


@dataclass
class Frame:
    """One frame; ``headers`` keep their order (the SDK appends ``biz_rt`` to a reply)."""

    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = CONTROL
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: bytes = b""

    def header(self, key: str) -> str | None:
        """The first header named ``key``."""
        return next((v for k, v in self.headers if k == key), None)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32s are ten-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2) + _varint(len(data)) + data


def encode(frame: Frame) -> bytes:
    """The frame's protobuf bytes."""
    out = bytearray()
    for number, value in ((1, frame.seq_id), (2, frame.log_id), (3, frame.service)):
        out += _field(number, 0) + _varint(value)
    out += _field(4, 0) + _varint(frame.method)
    for name, text in frame.headers:
        inner = _bytes_field(1, name.encode()) + _bytes_field(2, text.encode())
        out += _bytes_field(5, inner)
    if frame.payload:
        out += _bytes_field(8, frame.payload)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            out.append((number, data[pos : pos + size]))
            pos += size
        else:
            raise ValueError(f"unexpected wire type {wire} for field {number}")
    return out


def decode(data: bytes) -> Frame:
    """A frame from its protobuf bytes (fields 6, 7 and 9 are read and dropped)."""
    frame = Frame()
    for number, value in _fields(data):
        if number == 5 and isinstance(value, bytes):
            parts = dict(_fields(value))
            key, val = parts.get(1, b""), parts.get(2, b"")
            assert isinstance(key, bytes) and isinstance(val, bytes)
            frame.headers.append((key.decode(), val.decode()))
        elif number == 8 and isinstance(value, bytes):
            frame.payload = value
        elif isinstance(value, int):
            if number == 1:
                frame.seq_id = value
            elif number == 2:
                frame.log_id = value
            elif number == 3:
                frame.service = value
            elif number == 4:
                frame.method = value
    return frame
