"""Server→client WebSocket text frames, built once and shared by every connection.

Server frames are not masked (RFC 6455 §5.1), so the bytes of one message are the same
for every connection that has no extension negotiated: a fan-out to N connections
builds one frame, not N.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


def payload_size(frame: bytes) -> int:
    marker = frame[1] & 0x7F
    return len(frame) - (2 if marker < 126 else 4 if marker == 126 else 10)
