"""The two wsproto extensions every server connection runs: a byte limit and bounded deflate.

Both are written against wsproto's public :class:`~wsproto.extensions.Extension` hooks,
which see each frame's payload as wsproto decodes it. Outbound data never passes through
wsproto (our frames are pre-built), so their ``frame_outbound`` leaves control frames alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Protocol

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    RsvBits,
)

_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: stripped by the sender, put back here


class _Inflater(Protocol):
    """What we use of a ``zlib.decompressobj``."""

    @property
    def unconsumed_tail(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


class MessageLimit(Extension):
    """Bounds each inbound message in UTF-8 bytes (PROTOCOL.md §7), whatever its type.

    Counting the decoded text would count characters: 65,536 ``€`` (196,608 bytes) would
    pass a 64 KiB limit. This counts payload bytes as wsproto decodes them, after
    :class:`BoundedDeflate` inflated them (it must come after it in the list), and closes
    1009 as soon as a message grows past the limit, before it is buffered whole. It is not
    a negotiated extension: no client offers its name, and ``enabled()`` keeps it in every
    connection's frame pipeline.
    """

    name = "x-cidadao-message-limit"

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._size = 0
        self._data_frame = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return False

    def accept(self, offer: str) -> bool | str | None:
        return None  # never negotiated: it needs nothing from the peer

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        self._data_frame = not opcode.iscontrol()  # a ping between fragments is not counted
        return RsvBits(False, False, False)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if self._data_frame:
            self._size += len(data)
            if self._size > self._max:
                return CloseReason.MESSAGE_TOO_BIG
        return data

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        if fin and self._data_frame:
            self._size = 0
        return None


class BoundedDeflate(Extension):
    """permessage-deflate (RFC 7692) for the server side, with the guards wsproto lacks.

    Negotiation is wsproto's own :class:`PerMessageDeflate` (``accept``), kept as the
    agreed terms; inflating and deflating are ours. Inbound, a message may not inflate
    past ``max_message_bytes``: every ``decompress`` call is bounded, so a decompression
    bomb closes 1009 having produced at most that much. Outbound, :meth:`compress` is
    used only for messages of at least ``min_size`` bytes (deflating a 200-byte pong costs
    more CPU than it saves), and the server keeps no compression context between messages
    (``server_no_context_takeover``), so an idle connection holds no zlib compressor.
    """

    name = PerMessageDeflate.name

    def __init__(self, max_message_bytes: int, min_size: int) -> None:
        self.terms = PerMessageDeflate(server_no_context_takeover=True)
        self.min_size = min_size
        self._budget = max_message_bytes
        self._agreed = False
        self._inflater: _Inflater | None = None  # the client's context, kept if it takes it over
        self._data_frame = False  # the frame being read is text, binary or a continuation
        self._compressed = False  # the message being read has RSV1 set (on its first frame)
        self._inflated = 0  # bytes the message being read has inflated to so far

    # --- negotiation -----------------------------------------------------------------

    def enabled(self) -> bool:
        return self._agreed

    def offer(self) -> bool | str:
        return False  # the server never offers; it answers a client's offer

    def accept(self, offer: str) -> bool | str | None:
        answer = self.terms.accept(offer)
        self._agreed = answer is not None
        return answer

    # --- inbound ---------------------------------------------------------------------

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # RFC 7692 §6.1: only a message's first frame
        self._data_frame = not opcode.iscontrol()
        if self._data_frame and opcode is not Opcode.CONTINUATION:
            self._compressed = rsv.rsv1
            self._inflated = 0
            if rsv.rsv1 and self._inflater is None:
                self._inflater = zlib.decompressobj(-self.terms.client_max_window_bits)
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if not (self._data_frame and self._compressed):
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol, fin: bool) -> bytes | CloseReason | None:
        if not (fin and self._data_frame and self._compressed):
            return None  # a ping between fragments ends no message
        tail = self._inflate(_SYNC_FLUSH_TAIL)
        self._compressed = False
        if self.terms.client_no_context_takeover:
            self._inflater = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._inflater is not None
        try:
            inflated = self._inflater.decompress(data, self._budget - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflater.unconsumed_tail or self._inflated > self._budget:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    # --- outbound --------------------------------------------------------------------

    def compress(self, payload: bytes | memoryview) -> bytes:
        """One whole message deflated, as the payload of a frame with RSV1 set."""
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.terms.server_max_window_bits)
        data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return data[: -len(_SYNC_FLUSH_TAIL)]


def negotiate(offers: Iterable[bytes], extension: Extension) -> bytes | None:
    """The ``Sec-WebSocket-Extensions`` answer for ``extension``, if the client offered it.

    ``offers`` are the request's header values; each may list several offers (RFC 6455
    §9.1). The first acceptable offer of the extension's name wins.
    """
    for value in offers:
        for offer in value.decode("latin-1").split(","):
            if offer.split(";", 1)[0].strip() != extension.name:
                continue
            answer = extension.accept(offer.strip())
            if answer is True or answer == "":
                return extension.name.encode()
            if isinstance(answer, str):
                return f"{extension.name}; {answer}".encode()
    return None
