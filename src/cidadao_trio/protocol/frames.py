"""Server→client WebSocket text frames, built once and shared by every connection.

Server frames are not masked (RFC 6455 §5.1), so the bytes of one message are the same
for every connection that has no extension negotiated: a fan-out to N connections
builds one frame, not N. The transport writes these bytes as they are.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_RSV1 = 0x40  # permessage-deflate: this message's payload is compressed (RFC 7692 §6)


def text_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    first = _FIN_TEXT | _RSV1 if compressed else _FIN_TEXT
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


def payload_size(frame: bytes) -> int:
    marker = frame[1] & 0x7F
    return len(frame) - (2 if marker < 126 else 4 if marker == 126 else 10)


def frame_payload(frame: bytes) -> memoryview:
    """The payload of a frame built by :func:`text_frame`, without copying it."""
    return memoryview(frame)[len(frame) - payload_size(frame) :]
